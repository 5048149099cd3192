"""gcav_nb.steering.activation_reasoning: the generated benchmark's ground truth is consistent with the logic layer,
bad input fails early (before any forward pass), the slot read-out against a direct capture, and (cpu) the direction
the notebook found on SmolLM2: probes + logic answer better than the model alone and than both controls."""
import numpy as np
import pandas as pd
import pytest
import torch
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.activations import capture
from gcav_nb.steering.activation_reasoning import (CATEGORIES, prontoqa, forward_chain, reason, slot_positions, read_slots,
                                                   fit_reader, model_answers)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")

from conftest import ForwardRan, tripwire as _tripwire

def _slots(df):
    return pd.DataFrame([dict(story=i, role=r, category=c) for i, row in df.iterrows() for r, c, _ in row.slots])

@pytest.mark.parametrize("hops", [1, 2, 3, 5])
def test_ground_truth_matches_forward_chaining(hops):
    df = prontoqa(40, hops, seed=3)
    assert df.label.mean() == 0.5 and (df.hops == hops).all()
    assert reason(_slots(df)).tolist() == df.label.tolist()

def test_forward_chain_follows_only_reachable_rules():
    assert forward_chain({"a"}, [("b", "c"), ("a", "b"), ("x", "a")]) == {"a", "b", "c"}
    assert forward_chain(set(), [("a", "b")]) == set()

BAD_DATA = {
    "n zero": (lambda: prontoqa(0, 1), GcavInputError, "n must"),
    "hops zero": (lambda: prontoqa(4, 0), GcavInputError, "hops"),
    "hops too deep": (lambda: prontoqa(4, len(CATEGORIES)), GcavInputError, "hops"),
    "hops bool": (lambda: prontoqa(4, True), GcavInputError, "hops"),
    "reason missing column": (lambda: reason(pd.DataFrame(dict(story=[0], role=["fact"]))), GcavInputError, "columns"),
    "reader control": (lambda: fit_reader(torch.randn(4, 3), list("abab"), "noise"), GcavInputError, "control"),
    "reader one concept": (lambda: fit_reader(torch.randn(4, 3), list("aaaa")), GcavInputError, "two concepts"),
    "reader label count": (lambda: fit_reader(torch.randn(4, 3), list("aba")), GcavInputError, "one label per row"),
    "reader width": (lambda: fit_reader(torch.randn(6, 3), list("ababab")).predict(torch.randn(2, 4)), GcavInputError, "activations must be"),
}

@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_bad_data_is_refused(case):
    fn, exc, msg = BAD_DATA[case]
    with pytest.raises(exc, match=msg): fn()

BAD_MODEL = {
    "empty stories": (lambda m: read_slots(m, prontoqa(2, 1).iloc[:0], "blocks.1.hook_resid_post"), GcavInputError, "non-empty"),
    "batch size": (lambda m: read_slots(m, prontoqa(2, 1), "blocks.1.hook_resid_post", batch_size=0), GcavInputError, "batch_size"),
    "unknown hook": (lambda m: read_slots(m, prontoqa(2, 1), "blocks.9.hook_resid_post"), Exception, "blocks.9"),
    "answers empty": (lambda m: model_answers(m, prontoqa(2, 1).iloc[:0]), GcavInputError, "non-empty"),
    "not a prontoqa frame": (lambda m: slot_positions(m, pd.DataFrame(dict(text=["x"]))), GcavInputError, "prontoqa"),
}

@pytest.mark.parametrize("case", BAD_MODEL, ids=list(BAD_MODEL))
def test_bad_model_input_fails_before_any_forward(case, tiny):
    fn, exc, msg = BAD_MODEL[case]
    with _tripwire(tiny):
        with pytest.raises(exc, match=msg): fn(tiny)

def test_read_slots_equals_a_direct_capture(tiny):
    df = prontoqa(5, 2, seed=1)
    sl, X = read_slots(tiny, df, "blocks.2.hook_resid_post", batch_size=2)
    for i in (0, 3):
        ids = tiny.tokenizer(df.text[i], add_special_tokens=False)["input_ids"]
        with capture(tiny, "blocks.2.hook_resid_post") as a: tiny(torch.tensor([ids]))
        rows = sl.index[sl.story == i]
        torch.testing.assert_close(X["blocks.2.hook_resid_post"][rows], a["blocks.2.hook_resid_post"][0, sl.pos[rows].to_numpy()].float(), rtol=1e-4, atol=1e-4)
        assert all(c.endswith(tiny.tokenizer.decode(ids[p]).strip()) for c, p in zip(sl.category[rows], sl.pos[rows]))

@cpu_only
def test_cpu_probes_plus_logic_beat_the_model_and_controls_on_smollm2():
    "cpu: a smaller version of the notebook (60 fitting / 40 test stories per depth) at blocks.3, the layer its saved cpu run chose."
    from gcav_nb.models import load_model
    m = load_model("smollm2-135m"); H = "blocks.3.hook_resid_post"
    fit = pd.concat([prontoqa(60, h, seed=0) for h in (1, 2, 3)], ignore_index=True)
    test = pd.concat([prontoqa(40, h, seed=2) for h in (1, 2, 3)], ignore_index=True)
    (sf, Xf), (st, Xt) = read_slots(m, fit, H), read_slots(m, test, H)
    acc = {}
    for c in (None, "shuffled", "random"):
        pred = st.assign(pred=fit_reader(Xf[H], sf.category, c).predict(Xt[H]))
        acc[c] = float((reason(pred, "pred").to_numpy() == test.label.to_numpy()).mean())
    acc["model"] = float(((model_answers(m, test) > 0.5).to_numpy() == test.label.to_numpy()).mean())
    assert acc[None] > max(acc["model"], acc["shuffled"], acc["random"]), acc
