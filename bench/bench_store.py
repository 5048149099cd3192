"""Benchmark: `gcav_nb.store.ActivationStore.build` (token streaming, one forward per batch stopped after the last
hook, each batch's rows hashed and written in place into safetensors shards by a writer thread while the next batch
runs, a CRC-32 per tensor, manifest) vs a bare forward over the same blocks.

1. Throughput: `store_over_forward` = bare time / store time over the same tokens (> 1 would be faster; goal >= 0.9).
   The bare reference streams the same `token_blocks` and runs the same batches, stopped after the same last hook
   (what a loop without the store would do), so the ratio is the cost of keeping the activations. Wall clock,
   interleaved, best of 3, torch on 1 thread; the CPU-time ratio (all threads of the process, so the store's writer
   thread counts) is printed beside it, because wall clock on a shared machine depends on who else runs. A full forward (no early stop; timed once: tiny-llama's 49k-token
   unembedding makes it slow) is printed too.
2. Memory: peak RSS of a whole build at 100k and at 1M tokens, each in a fresh subprocess (`--child`); the ratio
   `store_rss_1m_over_100k` (goal <= 1.2: memory flat as n_tokens grows) and both figures are printed.

Model: tiny-llama (4 layers, d_model 64, SmolLM2's tokenizer), all 4 `blocks.*.hook_resid_post`, ctx 128, batch 16,
the Brown corpus. It is the hard case for the ratio (a tiny forward per token, so writing
dominates sooner); at cpu size the ratio is also measured for SmolLM2-135M at blocks 0-1 (d_model 576, 16,384
tokens; its full forward is not timed: 30 layers and a 49k-token unembedding would take minutes).
Sizes: ci: 16,384 tokens for the ratio, 32k/131k for memory, shards of 8,192 tokens. cpu: 262,144 tokens, 100k/1M
for memory, shards of 65,536 tokens (both memory sizes span several shards, so the buffers are in use in both).
Usage: python bench/bench_store.py [--size ci|cpu]
"""
import argparse, json, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import append_results  # noqa: E402  (bench/ is on sys.path when run as a script)
from gcav_nb.models import load_model, resolve_hooks
from gcav_nb.data import text_corpus
from gcav_nb.store import ActivationStore, token_blocks

SIZES = dict(ci=dict(n=16_384, mem=(32_768, 131_072), shard=8_192, smollm2=0),
             cpu=dict(n=262_144, mem=(100_000, 1_000_000), shard=65_536, smollm2=16_384))
TINY = ("tiny-llama", "blocks.*.hook_resid_post")
SMOL = ("smollm2-135m", ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"])
CTX, BS = 128, 16

class Stop(Exception): pass

def bare(model, corpus, names, n, stop=True):
    "Stream the same blocks and run the same batches; stop after the last hook (or run the whole model)."
    def fn(t, hook): raise Stop()
    it = token_blocks(model, corpus, CTX, n)
    with torch.no_grad(), model.hooks(fwd_hooks=[(names[-1], fn)] if stop else []):
        while batch := [b for _, b in zip(range(BS), it)]:
            try: model(torch.stack(batch))
            except Stop: pass

def build(model, corpus, hooks, n, folder, shard):
    return ActivationStore.build(model, corpus, hooks, folder, ctx=CTX, n_tokens=n, batch_size=BS, shard_tokens=shard, progress=False)

def child(name, hooks, n, shard):
    "One build in this fresh process; print its peak RSS (MB) as JSON."
    torch.set_num_threads(1)
    model = load_model(name, device="cpu"); corpus = text_corpus("brown")
    d = Path(tempfile.mkdtemp())
    try:
        t = time.perf_counter(); st = build(model, corpus, hooks, n, d/"s", shard); dt = time.perf_counter() - t
        print(json.dumps(dict(n=len(st), seconds=dt, rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
    finally: shutil.rmtree(d)

def cpu_s():
    "CPU seconds of this process so far (all its threads: the store's writer thread counts)."
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime

def ratio(name, hooks, n, shard, full=True):
    "(store wall s, bare wall s, full-forward wall s or None, store CPU s, bare CPU s), best of 3, interleaved."
    model = load_model(name, device="cpu"); corpus = text_corpus("brown"); names = resolve_hooks(model, hooks)
    d = Path(tempfile.mkdtemp()); ts, tb, tf, cs, cb = [], [], [], [], []
    try:
        bare(model, corpus, names, n // 4); build(model, corpus, hooks, n // 4, d/"warm", shard)     # warm-up
        for r in range(3):
            t, c = time.perf_counter(), cpu_s(); bare(model, corpus, names, n); tb.append(time.perf_counter() - t); cb.append(cpu_s() - c)
            t, c = time.perf_counter(), cpu_s(); build(model, corpus, hooks, n, d/f"s{r}", shard); ts.append(time.perf_counter() - t); cs.append(cpu_s() - c)
            if full and r == 0: t = time.perf_counter(); bare(model, corpus, names, n, stop=False); tf.append(time.perf_counter() - t)
            shutil.rmtree(d/f"s{r}")
    finally: shutil.rmtree(d)
    return min(ts), min(tb), min(tf) if full else None, min(cs), min(cb)

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--size", default="cpu", choices=list(SIZES))
    ap.add_argument("--child", nargs=4, metavar=("MODEL", "HOOKS", "N", "SHARD")); a = ap.parse_args()
    if a.child: return child(a.child[0], json.loads(a.child[1]), int(a.child[2]), int(a.child[3]))
    s = SIZES[a.size]; torch.set_num_threads(1); rows = []
    mem = {}
    for n in s["mem"]:
        out = subprocess.run([sys.executable, __file__, "--child", TINY[0], json.dumps(TINY[1]), str(n), str(s["shard"])], capture_output=True, text=True, check=True)
        mem[n] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{TINY[0]}, 4 hooks, {mem[n]['n']:,} tokens: peak RSS {mem[n]['rss_mb']:.0f} MB, build {mem[n]['seconds']:.1f} s (fresh process)")
    lo, hi = s["mem"]
    rss = mem[hi]["rss_mb"] / mem[lo]["rss_mb"]
    rows.append([f"store_rss_{hi // 1000}k_over_{lo // 1000}k", mem[hi]["rss_mb"], f"peak RSS at {lo:,} tokens (MB)", mem[lo]["rss_mb"], round(rss, 3), "<= 1.2"])
    print(f"peak RSS {hi:,} / {lo:,} tokens: {rss:.3f}x (goal <= 1.2)")
    if s["smollm2"]:
        t_s, t_b, _, c_s, c_b = ratio(*SMOL, s["smollm2"], s["shard"], full=False)
        print(f"smollm2-135m blocks 0-1, {s['smollm2']:,} tokens: store {t_s:.2f} s, bare forward to blocks.1 {t_b:.2f} s ({t_b / t_s:.3f}x); "
              f"CPU time (all threads) store {c_s:.2f} s, bare {c_b:.2f} s ({c_b / c_s:.3f}x)")
        rows.append(["store_over_forward_smollm2", t_s, "bare forward to blocks.1 (same blocks)", t_b, round(t_b / t_s, 3), ">= 0.9"])
    t_s, t_b, t_f, c_s, c_b = ratio(*TINY, s["n"], s["shard"])
    print(f"{TINY[0]} 4 hooks, {s['n']:,} tokens: store {t_s:.2f} s ({s['n'] / t_s:,.0f} tokens/s), bare forward to the last hook {t_b:.2f} s, "
          f"full forward {t_f:.2f} s; store vs full forward {t_f / t_s:.3f}x; CPU time (all threads) store {c_s:.2f} s, bare {c_b:.2f} s ({c_b / c_s:.3f}x)")
    rows.append(["store_over_forward", t_s, "bare forward to the last hook (same blocks)", t_b, round(t_b / t_s, 3), ">= 0.9"])
    append_results(rows, a.size)
    print(f"store_over_forward: {t_b / t_s:.3f}x (goal >= 0.9)")

if __name__ == "__main__": main()
