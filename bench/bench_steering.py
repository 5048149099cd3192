"""Benchmark: steered generation (`gcav_nb.steering.core.add` active around `gcav_nb.generation.generate`) vs plain
generation of the same prompts, same settings.

Figure `steered_generation_over_plain` = steered seconds / plain seconds (goal <= 1.05: adding a vector at one hook
costs at most 5% of generation). Both runs are greedy, KV-cached, batched, with the same prompts and max_new_tokens;
the steering vector is a random unit vector at the middle layer's `hook_resid_post` at a small scale (so the text,
and therefore the number of generated tokens, is the same; checked), added at all positions. Wall clock, interleaved
(plain, steered, plain, ...), one warm-up each, median of `repeats`; torch on 2 threads.
Sizes: ci: tiny-llama, 8 prompts x 8 new tokens, 5 repeats. cpu: SmolLM2-135M-Instruct, 50 prompts x 20 new tokens,
3 repeats.
Usage: python bench/bench_steering.py [--size ci|cpu]
"""
import argparse, statistics, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import append_results  # noqa: E402  (bench/ is on sys.path when run as a script)
from gcav_nb.models import load_model, layer_hooks
from gcav_nb.data import random_pool
from gcav_nb.generation import generate
from gcav_nb.steering.core import add, as_vector, random_like

SIZES = dict(ci=dict(model="tiny-llama", n=8, new=8, repeats=5), cpu=dict(model="smollm2-135m", n=50, new=20, repeats=3))

def timed(fn):
    t = time.perf_counter(); out = fn(); return time.perf_counter() - t, out

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--size", default="cpu", choices=list(SIZES)); a = ap.parse_args()
    s = SIZES[a.size]; torch.set_num_threads(2)
    model = load_model(s["model"]); hook = layer_hooks(model)[model.cfg.n_layers // 2]
    v = random_like(as_vector(torch.ones(model.cfg.d_model), hook), seed=0)
    prompts = random_pool()[:s["n"]]
    plain = lambda: generate(model, prompts, max_new_tokens=s["new"], progress=False)
    def steered():
        with add(model, v, 1e-3): return generate(model, prompts, max_new_tokens=s["new"], progress=False)
    plain(); steered()                                                   # warm-up
    tp, ts = [], []
    for _ in range(s["repeats"]):
        dt, a_out = timed(plain); tp.append(dt)
        dt, b_out = timed(steered); ts.append(dt)
    if a_out != b_out: raise SystemExit("the tiny steering changed the text: the two runs would not generate the same tokens")
    p, q = statistics.median(tp), statistics.median(ts); ratio = q / p
    print(f"{s['model']}, {len(prompts)} prompts x {s['new']} new tokens, vector at {hook}: plain {p:.3f} s, steered {q:.3f} s (median of {s['repeats']})")
    append_results([["steered_generation_over_plain", round(q, 4), "plain generate, same prompts", round(p, 4), round(ratio, 4), "<= 1.05"]], a.size)
    print(f"steered_generation_over_plain: {ratio:.3f}x (goal <= 1.05)")

if __name__ == "__main__": main()
