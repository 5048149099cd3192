"""Benchmark: the whole gcav_nb TCAV run vs its physical floor and vs captum.concept.TCAV, side by side in one run.

Model: a CNN with 30 hooked conv blocks. Same concepts, inputs, random sets and layers for every contestant.
- ours: `gcav_nb.tcav.tcav` (concept + random activations in one forward, all CAVs batched, one forward+backward
  per batch of inputs for all 30 layers, scores, t-tests).
- floor: one plain forward over the concept and random sets + one forward+backward over the inputs (gradient to
  the input, through all layers) + the CAV fit (`fit_cavs` + `fit_random_cavs` on precomputed activations).
- captum: `captum.concept.TCAV.interpret` with its default classifier on the experimental sets
  [concept, random_i] and [random_i, random_j] (i < j), then `scipy.stats.ttest_ind` per layer, as its tutorial does.
Then captum is run once more with OUR CAVs injected through its `Classifier` interface, and the scores compared.

The floor does its two passes in one batch each, so the goal figure runs ours with one batch too (`batch_size`
covering every example); the same comparison at batches of 32 (ours at its default, the floor's passes in batches of 32)
is printed and recorded beside it, and so is ours at 32 against the one-batch floor. captum is compared with ours at
the default batch size.

Usage: python bench/bench_tcav.py [--size ci|cpu]
"""
import argparse, os, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np
import torch
import torch.nn as nn
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "tests"))
from _results import append_results, write_growth  # noqa: E402  (bench/ is on sys.path when run as a script)
from gcav_nb.models import wrap_module
from gcav_nb.activations import collect
from gcav_nb.cav import fit_cavs, fit_random_cavs
from gcav_nb import tcav as T

SIZES = dict(ci=dict(n_inputs=32, n_concept=20, n_random=4, n_layers=30, width=8, hw=16),
             cpu=dict(n_inputs=128, n_concept=30, n_random=6, n_layers=30, width=8, hw=16))


class DeepCNN(nn.Module):
    "n_layers conv blocks (3x3 conv + ReLU) at constant width, then global pooling and a linear head."
    def __init__(self, n_layers=30, width=8, n_classes=5):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*[nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU()) for _ in range(n_layers)])
        self.head = nn.Linear(width, n_classes)
    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


def best_of(fn, k):
    ts = []
    for _ in range(k):
        t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    return min(ts), out


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--size", default="ci", choices=list(SIZES)); a = ap.parse_args()
    S = SIZES[a.size]; torch.manual_seed(0); torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    g = torch.Generator().manual_seed(0)
    net = DeepCNN(S["n_layers"], S["width"]).eval()
    model = wrap_module(net, "deep-cnn", layers=[f"body.{i}" for i in range(S["n_layers"])])
    layers = model.layers; hw = S["hw"]; k = 2
    X = torch.randn(S["n_inputs"], 3, hw, hw, generator=g)
    concepts = {"stripes": torch.randn(S["n_concept"], 3, hw, hw, generator=g) + torch.linspace(-1, 1, hw)[None, None, None, :],
                "bright": torch.randn(S["n_concept"], 3, hw, hw, generator=g) + 0.5}
    randoms = {f"random_{i}": torch.randn(S["n_concept"], 3, hw, hw, generator=g) for i in range(S["n_random"])}
    R = S["n_random"]; print(f"size={a.size}: {len(layers)} layers, {len(concepts)} concepts, {R} random sets of {S['n_concept']}, {len(X)} inputs")

    # ---- ours: the whole run, in one batch (as the floor) and at the default batch size of 32
    allx = torch.cat([*concepts.values(), *randoms.values()]); one = max(len(allx), len(X))
    run = lambda bs: T.tcav(model, X, concepts, randoms, layers, T.class_logit(k), test="ttest", batch_size=bs, progress=False)
    run(one); run(32)  # warm-up
    t_ours, res = best_of(lambda: run(one), 3)
    t_ours32, res32 = best_of(lambda: run(32), 3)
    print(f"max |score| difference between one batch and batches of 32: {(res.scores['TCAV'] - res32.scores['TCAV']).abs().max():.4f}")
    growth = []                                                     # cost vs layers hooked and inputs scored
    for nl in sorted({max(1, len(layers) // 6), len(layers) // 2, len(layers)}):
        for ni in sorted({max(2, len(X) // 4), len(X)}):
            t, _ = best_of(lambda: T.tcav(model, X[:ni], concepts, randoms, layers[:nl], T.class_logit(k), test="ttest", batch_size=one, progress=False), 1)
            growth.append(dict(layers=nl, inputs=ni, concepts=len(concepts), random_sets=R, seconds=round(t, 3)))
    write_growth("tcav", growth)

    # ---- floor: plain passes (in one batch, or in batches of bs) + the CAV fit
    def fwd(bs=one):
        with torch.no_grad(): return [net(allx[i:i + bs]) for i in range(0, len(allx), bs)]
    def fb(bs=one):
        out = []
        for i in range(0, len(X), bs):
            x = X[i:i + bs].clone().requires_grad_(True); out.append(torch.autograd.grad(net(x)[:, k].sum(), x)[0])
        return out
    acts = collect(model, allx, layers, progress=False); sizes = [len(v) for v in [*concepts.values(), *randoms.values()]]
    names = [*concepts, *randoms]; offs = np.cumsum([0] + sizes)
    per = {n: {h: acts[h][offs[i]:offs[i + 1]] for h in layers} for i, n in enumerate(names)}
    def fit():
        c = fit_cavs({n: per[n] for n in concepts}, {n: per[n] for n in randoms}, layers=layers)
        r = fit_random_cavs({n: per[n] for n in randoms}, layers=layers, ordered=True)
        return c, r
    fwd(); fb(); fit()
    t_fwd, _ = best_of(fwd, 3); t_fb, _ = best_of(fb, 3); t_fit, (cavs, rcavs) = best_of(fit, 3)
    t_floor = t_fwd + t_fb + t_fit
    fwd(32); fb(32); t_fwd32, _ = best_of(lambda: fwd(32), 3); t_fb32, _ = best_of(lambda: fb(32), 3)
    t_floor32 = t_fwd32 + t_fb32 + t_fit

    # ---- captum reference (default classifier), its tutorial's t-test by hand
    from captum.concept import TCAV, Concept
    cc = {n: Concept(i, n, [x]) for i, (n, x) in enumerate({**concepts, **randoms}.items())}
    exp = [[cc[c], cc[r]] for c in concepts for r in randoms] + \
          [[cc[f"random_{i}"], cc[f"random_{j}"]] for i in range(R) for j in range(i + 1, R)]
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        tc = TCAV(net, [f"body.{i}" for i in range(S["n_layers"])], save_path=d)
        out = tc.interpret(X, exp, target=k)
        def key(s): return "-".join(str(c.id) for c in s)
        for l in layers:
            rr = [out[key(s)][l]["sign_count"][q].item() for s in exp[len(concepts) * R:] for q in (0, 1)]
            for ci, c in enumerate(concepts):
                cs = [out[key(exp[ci * R + r])][l]["sign_count"][0].item() for r in range(R)]
                stats.ttest_ind(rr, cs)
        t_captum = time.perf_counter() - t

    # ---- same CAVs -> same scores (captum with our CAVs injected)
    from test_tcav import captum_scores_with_cavs
    assert res.runs == list(randoms), res.runs                                   # run r was fitted against random_r
    cv = {l: res.cavs[l] for l in layers}                                        # the CAVs our run scored
    diffs = []
    for ci, c in enumerate(concepts):
        theirs = captum_scores_with_cavs(net, layers, X, {l: cv[l][ci:ci + 1] for l in layers}, k,
                                         concepts[c], [randoms[f"random_{i}"] for i in range(R)], R)
        diffs.append((res.scores["TCAV"][:, ci:ci + 1] - theirs).abs().max().item())
    parity = max(diffs)

    r_floor, r_floor32, r_mixed, r_captum = t_ours / t_floor, t_ours32 / t_floor32, t_ours32 / t_floor, t_captum / t_ours32
    print(f"one batch: ours {t_ours:.3f}s | floor {t_floor:.3f}s (forward {t_fwd:.3f} + forward+backward {t_fb:.3f} + CAV fit {t_fit:.3f})")
    print(f"batches of 32: ours {t_ours32:.3f}s | floor {t_floor32:.3f}s (forward {t_fwd32:.3f} + forward+backward {t_fb32:.3f} + CAV fit {t_fit:.3f})")
    print(f"ours at 32 over the one-batch floor: {r_mixed:.2f}x | captum.concept.TCAV {t_captum:.2f}s")
    print(f"max |score ours - captum| with the same CAVs: {parity:.4f} (goal <= 0.02)")
    append_results([["tcav_time_over_floor", f"{t_ours:.4f}", "floor (fwd sets + fwd/bwd inputs + CAV fit), one batch each side", f"{t_floor:.4f}", f"{r_floor:.3f}", "<= 1.5"],
                    ["tcav_time_over_floor_batch32", f"{t_ours32:.4f}", "floor in batches of 32, ours at its default 32", f"{t_floor32:.4f}", f"{r_floor32:.3f}", "<= 1.5"],
                    ["tcav_batch32_over_one_batch_floor", f"{t_ours32:.4f}", "one-batch floor, ours at its default 32", f"{t_floor:.4f}", f"{r_mixed:.3f}", "(shown)"],
                    ["tcav_speedup_vs_captum", f"{t_ours32:.4f}", "captum.concept.TCAV 0.9", f"{t_captum:.4f}", f"{r_captum:.2f}", ">= 20"],
                    ["tcav_captum_parity_maxdiff", "", "captum same CAVs", "", f"{parity:.4f}", "<= 0.02"]], a.size)
    print(f"tcav_time_over_floor_batch32: {r_floor32:.2f}x (goal <= 1.5)")
    print(f"tcav_time_over_floor: {r_floor:.2f}x (goal <= 1.5)")
    print(f"tcav_speedup_vs_captum: {r_captum:.1f}x (goal >= 20)")


if __name__ == "__main__":
    main()
