"""gcav_nb.steering.ffn_values (FFN value-vector steering, the VLA paper's mechanism on an LM): bad input fails before any
forward pass, the projection and the cluster ranking against their definitions, the overwrite removed after an exception
inside the `with` block, and (cpu) the direction the notebook found on SmolLM2: the hot-weather cluster at c = 4 raises
P(hot tokens) more than random neurons in the same layers."""
import math
import pandas as pd
import pytest
import torch
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.steering.core import steer
from gcav_nb.steering.ffn_values import (HOT, COLD, value_topk, theme_ids, theme_neurons, overwrite, random_neurons, theme_mass)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")
CL = pd.DataFrame(dict(layer=[1, 1, 3], neuron=[5, 9, 2], hits=[2, 2, 2]))

from conftest import ForwardRan, tripwire as _tripwire

BAD = {
    "k zero": (lambda m: value_topk(m, k=0), "k must"),
    "layer out of range": (lambda m: value_topk(m, layers=[m.cfg.n_layers]), "layers"),
    "layers empty": (lambda m: value_topk(m, layers=[]), "layers"),
    "no words": (lambda m: theme_ids(m, []), "non-empty"),
    "words str": (lambda m: theme_ids(m, "hot"), "non-empty"),
    "no single-token word": (lambda m: theme_ids(m, ["xqzvkwpl"]), "single token"),
    "coef nan": (lambda m: overwrite(m, CL, math.nan), "finite"),
    "coef bool": (lambda m: overwrite(m, CL, True), "finite"),
    "empty cluster": (lambda m: overwrite(m, CL.iloc[:0], 4.0), "non-empty"),
    "neuron out of range": (lambda m: overwrite(m, pd.DataFrame(dict(layer=[0], neuron=[m.cfg.d_mlp + 5])), 4.0), "out of range"),
    "layer does not exist": (lambda m: overwrite(m, pd.DataFrame(dict(layer=[99], neuron=[0])), 4.0), "99"),
    "no prompts": (lambda m: theme_mass(m, [], [5]), "non-empty"),
    "no ids": (lambda m: theme_mass(m, ["x"], []), "ids is empty"),
}

@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_fails_before_any_forward(case, tiny):
    fn, msg = BAD[case]
    with _tripwire(tiny):
        with pytest.raises((GcavInputError, KeyError), match=msg): fn(tiny)

def test_theme_neurons_bad_input():
    t = torch.zeros(2, 3, 4, dtype=torch.long)
    with pytest.raises(GcavInputError, match="topk"): theme_neurons(t[0], [1])
    with pytest.raises(GcavInputError, match="n must"): theme_neurons(t, [1], n=0)
    with pytest.raises(GcavInputError, match="ids is empty"): theme_neurons(t, [])

def test_value_topk_is_the_projection_of_W_out(tiny):
    tk = value_topk(tiny, k=4, layers=[2], final_norm=False, progress=False)
    want = (tiny.W_out[2] @ tiny.W_U).topk(4, dim=-1).indices
    assert torch.equal(tk[0], want)

def test_theme_neurons_rank_by_hits_then_rank():
    t = torch.zeros(2, 4, 3, dtype=torch.long)
    t[0, 1] = torch.tensor([9, 7, 0]); t[1, 3] = torch.tensor([7, 8, 9]); t[1, 0] = torch.tensor([0, 0, 7])
    cl = theme_neurons(t, [7, 8, 9], n=3, min_hits=1)
    assert cl[["layer", "neuron", "hits"]].values.tolist() == [[1, 3, 3], [0, 1, 2], [1, 0, 1]]

def test_random_neurons_same_layers_disjoint():
    rn = random_neurons(CL, 16, seed=4)
    assert rn.groupby("layer").size().to_dict() == {1: 2, 3: 1}
    assert not set(zip(rn.layer, rn.neuron)) & set(zip(CL.layer, CL.neuron))

def test_lexicons_are_disjoint_and_tokenize(tiny):
    assert not set(HOT) & set(COLD)
    assert not set(theme_ids(tiny, HOT)) & set(theme_ids(tiny, COLD))

def test_overwrite_removed_after_an_exception(tiny):
    ps = ["The weather today is", "She said that the"]
    before = theme_mass(tiny, ps, theme_ids(tiny, HOT))
    with pytest.raises(RuntimeError, match="inside"):
        with steer(*overwrite(tiny, CL, 10.0)):
            assert not torch.allclose(theme_mass(tiny, ps, theme_ids(tiny, HOT)), before)
            raise RuntimeError("an error inside the steering block")
    torch.testing.assert_close(theme_mass(tiny, ps, theme_ids(tiny, HOT)), before)

@cpu_only
def test_cpu_hot_cluster_beats_random_neurons_on_smollm2():
    "cpu: as 15_ffn_values found: the 10-neuron hot cluster at c = 4 raises P(hot tokens) on Brown prompts more than the mean of 6 random sets in the same layers."
    from gcav_nb.models import load_model
    from gcav_nb.store import token_blocks
    m = load_model("smollm2-135m"); ids = theme_ids(m, HOT)
    cl = theme_neurons(value_topk(m, 10, progress=False), ids, 10, 2)
    ps = [m.tokenizer.decode(b.tolist()) for b in token_blocks(m, "brown", ctx=12, n_tokens=12 * 40, seed=1)]
    p0 = float(theme_mass(m, ps, ids).mean())
    sem = float(theme_mass(m, ps, ids, overwrite(m, cl, 4.0)).mean()) - p0
    rnd = [float(theme_mass(m, ps, ids, overwrite(m, random_neurons(cl, m.cfg.d_mlp, seed=r), 4.0)).mean()) - p0 for r in range(6)]
    assert sem > sum(rnd) / len(rnd), (sem, rnd)
