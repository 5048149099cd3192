"""Execute notebooks in place at a chosen scale, saving their outputs, skipping cells flagged as nbdev_test does.

    python tools/run_nb.py nbs/05a_texshapes.ipynb --scale cpu      # outputs saved for the docs
Cells whose first lines carry a flag from settings.ini `tst_flags` (`#| gpu`, `#| notest`, `#| slow`) are skipped
unless forced with --flags; at --scale gpu, `gpu` is forced. Then run `nbdev_clean`. A failed run leaves what it
executed beside the notebook as `_<name>.failed.ipynb` (the `_` keeps it out of nbdev_export, the docs and the tests).
"""
import argparse, os, re, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from nbdev.config import get_config

_re_flag = re.compile(r'^\s*#\|\s*([\w-]+)\s*$', re.M)

def _flags(src: str) -> set[str]:
    head = []
    for line in src.splitlines():
        if not line.startswith('#|'): break
        head.append(line)
    return set(_re_flag.findall('\n'.join(head)))

class FlaggedClient(NotebookClient):
    "An nbclient that leaves cells carrying a skipped flag unexecuted (their old outputs are cleared)."
    skip: set[str] = set()
    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type == 'code' and _flags(cell.source) & self.skip:
            cell.outputs = []; cell.execution_count = None
            return cell
        return await super().async_execute_cell(cell, cell_index, execution_count, store_history)

def run(path: Path, scale: str, force: set[str], timeout: int):
    cfg = get_config()
    skip = set(cfg.get('tst_flags', 'notest').split()) - force - ({'gpu'} if scale == 'gpu' else set())
    os.environ['GCAV_NB_SCALE'] = scale
    nb = nbformat.read(path, as_version=4)
    client = FlaggedClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}})
    client.skip = skip
    t0 = time.perf_counter()
    try: client.execute()
    except BaseException:   # keep what ran (outputs up to the failing cell) beside the notebook, never over it
        nbformat.write(nb, path.with_name(f'_{path.stem}.failed.ipynb')); raise   # '_': nbdev's globs and the tests skip it
    nbformat.write(nb, path)
    print(f"{path.name}: executed at scale={scale} in {time.perf_counter()-t0:.0f}s (skipped flags: {sorted(skip)})")

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='+', type=Path)
    p.add_argument('--scale', default='cpu', choices=('ci', 'cpu', 'gpu'))
    p.add_argument('--flags', default='', help='space-separated flags to run anyway (e.g. "slow")')
    p.add_argument('--timeout', type=int, default=3600, help='seconds per cell')
    a = p.parse_args()
    os.environ.pop('MPLBACKEND', None)   # an Agg backend would keep figures out of the saved outputs
    for nb in a.notebooks: run(nb.resolve(), a.scale, set(a.flags.split()), a.timeout)

if __name__ == '__main__': main()
