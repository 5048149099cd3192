"""GCAV training time and peak memory vs layers and concepts; TGCAV scoring cost vs one TCAV scoring pass.

    python bench/bench_gcav.py [--size ci|cpu]

Synthetic CAVs of SmolLM2's width (576) with R=10 runs and 45 random-vs-random CAVs per layer, 100 target
gradients, `GCAVConfig.preset("fixed", size)` (the default mode). Each (layers, concepts) cell runs in its own process so that its peak RSS is
its own. Goals: all three stages on 30 layers x 10 concepts in under 2 minutes on 2 cores; TGCAV scoring no
dearer than one TCAV pass. That is measured twice:
- scoring only: `GCAV.tgcav_scores` vs `tcav.tcav_scores` on the same precomputed gradients and as many CAVs (the
  decoded CAVs are cached after the first call; the one-off decoding time is printed beside it);
- a whole pass on a real model (SmolLM2-135M at cpu size, all 30 residual layers; tiny-llama at ci size): target
  gradients of the prompts (one forward+backward) followed by TGCAV scoring, vs the same followed by TCAV scoring."""
import argparse, json, multiprocessing as mp, os, platform, resource, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when gcav_nb is not pip-installed
from _results import OUT, append_results, write_growth  # noqa: E402  (bench/ is on sys.path when run as a script)

def _cell(q, L, C, size, d, R, M, n, threads):
    import torch
    torch.set_num_threads(threads)
    from gcav_nb.gcav import GCAV, GCAVConfig, synthetic_gcav_problem
    p = synthetic_gcav_problem(L=L, C=C, R=R, M=M, n=n, dims=[d] * L, N=R, seed=0)
    cfg = GCAVConfig.preset("fixed", size, seed=0, num_threads=threads)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    gm = GCAV(p["layers"], p["dims"], p["concepts"], R, cfg).fit(p["cavs"], p["random_cavs"], p["grads"], progress=False)
    fit_s = time.perf_counter() - t0
    # the whole method as the pipeline runs it: AEs on concept + null CAVs, stages 2-3 for the concepts and for the null
    from gcav_nb.gcav import GCAVMethod
    t0 = time.perf_counter()
    m = GCAVMethod(cfg).fit(p["cavs"], p["null"], p["grads"], layers=p["layers"], concepts=p["concepts"], progress=False); m.transform(p["null"])
    method_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # scoring: TGCAV (decode + sign count) vs one TCAV scoring pass over the same gradients and as many CAVs
    from gcav_nb.tcav import tcav_scores
    grads = {h: g for h, g in zip(p["layers"], p["grads"])}; cavs = {h: c for h, c in zip(p["layers"], p["cavs"])}
    def best(f, k=5):
        ts = []
        for _ in range(k): t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        return min(ts)
    t = time.perf_counter(); gm.decode(); decode_s = time.perf_counter() - t                     # one-off, then cached
    tg = best(lambda: gm.tgcav_scores(p["grads"])); tc = best(lambda: tcav_scores(grads, cavs))
    q.put(dict(layers=L, concepts=C, fit_s=fit_s, method_s=method_s, stage1_s=gm.timing["stage1"], stage2_s=gm.timing["stage2"], stage3_s=gm.timing["stage3"],
               peak_rss_mb=peak / 1024, base_rss_mb=base / 1024, tgcav_score_s=tg, tcav_score_s=tc, decode_s=decode_s))

def model_pass(size, C, R, threads):
    "Seconds of (gradients + TCAV scoring) and (gradients + TGCAV scoring) on a real model, best of 3, interleaved."
    import torch
    torch.set_num_threads(threads)
    from gcav_nb.models import load_model, layer_hooks
    from gcav_nb.data import load_concepts, apply_template
    from gcav_nb.tcav import gradients, logit, tcav_scores
    from gcav_nb.gcav import GCAV, GCAVConfig, synthetic_gcav_problem
    name, n = ("smollm2-135m", 32) if size == "cpu" else ("tiny-llama", 8)
    model = load_model(name, device="cpu"); hooks = layer_hooks(model)
    d = model.cfg.d_model
    prompts = apply_template(load_concepts("praise")["praise"].sample(n, seed=0), ["Review: {text}\nThe sentiment of this review is"])
    p = synthetic_gcav_problem(L=len(hooks), C=C, R=R, M=6, n=8, dims=[d] * len(hooks), seed=0)
    gm = GCAV(hooks, p["dims"], p["concepts"], R, GCAVConfig.preset("fixed", "ci", seed=0)).fit(p["cavs"], p["random_cavs"], p["grads"], progress=False)
    gm.decode()
    cavs = {h: c for h, c in zip(hooks, p["cavs"])}; target = logit(" positive")
    def tcav_pass(): tcav_scores(gradients(model, prompts, hooks, target, progress=False), cavs)
    def tgcav_pass(): gm.tgcav_scores(list(gradients(model, prompts, hooks, target, progress=False).values()))
    tc, tg = [], []
    for _ in range(3):
        for f, ts in ((tcav_pass, tc), (tgcav_pass, tg)):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return dict(model=name, layers=len(hooks), prompts=n, tcav_pass_s=min(tc), tgcav_pass_s=min(tg))

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
    print(f"{'layers':>6} {'concepts':>8} {'fit s':>8} {'+null s':>8} {'stage1':>7} {'stage2':>7} {'stage3':>7} {'peak RSS MB':>11} {'TGCAV/TCAV score':>16} {'decode s':>8}", flush=True)
    for L, C in grid:
        r = run_cell(L, C, a.size, d, R, M, n, a.threads); rows.append(r)
        print(f"{L:>6} {C:>8} {r['fit_s']:>8.1f} {r['method_s']:>8.1f} {r['stage1_s']:>7.1f} {r['stage2_s']:>7.1f} {r['stage3_s']:>7.1f} {r['peak_rss_mb']:>11.0f} {r['tgcav_score_s'] / r['tcav_score_s']:>15.2f}x {r['decode_s']:>8.4f}", flush=True)
    big = rows[-1]
    score_ratio = big["tgcav_score_s"] / big["tcav_score_s"]
    fit_goal = 120.0
    mp_ = model_pass(a.size, big["concepts"], R, a.threads); pass_ratio = mp_["tgcav_pass_s"] / mp_["tcav_pass_s"]
    print(f"one pass on {mp_['model']} ({mp_['layers']} layers, {mp_['prompts']} prompts): gradients + TCAV scoring {mp_['tcav_pass_s']:.3f}s, "
          f"gradients + TGCAV scoring {mp_['tgcav_pass_s']:.3f}s")
    append_results([[f"tgcav_scoring_vs_tcav_L{big['layers']}xC{big['concepts']}", f"{big['tgcav_score_s']:.5f}", f"tcav_scores (same grads; one-off decode {big['decode_s']:.4f}s)", f"{big['tcav_score_s']:.5f}", f"{score_ratio:.3f}", "<= 1"],
                    [f"tgcav_pass_vs_tcav_pass_{mp_['model']}", f"{mp_['tgcav_pass_s']:.4f}", f"gradients + tcav_scores ({mp_['layers']} layers, {mp_['prompts']} prompts)", f"{mp_['tcav_pass_s']:.4f}", f"{pass_ratio:.3f}", "<= 1.05"],
                    [f"gcav_fit_L{big['layers']}xC{big['concepts']}", f"{big['fit_s']:.2f}", "2-minute budget", f"{fit_goal:.0f}", f"{big['fit_s'] / fit_goal:.3f}", "<=1"]], a.size)
    (OUT / f"gcav_{a.size}.json").write_text(json.dumps(rows, indent=1))
    write_growth("gcav_fit", [{k: r[k] for k in ("layers", "concepts", "fit_s", "method_s", "stage1_s", "stage2_s", "stage3_s", "peak_rss_mb")} for r in rows])
    print(f"TGCAV pass / TCAV pass on {mp_['model']}: {pass_ratio:.3f}x (goal <= 1.05: the same gradients, plus scoring)")
    print(f"TGCAV scoring / one TCAV scoring pass ({big['layers']} layers x {big['concepts']} concepts x {R} runs): {score_ratio:.2f}x")
    print(f"gcav_fit_{big['layers']}x{big['concepts']} vs 2-minute budget: {big['fit_s'] / fit_goal:.2f}x (goal <= 1.0)")
    print(f"GCAVMethod fit + null ({R} pseudo-concepts) through GCAV, {big['layers']}x{big['concepts']}: {big['method_s']:.1f}s ({big['method_s'] / fit_goal:.2f}x the 2-minute budget)")

if __name__ == "__main__": main()
