"""Every notebook in nbs/ runs at SCALE=ci with nbdev's semantics (flags in tst_flags are skipped), one test each."""
import os, time
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook   # aliased so pytest does not collect it
from conftest import NOTEBOOK_TIMES

ROOT = Path(__file__).resolve().parents[1]
CFG = get_config(path=ROOT)
NBS = sorted(p for p in CFG.path('nbs_path').rglob('*.ipynb')
             if not any(part.startswith(('_', '.')) for part in p.relative_to(CFG.path('nbs_path')).parts))

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.stem)
def test_notebook_runs_at_ci_scale(nb, monkeypatch):
    "The notebook executes top to bottom at SCALE=ci; its inline tests are the assertions."
    monkeypatch.chdir(nb.parent)
    monkeypatch.setenv('GCAV_NB_SCALE', 'ci')
    skip = CFG.get('tst_flags', 'notest').split()
    force = os.environ.get('NBDEV_FLAGS', '').split()
    t0 = time.perf_counter()
    ok, _ = run_notebook(nb, skip_flags=skip, force_flags=force, basepath=str(ROOT))
    NOTEBOOK_TIMES[nb.stem] = time.perf_counter() - t0
    assert ok, f'{nb.name} failed at SCALE=ci (traceback above)'
