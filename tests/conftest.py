"""Shared pytest set-up: seeded RNG, ci scale, and a closing list of the slowest notebooks."""
import os, random, time
import numpy as np
import pytest
import torch

os.environ.setdefault("GCAV_NB_SCALE", "ci")
os.environ.setdefault("MPLBACKEND", "Agg")
NOTEBOOK_TIMES: dict[str, float] = {}

@pytest.fixture(autouse=True)
def _seed():
    random.seed(42); np.random.seed(42); torch.manual_seed(42)

def pytest_terminal_summary(terminalreporter):
    if not NOTEBOOK_TIMES: return
    terminalreporter.section("slowest notebooks (SCALE=ci)")
    for name, secs in sorted(NOTEBOOK_TIMES.items(), key=lambda kv: -kv[1])[:10]:
        terminalreporter.write_line(f"{secs:8.1f}s  {name}")
    terminalreporter.write_line(f"{sum(NOTEBOOK_TIMES.values()):8.1f}s  all {len(NOTEBOOK_TIMES)} notebooks")
