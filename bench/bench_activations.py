"""Benchmark: `gcav_nb.activations.collect` (every block's `hook_resid_post`, last-token pooling, one forward per
batch, validation, float32 CPU copies) vs a bare forward pass of the same model over the same token batches.
Tokenization is outside both timings (done once, shared). Measured side by side, interleaved, best of 3, with
torch on 1 thread; the ratio uses process CPU time (the 2-core machine is shared by other jobs, which makes wall
time swing by 2x between repeats); wall times are printed too.

`collect` stops each forward pass after the last requested hook (`stop_early=True`), so it skips the final norm
and unembedding; the ratio without that shortcut (`stop_early=False`, every hook firing through the full forward)
is printed too. The texts vary in length (as templated concept sets do); `collect` batches them by token length,
and the bare forward runs over the same length-sorted batches (the floor). Printed beside: the padding share of
batches in the given order and sorted, and `collect(sort_by_length=False)` (batches in the given order).

cpu size: SmolLM2-135M (30 layers), 256 texts, batch 32. ci size: tiny-llama, 64 texts, batch 16.
Usage: python bench/bench_activations.py [--size ci|cpu]
"""
import argparse, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import append_results  # noqa: E402  (bench/ is on sys.path when run as a script)
from gcav_nb.models import load_model, tokenize
from gcav_nb.activations import collect, length_batches, padding_fraction

SIZES = dict(ci=dict(model="tiny-llama", n=64, bs=16), cpu=dict(model="smollm2-135m", n=256, bs=32))

def texts(n):
    subj = ["The soup", "Our waiter", "The new phone", "This hotel room", "The movie", "My order", "The bread", "The app"]
    pred = ["was wonderful and I would come back again", "arrived cold and nobody apologised for the wait",
            "is fine, nothing special, but it does the job", "made my whole week, thank you so much",
            "broke after two days of normal use", "tasted exactly like the photos promised"]
    more = ["", " The staff were friendly.", " Parking was easy and the prices were fair for what you get.",
            " I would not recommend it to anyone who cares about quality, service or value, sadly."]
    return [f"{subj[i % len(subj)]} {pred[(i // len(subj)) % len(pred)]} (review {i}).{more[(i * 7) % len(more)]}" for i in range(n)]

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--size", default="cpu", choices=list(SIZES)); a = ap.parse_args()
    s = SIZES[a.size]
    torch.set_grad_enabled(False); torch.set_num_threads(1)
    model = load_model(s["model"])
    hooks = [f"blocks.{l}.hook_resid_post" for l in range(model.cfg.n_layers)]
    X = texts(s["n"]); bs = s["bs"]
    toks, am = tokenize(model, X); lengths = am.sum(1)
    rows = length_batches(len(X), bs, lengths)                             # the same length-sorted batches collect uses
    batches = []
    for r in rows:
        b_am = am[r]; keep = b_am.sum(0) > 0
        batches.append((toks[r][:, keep], b_am[:, keep]))
    pad_given, pad_sorted = padding_fraction(length_batches(len(X), bs, None), lengths), padding_fraction(rows, lengths)
    def bare():
        for t, m in batches: model(t, attention_mask=m)
    def ours(stop_early=True, sort_by_length=True):
        return collect(model, X, hooks, batch_size=bs, progress=False, stop_early=stop_early, sort_by_length=sort_by_length)
    bare(); ours()                                                      # warm-up
    tb, to, tf, tu, wb, wo = [], [], [], [], [], []
    for _ in range(3):                                                  # interleaved, so load changes hit both
        w = time.perf_counter(); t = time.process_time(); bare(); tb.append(time.process_time() - t); wb.append(time.perf_counter() - w)
        w = time.perf_counter(); t = time.process_time(); out = ours(); to.append(time.process_time() - t); wo.append(time.perf_counter() - w)
        t = time.process_time(); ours(False); tf.append(time.process_time() - t)
        t = time.process_time(); ours(sort_by_length=False); tu.append(time.process_time() - t)
    t_bare, t_ours, t_full, t_unsorted = min(tb), min(to), min(tf), min(tu)
    print(f"wall clock (best of 3): bare {min(wb):.3f} s, collect {min(wo):.3f} s, ratio {min(wo) / min(wb):.3f}")
    assert len(out) == len(hooks) and out[hooks[0]].shape == (len(X), model.cfg.d_model)
    print(f"{a.size}: {s['model']}, {len(X)} texts, batch {bs}, {len(hooks)} hooks, {toks.shape[1]} max tokens")
    print(f"bare forward: {t_bare:.3f} s; collect: {t_ours:.3f} s; collect with stop_early=False: {t_full:.3f} s (CPU time, best of 3)")
    print(f"collect_full_forward_over_bare: {t_full / t_bare:.3f}x")
    print(f"padding share of the batches: {pad_given:.3f} in the given order, {pad_sorted:.3f} sorted by length; "
          f"collect with batches in the given order: {t_unsorted:.3f} s ({t_unsorted / t_ours:.2f}x the sorted collect)")
    ratio = t_ours / t_bare
    ref = f"bare forward ({s['model']}, {len(X)} texts)"
    append_results([["collect_over_bare_forward", f"{t_ours:.4f}", ref, f"{t_bare:.4f}", f"{ratio:.3f}", "<= 1.10"],
                    ["collect_full_forward_over_bare", f"{t_full:.4f}", ref, f"{t_bare:.4f}", f"{t_full / t_bare:.3f}", "<= 1.10"]], a.size)
    print(f"collect_over_bare_forward: {ratio:.3f}x (goal <= 1.10)")

if __name__ == "__main__": main()
