"""Shared pytest set-up: seeded RNG, ci scale, and a closing list of the slowest notebooks."""
import os, random, time
import numpy as np
import pytest
import torch

os.environ.setdefault("GCAV_NB_SCALE", "ci")
os.environ.setdefault("MPLBACKEND", "Agg")
NOTEBOOK_TIMES: dict[str, float] = {}


class ForwardRan(Exception):
    "Raised by `tripwire`: a forward pass ran where a bad argument should have stopped the call first."


def tripwire(model):
    "A context on a TransformerBridge in which any forward pass raises ForwardRan (for 'fails before work' tests)."
    def boom(a, hook): raise ForwardRan("a forward pass ran")
    return model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", boom)])

@pytest.fixture(scope="module")
def tiny():
    "The 4-layer random-weight Llama (read-only: tests must not change its weights)."
    from gcav_nb.models import load_model
    return load_model("tiny-llama", device="cpu")

@pytest.fixture(scope="module")
def tiny_gpt2():
    "The 2-layer random-weight GPT-2 (read-only)."
    from gcav_nb.models import load_model
    return load_model("tiny-gpt2", device="cpu")

@pytest.fixture(autouse=True)
def _seed():
    random.seed(42); np.random.seed(42); torch.manual_seed(42)

def pytest_terminal_summary(terminalreporter):
    if not NOTEBOOK_TIMES: return
    terminalreporter.section("slowest notebooks (SCALE=ci)")
    for name, secs in sorted(NOTEBOOK_TIMES.items(), key=lambda kv: -kv[1])[:10]:
        terminalreporter.write_line(f"{secs:8.1f}s  {name}")
    terminalreporter.write_line(f"{sum(NOTEBOOK_TIMES.values()):8.1f}s  all {len(NOTEBOOK_TIMES)} notebooks")
