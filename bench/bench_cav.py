"""Benchmark: all CAVs of a TCAV run fitted as one batched dual problem (`gcav_nb.cav.fit_cavs`) vs a scikit-learn
`LogisticRegression` loop (one fit per layer x concept x run), side by side in one run, same splits, same C.

Data: synthetic residual-stream-like activations (anisotropic, a few large dims, mean offset), a concept shift that
grows with depth; 50 concept + 50 random examples per problem, 33% held out, as tensorflow/tcav does.
cpu size = 30 layers x 4 concepts x 10 runs, d = 576 (SmolLM2-135M's shape): 1,200 fits.
Both sides report mean held-out accuracy; the goal needs them within 1 point. torch and BLAS run on 1 thread
(scikit-learn's loop is single-threaded; the 2-core machine is shared); the ratio uses process CPU time, and
wall-clock times are printed too.

Where our time goes (cpu size, 1 thread, line profiler): ~60% the batched Newton solve (7 steps; per step ~25 ms of
LAPACK spotrf + spotrs called once per problem from a Python loop on [1200, 66, 66] float32 systems, plus building the
systems in place, two float64 batched mat-vecs and the O(n) line search), ~20% building the Gram blocks (a few layers
per batched matmul, near this core's float32 matmul peak), the rest the [P, n, n] gathers, the float64 copy of K and
the weights (set by set, float32). Fresh buffers of tens of MB cost a page fault per 4 kB (~4 us each on this VM; the
float64 K of 42 MB pays it on every call), so timings vary with load and with what the allocator kept from the
previous call.

Usage: python bench/bench_cav.py [--size ci|cpu]
"""
import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"): os.environ.setdefault(_v, "1")
import argparse, sys, time
from pathlib import Path
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import append_results, write_growth  # noqa: E402  (bench/ is on sys.path when run as a script)
from gcav_nb.cav import fit_cavs, split_indices, set_key

SIZES = dict(ci=dict(L=6, C=4, R=10, d=576, n=50), cpu=dict(L=30, C=4, R=10, d=576, n=50))

def make_data(L, nC, R, d, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = [f"blocks.{l}.hook_resid_post" for l in range(L)]
    scale = torch.rand(d, generator=g) * 1.5 + 0.25; scale[:4] = 6.0
    offset = torch.randn(d, generator=g) * 2
    dirs = torch.randn(nC, d, generator=g); dirs = dirs / dirs.norm(dim=1, keepdim=True)
    def sample(shift_dir, strength):
        return torch.randn(n, d, generator=g) * scale + offset + strength * shift_dir
    concepts = {f"concept_{c}": {h: sample(dirs[c], 8.0 * (l + 1) / L) for l, h in enumerate(layers)} for c in range(nC)}
    randoms = [{h: sample(torch.zeros(d), 0.0) for h in layers} for _ in range(R)]
    return layers, concepts, randoms

def sklearn_loop(layers, concepts, randoms, C, seed):
    acc = []
    for h in layers:
        for c, cx in concepts.items():
            for ri, rx in enumerate(randoms):
                X1, X0 = cx[h], rx[h]; m = min(len(X1), len(X0))
                (p_tr, p_te), (q_tr, q_te) = split_indices(set_key(cx), len(X1), m, 0.33, seed, ri), split_indices(set_key(rx), len(X0), m, 0.33, seed, ri)
                Xtr = torch.cat([X1[p_tr], X0[q_tr]]).numpy(); ytr = np.r_[np.ones(len(p_tr)), np.zeros(len(q_tr))]
                Xte = torch.cat([X1[p_te], X0[q_te]]).numpy(); yte = np.r_[np.ones(len(p_te)), np.zeros(len(q_te))]
                clf = LogisticRegression(C=C, max_iter=1000).fit(Xtr, ytr)   # scikit-learn defaults (lbfgs, tol 1e-4)
                acc.append(clf.score(Xte, yte))
    return float(np.mean(acc))

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--size", default="cpu", choices=list(SIZES)); a = ap.parse_args()
    s = SIZES[a.size]; C, seed = 1.0, 0
    torch.set_num_threads(1)
    layers, concepts, randoms = make_data(s["L"], s["C"], s["R"], s["d"], s["n"])
    n_fits = s["L"] * s["C"] * s["R"]
    print(f"{a.size}: {s['L']} layers x {s['C']} concepts x {s['R']} runs = {n_fits} fits, d={s['d']}, {s['n']}+{s['n']} examples")
    fit_cavs(concepts, randoms[:2], layers=layers[:1], C=C, seed=seed)           # warm-up (allocations, kernels)
    ts, ws = [], []
    for _ in range(3):
        w = time.perf_counter(); t = time.process_time(); cs = fit_cavs(concepts, randoms, C=C, seed=seed)
        ts.append(time.process_time() - t); ws.append(time.perf_counter() - w)
    t_ours = min(ts); acc_ours = float(cs.accuracy.mean())
    print(f"ours   fit_cavs (batched dual Newton): {t_ours:.3f} s CPU, {min(ws):.3f} s wall (best of 3), {cs.meta['newton_steps']} Newton steps, mean held-out acc {acc_ours:.4f}")
    w = time.perf_counter(); t = time.process_time(); acc_ref = sklearn_loop(layers, concepts, randoms, C, seed)
    t_ref = time.process_time() - t; w_ref = time.perf_counter() - w
    print(f"wall-clock ratio: {w_ref / min(ws):.1f}x")
    print(f"sklearn LogisticRegression loop ({n_fits} fits): {t_ref:.3f} s CPU, {w_ref:.3f} s wall, mean held-out acc {acc_ref:.4f}")
    gap = abs(acc_ours - acc_ref) * 100
    print(f"accuracy gap: {gap:.2f} points (goal <= 1)")
    ratio = t_ref / t_ours
    append_results([["cav_fit_speedup_vs_sklearn", f"{t_ours:.4f}", f"sklearn LogisticRegression loop ({n_fits} fits, acc gap {gap:.2f} pt)",
                     f"{t_ref:.4f}", f"{ratio:.2f}", ">= 20"]], a.size)
    growth = []
    for L, nC, R in [(1, 1, 10), (max(1, s["L"] // 3), s["C"], s["R"]), (s["L"], s["C"], s["R"] // 2), (s["L"], s["C"], s["R"])]:
        t = time.process_time()
        fit_cavs({k: concepts[k] for k in list(concepts)[:nC]}, randoms[:R], layers=layers[:L], C=C, seed=seed)
        growth.append(dict(layers=L, concepts=nC, runs=R, fits=L * nC * R, cpu_s=round(time.process_time() - t, 3)))
    write_growth("cav_fit", growth)
    print("\n".join(f"growth: {g}" for g in growth))
    print(f"cav_fit_speedup_vs_sklearn: {ratio:.1f}x (goal >= 20)")

if __name__ == "__main__": main()
