"""Benchmark: `gcav_nb.generation.generate` (the Bridge's forward with an HF KV cache, hooks live, left-padded batch)
vs transformers' own `generate` on a plain HF copy of the same weights, same prompts, same left-padded tokens,
greedy, at most the same number of new tokens (both stop a row at EOS). Ratio = ours_s / reference_s (< 1 is faster; goal <= 1.10). Measured
interleaved, best of 3, torch on 1 thread, process CPU time (the shared 2-core machine makes wall time swing; wall
times are printed too). The tokens of both are compared and printed (they must be equal).

Printed beside (no goal): the old quadratic loop (`use_cache=False, batch_size=1`: one prompt at a time, the whole
sequence re-run at every step, as `models.generate` did) on the first 8 prompts, against ours on the same 8.

ci size: tiny-llama, 16 prompts, 16 new tokens. cpu size: SmolLM2-135M, 32 prompts, 24 new tokens, one batch of 32.
gpu size: SmolLM2-135M on cuda, 64 prompts, 64 new tokens.
Usage: python bench/bench_generation.py [--size ci|cpu|gpu]
"""
import argparse, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import append_results  # noqa: E402  (bench/ is on sys.path when run as a script)
from transformers import AutoModelForCausalLM
from gcav_nb.models import load_model, tokenize
from gcav_nb.generation import generate

SIZES = dict(ci=dict(model="tiny-llama", n=16, new=16, bs=16, device="cpu"),
             cpu=dict(model="smollm2-135m", n=32, new=24, bs=32, device="cpu"),
             gpu=dict(model="smollm2-135m", n=64, new=64, bs=64, device="cuda"))

def prompts(n):
    starts = ["The capital of France is", "Once upon a time, in a small village by the sea,", "The best way to cook rice is",
              "My favourite animal is the", "In 1905, Albert Einstein", "Water boils at", "The weather today is",
              "A good first program to write in a new language is", "The three primary colours are", "Dear hiring manager, I am writing to"]
    return [f"{starts[i % len(starts)]}" + (f" (question {i})" if i >= len(starts) else "") for i in range(n)]

def clock(fn, cuda):
    if cuda: torch.cuda.synchronize()
    w, t = time.perf_counter(), time.process_time(); out = fn()
    if cuda: torch.cuda.synchronize()
    return out, time.process_time() - t, time.perf_counter() - w

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--size", default="cpu", choices=list(SIZES)); a = ap.parse_args()
    s = SIZES[a.size]; cuda = s["device"] == "cuda"
    torch.set_grad_enabled(False)
    if not cuda: torch.set_num_threads(1)
    model = load_model(s["model"], device=s["device"])
    hf = AutoModelForCausalLM.from_pretrained(model.gcav_source, dtype=torch.float32).to(s["device"]).eval()
    P, n_new, eos = prompts(s["n"]), s["new"], model.tokenizer.eos_token_id
    toks, mask = tokenize(model, P, padding_side="left")
    toks, mask = toks.to(s["device"]), mask.to(s["device"])
    def ref():
        out = hf.generate(toks, attention_mask=mask, max_new_tokens=n_new, do_sample=False, pad_token_id=eos)
        return [x[:x.index(eos) + 1] if eos in x else x for x in out[:, toks.shape[1]:].tolist()]   # cut after EOS, as ours
    def ours(): return generate(model, P, max_new_tokens=n_new, batch_size=s["bs"], return_tokens=True, progress=False)
    ref(); ours()                                                       # warm-up
    to, tr, wo, wr = [], [], [], []
    for _ in range(3):                                                  # interleaved, so load changes hit both
        got, c, w = clock(ours, cuda); to.append(c if not cuda else w); wo.append(w)
        want, c, w = clock(ref, cuda); tr.append(c if not cuda else w); wr.append(w)
    same = got == want and all(len(g) >= 1 for g in got) and sum(map(len, got)) > len(P)   # an empty output cannot pass
    print(f"{len(P)} prompts x {n_new} new tokens on {s['model']} ({s['device']}); same tokens as transformers: {same}")
    print(f"ours: best {min(to):.3f} s ({'cpu' if not cuda else 'wall'}; wall {min(wo):.3f} s)   "
          f"transformers generate: best {min(tr):.3f} s (wall {min(wr):.3f} s)")
    k = min(8, len(P))
    _, c_old, w_old = clock(lambda: generate(model, P[:k], max_new_tokens=n_new, use_cache=False, batch_size=1, return_tokens=True, progress=False), cuda)
    _, c_new, w_new = clock(lambda: generate(model, P[:k], max_new_tokens=n_new, batch_size=s["bs"], return_tokens=True, progress=False), cuda)
    t_old, t_new = (w_old, w_new) if cuda else (c_old, c_new)
    print(f"old quadratic loop (no cache, one prompt at a time) on {k} prompts: {t_old:.3f} s vs ours {t_new:.3f} s: {t_old / t_new:.1f}x slower")
    ratio = min(to) / min(tr)
    append_results([["generation_over_transformers", round(min(to), 4), "transformers generate (same weights, prompts, padding)",
                     round(min(tr), 4), round(ratio, 3), "<= 1.10"]], a.size)
    if not same: raise SystemExit("tokens differ from transformers' generate")
    print(f"generation_over_transformers: {ratio:.3f}x (goal <= 1.10)")

if __name__ == "__main__": main()
