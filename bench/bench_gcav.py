"""GCAV training time and peak memory vs layers and concepts; TGCAV scoring cost vs one TCAV scoring pass.

    python bench/bench_gcav.py [--size ci|cpu]

Synthetic CAVs of SmolLM2's width (576) with R=10 runs and 45 random-vs-random CAVs per layer, 100 target
gradients, `GCAVConfig.preset(size)`. Each (layers, concepts) cell runs in its own process so that its peak RSS is
its own. Goals: all three stages on 30 layers x 10 concepts in under 2 minutes on 2 cores; TGCAV scoring no
dearer than one TCAV scoring pass (both use the same precomputed gradients)."""
import argparse, json, multiprocessing as mp, os, platform, resource, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when gcav_nb is not pip-installed
from _results import OUT, append_results, write_growth  # noqa: E402  (bench/ is on sys.path when run as a script)

def _cell(q, L, C, size, d, R, M, n, threads):
    import torch
    torch.set_num_threads(threads)
    from gcav_nb.gcav import GCAV, GCAVConfig, synthetic_gcav_problem
    p = synthetic_gcav_problem(L=L, C=C, R=R, M=M, n=n, dims=[d] * L, seed=0)
    cfg = GCAVConfig.preset(size, seed=0, num_threads=threads)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    gm = GCAV(p["layers"], p["dims"], p["concepts"], R, cfg).fit(p["cavs"], p["random_cavs"], p["grads"], progress=False)
    fit_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # scoring: TGCAV (decode + sign count) vs one TCAV scoring pass over the same gradients and as many CAVs
    from gcav_nb.tcav import tcav_scores
    grads = {h: g for h, g in zip(p["layers"], p["grads"])}; cavs = {h: c for h, c in zip(p["layers"], p["cavs"])}
    def best(f, k=5):
        ts = []
        for _ in range(k): t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        return min(ts)
    tg = best(lambda: gm.tgcav_scores(p["grads"])); tc = best(lambda: tcav_scores(grads, cavs))
    q.put(dict(layers=L, concepts=C, fit_s=fit_s, stage1_s=gm.timing["stage1"], stage2_s=gm.timing["stage2"], stage3_s=gm.timing["stage3"],
               peak_rss_mb=peak / 1024, base_rss_mb=base / 1024, tgcav_score_s=tg, tcav_score_s=tc))

def run_cell(*args):
    ctx = mp.get_context("spawn"); q = ctx.Queue()
    pr = ctx.Process(target=_cell, args=(q, *args)); pr.start()
    while True:
        try: r = q.get(timeout=5); break
        except Exception:
            if not pr.is_alive(): raise RuntimeError(f"bench cell {args[:2]} crashed (exit code {pr.exitcode})")
    pr.join()
    return r

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="cpu", choices=["ci", "cpu"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", default=None, help="cells as LxC,LxC (e.g. 30x10); default: the size's grid")
    a = ap.parse_args()
    if a.size == "ci": grid, d, R, M, n = [(2, 2), (4, 2), (4, 3)], 64, 4, 6, 20
    else: grid, d, R, M, n = [(8, 3), (16, 3), (30, 3), (8, 10), (16, 10), (30, 10)], 576, 10, 45, 100
    if a.grid: grid = [tuple(int(v) for v in c.split("x")) for c in a.grid.split(",")]
    rows = []
    print(f"GCAV bench, size={a.size}, d={d}, R={R}, M={M} random CAVs/layer, n={n} gradients, {a.threads} threads, {platform.machine()} {os.cpu_count()} cpus", flush=True)
    print(f"{'layers':>6} {'concepts':>8} {'fit s':>8} {'stage1':>7} {'stage2':>7} {'stage3':>7} {'peak RSS MB':>11} {'TGCAV/TCAV score':>16}", flush=True)
    for L, C in grid:
        r = run_cell(L, C, a.size, d, R, M, n, a.threads); rows.append(r)
        print(f"{L:>6} {C:>8} {r['fit_s']:>8.1f} {r['stage1_s']:>7.1f} {r['stage2_s']:>7.1f} {r['stage3_s']:>7.1f} {r['peak_rss_mb']:>11.0f} {r['tgcav_score_s'] / r['tcav_score_s']:>15.2f}x", flush=True)
    big = rows[-1]
    score_ratio = big["tgcav_score_s"] / big["tcav_score_s"]
    fit_goal = 120.0
    append_results([[f"tgcav_scoring_vs_tcav_L{big['layers']}xC{big['concepts']}", f"{big['tgcav_score_s']:.5f}", "tcav_scores (same grads)", f"{big['tcav_score_s']:.5f}", f"{score_ratio:.3f}", "<=1 (plus decoding)"],
                    [f"gcav_fit_L{big['layers']}xC{big['concepts']}", f"{big['fit_s']:.2f}", "2-minute budget", f"{fit_goal:.0f}", f"{big['fit_s'] / fit_goal:.3f}", "<=1"]], a.size)
    (OUT / f"gcav_{a.size}.json").write_text(json.dumps(rows, indent=1))
    write_growth("gcav_fit", [{k: r[k] for k in ("layers", "concepts", "fit_s", "stage1_s", "stage2_s", "stage3_s", "peak_rss_mb")} for r in rows])
    print(f"TGCAV scoring / one TCAV scoring pass ({big['layers']} layers x {big['concepts']} concepts x {R} runs): {score_ratio:.2f}x")
    print(f"gcav_fit_{big['layers']}x{big['concepts']} vs 2-minute budget: {big['fit_s'] / fit_goal:.2f}x (goal <= 1.0)")

if __name__ == "__main__": main()
