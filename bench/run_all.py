"""Run every bench/bench_*.py at one size and write the ledger: bench/out/ledger.md + bench/out/ledger.csv.

    python bench/run_all.py --size ci            # seconds: checks the scripts still run
    python bench/run_all.py --size cpu --publish # the real run; also copies the ledger to bench/ledger.md (docs page)
    python bench/run_all.py --size cpu --collect --publish  # no run: the published ledger updated with scripts rerun since

Each script measures its reference in the same run and appends rows to bench/out/results.csv (columns figure,
ours_s, reference, reference_s, ratio, goal, size, machine); its last printed line is
`<figure>: <ratio>x (goal <goal>)`. The runner takes the rows a script appended during this run, or, when it
appended none, that last line. Growth tables (cost vs layers, inputs, concepts, runs) are files
bench/out/growth_*.csv that scripts (re)write; the runner puts every one written during this run in the ledger.
Scripts run one after another (the machine is shared), each with `--size` and a time limit.
"""
from __future__ import annotations
import argparse, csv, datetime, os, re, shutil, subprocess, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _results import RESULT_COLS, machine  # noqa: E402
LEDGER_COLS = ['script', 'figure', 'ours_s', 'reference', 'reference_s', 'ratio', 'goal', 'met', 'size', 'status', 'wall_s']
LAST_LINE = re.compile(r'^(?P<figure>.+?):\s*(?P<ratio>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)\s*x\s*'
                       r'\(goal\s*(?P<goal>[^)]*)\)\s*$')


def parse_last_line(stdout: str) -> dict | None:
    "`<figure>: <ratio>x (goal <goal>)` from the last non-empty line, or None."
    lines = [l.strip() for l in stdout.splitlines() if l.strip()]
    m = LAST_LINE.match(lines[-1]) if lines else None
    return dict(figure=m['figure'].strip(), ratio=m['ratio'], goal=m['goal'].strip()) if m else None


def _num(x) -> float | None:
    try: return float(str(x).strip().rstrip('xX'))
    except (TypeError, ValueError): return None


def goal_met(ratio, goal) -> str:
    """'yes' / 'no' / '?' for a ratio against a goal such as '>= 2', '≥2x', '<= 1.5x', '> 1' or a bare '2x'
    (a bare number means at least that ratio)."""
    r = _num(ratio)
    m = re.match(r'^\s*(>=|≥|>|<=|≤|<|=|==)?\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*x?\s*$', str(goal or ''))
    if r is None or not m: return '?'
    op, g = m.group(1) or '>=', float(m.group(2))
    ok = {'>=': r >= g, '≥': r >= g, '>': r > g, '<=': r <= g, '≤': r <= g, '<': r < g, '=': abs(r - g) < 1e-9, '==': abs(r - g) < 1e-9}[op]
    return 'yes' if ok else 'no'


def read_results(path: Path) -> list[dict]:
    if not path.exists(): return []
    with path.open(newline='', encoding='utf-8') as f: return list(csv.DictReader(f))


def run_script(script: Path, size: str, timeout: float, results: Path) -> tuple[list[dict], str]:
    "Run one bench script; return its ledger rows and its captured output."
    before = len(read_results(results))
    t0 = time.perf_counter()
    env = {**os.environ, 'GCAV_NB_SCALE': size if size in ('ci', 'cpu', 'gpu') else os.environ.get('GCAV_NB_SCALE', 'cpu'),
           'MPLBACKEND': 'Agg', 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep)}
    try:
        p = subprocess.run([sys.executable, str(script), '--size', size], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 'timeout', (e.stdout or b'').decode() if isinstance(e.stdout, bytes) else (e.stdout or ''), f'timed out after {timeout:.0f}s'
    wall = time.perf_counter() - t0
    status = 'ok' if rc == 0 else ('timeout' if rc == 'timeout' else f'failed (rc {rc}): ' + (err.strip().splitlines() or ['?'])[-1][:200])
    new = read_results(results)[before:]
    if not new:
        last = parse_last_line(out) if rc == 0 else None
        new = [dict(figure=last['figure'], ratio=last['ratio'], goal=last['goal'], size=size)] if last else \
              [dict(figure='(no result row)', size=size)]
        if rc == 0 and not last: status = 'ok, but no results.csv row and no `<figure>: <ratio>x (goal ...)` last line'
    rows = [{**{k: r.get(k, '') for k in RESULT_COLS}, 'script': script.name, 'met': goal_met(r.get('ratio'), r.get('goal')),
             'status': status, 'wall_s': f'{wall:.1f}'} for r in new]
    return rows, out + ('\n' + err if err else '')


def _fmt(v) -> str:
    f = _num(v)
    if f is None: return str(v or '')
    return f'{f:.3g}' if abs(f) < 1000 else f'{f:.0f}'


def md_table(rows: list[dict], cols: list[str]) -> str:
    out = ['| ' + ' | '.join(cols) + ' |', '| ' + ' | '.join('---' for _ in cols) + ' |']
    out += ['| ' + ' | '.join(_fmt(r.get(c, '')).replace('|', '\\|') for c in cols) + ' |' for r in rows]
    return '\n'.join(out)


def ledger_md(rows: list[dict], growth: dict[str, list[dict]], size: str, mach: str, started: str, total_s: float) -> str:
    try: commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError: commit = ''
    met = [r['met'] for r in rows]
    lines = ['# Benchmark ledger', '',
             f'Size `{size}`, run {started} UTC in {total_s:.0f} s, commit `{commit or "?"}`.  ', f'Machine: {mach}.', '',
             'Each figure is measured against its reference **in the same run** on this machine; `ratio` is what the '
             'script reports (see its docstring for the direction), `met` compares it with the goal. '
             f'Goals met: {met.count("yes")} of {len(rows)} ({met.count("no")} missed, {met.count("?")} without a numeric goal).', '',
             md_table(rows, ['figure', 'ours_s', 'reference', 'reference_s', 'ratio', 'goal', 'met', 'script', 'status'])]
    if growth:
        lines += ['', '## How cost grows', '']
        for name, g in growth.items():
            lines += [f'### {name}', '', md_table(g, list(g[0].keys())) if g else '*(empty)*', '']
    lines += ['', '*Written by `python bench/run_all.py`; do not edit by hand.*', '']
    return '\n'.join(lines)


def published_rows(md: str) -> tuple[list[dict], str]:
    "The figure rows of a ledger.md table, and its text from '## How cost grows' on ('' when absent)."
    cols, rows = None, []
    for line in md.splitlines():
        if not line.startswith('| '): continue
        cells = [c.strip() for c in line.strip('|').split(' | ')]
        if cells[0] == 'figure': cols = cells
        elif cols and not set(cells[0]) <= {'-'} and len(cells) == len(cols): rows.append(dict(zip(cols, cells)))
    i = md.find('## How cost grows')
    return rows, (md[i:md.find('*Written by')].rstrip() if i >= 0 else '')


def collect(out: Path, size: str, publish: bool):
    "The published ledger with each figure's latest `size` row from results.csv in place of (or beside) its published row."
    old = (HERE/'ledger.md').read_text(encoding='utf-8')
    rows, growth = published_rows(old)
    src = {p.name: p.read_text(encoding='utf-8') for p in sorted(HERE.glob('bench_*.py'))}
    latest = {r['figure']: r for r in read_results(out/'results.csv') if r.get('size') == size}
    by_fig = {r['figure']: r for r in rows}
    for f, r in latest.items():
        parts = f.split('_')                                        # a figure named with an f-string: its longest literal prefix
        script = next((n for k in range(len(parts), 1, -1) for n, t in src.items() if '_'.join(parts[:k]) in t), '?')
        by_fig[f] = {**{k: r.get(k, '') for k in RESULT_COLS}, 'script': script, 'met': goal_met(r.get('ratio'), r.get('goal')),
                     'status': 'ok (rerun)'}
    rows = list(by_fig.values())
    try: commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError: commit = ''
    first = old.splitlines()[2] if len(old.splitlines()) > 2 else ''
    met = [r['met'] for r in rows]
    md = '\n'.join(['# Benchmark ledger', '', f'Size `{size}`. Rows marked `ok (rerun)`: the latest run of their script since the full run '
                     f'(`bench/out/results.csv`, collected at commit `{commit or "?"}`); the others, and the growth tables, from the full run: '
                     + first.rsplit('from the full run: ', 1)[-1].removeprefix(f'Size `{size}`, ').rstrip(' .') + '.  ', f'Machine: {machine()}.', '',
                     'Each figure is measured against its reference **in the same run of its script** on this machine; `ratio` is what the '
                     'script reports (see its docstring for the direction), `met` compares it with the goal. '
                     f'Goals met: {met.count("yes")} of {len(rows)} ({met.count("no")} missed, {met.count("?")} without a numeric goal).', '',
                     md_table(rows, ['figure', 'ours_s', 'reference', 'reference_s', 'ratio', 'goal', 'met', 'script', 'status']),
                     *(['', growth] if growth else []), '', '*Written by `python bench/run_all.py`; do not edit by hand.*', ''])
    (out/'ledger.md').write_text(md, encoding='utf-8')
    if publish: shutil.copy(out/'ledger.md', HERE/'ledger.md')
    print(f"ledger: {len(rows)} rows ({sum(r['status'] == 'ok (rerun)' for r in rows)} rerun since the full run)" + ('; published' if publish else ''))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--size', default='ci', choices=['ci', 'cpu', 'gpu'], help='passed to every script as --size')
    ap.add_argument('--only', default='bench_*.py', help='glob of scripts to run (default bench_*.py)')
    ap.add_argument('--timeout', type=float, default=1800, help='seconds per script')
    ap.add_argument('--out', default=str(HERE/'out'), help='folder for results.csv, ledger.md, ledger.csv')
    ap.add_argument('--publish', action='store_true', help='also copy the ledger to bench/ledger.md (the docs page)')
    ap.add_argument('--collect', action='store_true', help='run nothing: update the published ledger with the latest results.csv '
                    'row of each figure at --size (scripts rerun one by one since the last full run)')
    a = ap.parse_args(argv)
    if a.collect: return collect(Path(a.out), a.size, a.publish)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    results = out/'results.csv'
    scripts = sorted(HERE.glob(a.only))
    if not scripts: sys.exit(f"no scripts match bench/{a.only}")
    started, t0 = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M'), time.time()
    mach, rows = machine(), []
    for s in scripts:
        print(f'== {s.name} --size {a.size}', flush=True)
        r, log = run_script(s, a.size, a.timeout, results)
        (out/f'{s.stem}.log').write_text(log, encoding='utf-8')
        for x in r: print(f"   {x['figure']}: ratio {x['ratio'] or '?'} (goal {x['goal'] or '?'}) met={x['met']}  [{x['status']}, {x['wall_s']} s]", flush=True)
        rows += r
    growth = {p.stem.removeprefix('growth_'): read_results(p) for p in sorted(out.glob('growth_*.csv')) if p.stat().st_mtime >= t0}
    for r in rows: r['machine'] = r.get('machine') or mach
    with (out/'ledger.csv').open('w', newline='', encoding='utf-8') as f:
        w = csv.DictWriter(f, fieldnames=LEDGER_COLS + ['machine'], extrasaction='ignore'); w.writeheader(); w.writerows(rows)
    md = ledger_md(rows, growth, a.size, mach, started, time.time() - t0)
    (out/'ledger.md').write_text(md, encoding='utf-8')
    if a.publish: shutil.copy(out/'ledger.md', HERE/'ledger.md')
    print(f"ledger: {out/'ledger.md'} and {out/'ledger.csv'} ({len(rows)} rows from {len(scripts)} scripts)"
          + (f"; published to {HERE/'ledger.md'}" if a.publish else ''))
    failed = [r for r in rows if not r['status'].startswith('ok')]
    if failed: print(f"{len(failed)} script(s) failed: {sorted({r['script'] for r in failed})}", file=sys.stderr); sys.exit(1)


if __name__ == '__main__': main()
