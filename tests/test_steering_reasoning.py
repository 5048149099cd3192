"""gcav_nb.steering.reasoning (Højer et al.): bad input fails before any forward pass, the model is restored after a
sweep, and (cpu) the direction of the effects the notebook found on SmolLM2."""
import math
import pytest
import torch
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.models import load_model, layer_hooks
from gcav_nb.steering.core import as_vector, random_like, contrast_vectors
from gcav_nb.steering.reasoning import (arithmetic_items, contrast_pairs, shuffle_labels, last_logits, score_answers, alpha_sweep)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")
DIGITS = [str(i) for i in range(10)]
H1 = "blocks.1.hook_resid_post"

from conftest import ForwardRan, tripwire as _tripwire

@pytest.fixture(scope="module")
def items(): return arithmetic_items(12, seed=0)

BAD_DATA = {
    "n zero": (lambda it: arithmetic_items(0), GcavInputError, "positive int"),
    "n float": (lambda it: arithmetic_items(2.5), GcavInputError, "positive int"),
    "n bool": (lambda it: arithmetic_items(True), GcavInputError, "positive int"),
    "unknown op": (lambda it: arithmetic_items(3, ops="+*"), GcavInputError, "ops"),
    "empty ops": (lambda it: arithmetic_items(3, ops=""), GcavInputError, "ops"),
    "negative shots": (lambda it: arithmetic_items(3, shots=-1), GcavInputError, "shots"),
    "too many distinct": (lambda it: arithmetic_items(120, ops="-", shots=0), GcavInputError, "distinct"),
    "unknown negative": (lambda it: contrast_pairs(it, "opposite"), GcavInputError, "negative="),
    "empty items": (lambda it: contrast_pairs(it.head(0)), GcavInputError, "empty"),
    "missing column": (lambda it: contrast_pairs(it.drop(columns="wrong")), GcavInputError, "wrong"),
    "items not a frame": (lambda it: contrast_pairs(it.prompt.tolist()), TypeError, "DataFrame"),
    "unpaired labels": (lambda it: shuffle_labels(["a", "b"], ["c"]), GcavInputError, "paired"),
    "no pairs": (lambda it: shuffle_labels([], []), GcavInputError, "no pairs"),
    "score shapes": (lambda it: score_answers(torch.zeros(3, 5), torch.zeros(2), [0, 1]), GcavInputError, "target"),
}

@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_bad_data_is_refused(case, items):
    fn, exc, msg = BAD_DATA[case]
    with pytest.raises(exc, match=msg): fn(items)

def _v(m): return as_vector(torch.randn(m.cfg.d_model, generator=torch.Generator().manual_seed(0)), H1)

BAD_SWEEP = {
    "no vectors": (lambda m, it: alpha_sweep(m, {}, [1.0], ["1 + 1 = "], ["2"], DIGITS), GcavInputError, "empty"),
    "answers short": (lambda m, it: alpha_sweep(m, {"v": _v(m)}, [1.0], ["1 + 1 = ", "2 + 2 = "], ["2"], DIGITS), GcavInputError, "answers"),
    "answer not a choice": (lambda m, it: alpha_sweep(m, {"v": _v(m)}, [1.0], ["5 + 5 = "], ["10"], DIGITS), GcavInputError, "not in choices"),
    "multi-token choice": (lambda m, it: alpha_sweep(m, {"v": _v(m)}, [1.0], ["5 + 5 = "], ["10"], DIGITS + ["10"]), GcavInputError, "not one"),
    "nan alpha": (lambda m, it: alpha_sweep(m, {"v": _v(m)}, [math.nan], ["1 + 1 = "], ["2"], DIGITS), GcavInputError, "finite"),
    "inf alpha": (lambda m, it: alpha_sweep(m, {"v": _v(m)}, [1.0, math.inf], ["1 + 1 = "], ["2"], DIGITS), GcavInputError, "finite"),
    "str alpha": (lambda m, it: alpha_sweep(m, {"v": _v(m)}, ["1"], ["1 + 1 = "], ["2"], DIGITS), GcavInputError, "finite"),
    "wrong width": (lambda m, it: alpha_sweep(m, {"v": as_vector(torch.ones(m.cfg.d_model + 1), H1)}, [1.0], ["1 + 1 = "], ["2"], DIGITS), GcavInputError, "width"),
    "bad ref shape": (lambda m, it: alpha_sweep(m, {"v": _v(m)}, [1.0], ["1 + 1 = "], ["2"], DIGITS, ref_logits=torch.zeros(2, 3)), GcavInputError, "ref_logits"),
    "no prompts": (lambda m, it: last_logits(m, []), GcavInputError, "empty"),
}

@pytest.mark.parametrize("case", BAD_SWEEP, ids=list(BAD_SWEEP))
def test_bad_sweep_fails_before_any_forward(case, tiny, items):
    fn, exc, msg = BAD_SWEEP[case]
    with _tripwire(tiny):
        with pytest.raises(exc, match=msg): fn(tiny, items)

def test_sweep_restores_the_model(tiny, items):
    "After a sweep (and after a failing one) the model's logits are the unsteered ones."
    ps = items.prompt[:4].tolist()
    before = last_logits(tiny, ps)
    df = alpha_sweep(tiny, {"v": _v(tiny)}, [-1.0, 0.0, 2.0], ps, items.answer[:4].tolist(), DIGITS, progress=False)
    assert df.kl[df.alpha != 0].gt(0).all() and df.kl[df.alpha == 0].abs().max() < 1e-9
    torch.testing.assert_close(last_logits(tiny, ps), before)

def test_shuffled_labels_carry_no_direction(tiny):
    "On many pairs the shuffled-label mean difference is much shorter than the real one (expected length ~ 1/sqrt(n) of the spread)."
    it = arithmetic_items(64, seed=1)
    pos, neg = contrast_pairs(it, "random", seed=0)
    real = contrast_vectors(tiny, pos, neg, H1, methods="mean_diff", progress=False)["mean_diff"][H1]
    sh = contrast_vectors(tiny, *shuffle_labels(pos, neg, seed=0), H1, methods="mean_diff", progress=False)["mean_diff"][H1]
    assert sh.norm < real.norm

@cpu_only
def test_cpu_direction_found_on_smollm2():
    "cpu: the notebook's findings on SmolLM2 at its dev-best layer (11_reasoning): KL grows with alpha for the correct-vs-wrong vector, and the random-string contrast (the official code's bAbI negatives) lowers accuracy at alpha = 1."
    m = load_model("smollm2-135m"); H = layer_hooks(m); h = H[CPU_LAYER]
    it = arithmetic_items(200 + 100 + 300, seed=0)
    train, test = it[:200], it[300:]
    cv = contrast_vectors(m, *contrast_pairs(train), h, methods="mean_diff", progress=False)["mean_diff"][h]
    rs = contrast_vectors(m, *contrast_pairs(train, "random", seed=0), h, methods="mean_diff", progress=False)["mean_diff"][h]
    df = alpha_sweep(m, {"cv": cv, "rs": rs}, [0.0, 1.0, 2.0], test.prompt.tolist(), test.answer.tolist(), DIGITS, progress=False).set_index(["vector", "alpha"])
    assert df.kl["cv", 0.0] < df.kl["cv", 1.0] < df.kl["cv", 2.0], df
    assert df.acc["rs", 1.0] < df.acc["rs", 0.0], df

CPU_LAYER = 9   # the dev-best layer of the saved cpu run of 11_reasoning
