"""gcav_nb.dictionaries.cross_method (29_cross_method): bad input fails early (before any forward pass), the two
dictionary picks against hand-made cases, cosine matrices, the model restored after steering, same seed -> same
random controls, and (cpu) the direction of the notebook's main effects on SmolLM2: mean_diff agrees with the probe
more than with a random direction, and steering along it moves P(positive) further than same-norm random directions."""
import math
import pytest
import torch
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.steering.core import as_vector, choice_probs
from gcav_nb.dictionaries.cross_method import (latent_by_cosine, latent_by_separation, dictionary_directions, cosine_matrix,
                                               steering_shifts)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")
H1 = "blocks.1.hook_resid_post"
CH = (" hot", " cold")

from conftest import ForwardRan, tripwire as _tripwire

def _v(d, seed=0, hook=H1): return as_vector(torch.randn(d, generator=torch.Generator().manual_seed(seed)), hook)

D3 = torch.eye(3)
BAD_DATA = {
    "decoder 1-d": (lambda: latent_by_cosine(torch.ones(3), torch.ones(3)), r"\[rows, cols\]"),
    "decoder nan": (lambda: latent_by_cosine(torch.tensor([[math.nan, 1.0]]), torch.ones(2)), "NaN"),
    "reference width": (lambda: latent_by_cosine(D3, torch.ones(4)), "reference"),
    "reference nan": (lambda: latent_by_cosine(D3, torch.tensor([1.0, math.nan, 0.0])), "reference"),
    "codes widths": (lambda: latent_by_separation(torch.ones(2, 3), torch.ones(2, 4)), "elements"),
    "codes empty": (lambda: latent_by_separation(torch.ones(0, 3), torch.ones(2, 3)), "non-empty"),
    "dictionary width": (lambda: dictionary_directions(D3, _v(4), torch.ones(2, 3), torch.ones(2, 3)), "width"),
    "dictionary codes": (lambda: dictionary_directions(D3, _v(3), torch.ones(2, 2), torch.ones(2, 3)), "columns"),
    "no vectors": (lambda: cosine_matrix({}), "no vectors"),
    "two hooks": (lambda: cosine_matrix({"a": _v(3), "b": _v(3, hook="h2")}), "one hook"),
}

@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_bad_input_is_refused(case):
    fn, msg = BAD_DATA[case]
    with pytest.raises(GcavInputError, match=msg): fn()

def test_reference_must_be_a_concept_vector():
    with pytest.raises(TypeError, match="ConceptVector"): dictionary_directions(D3, torch.ones(3), torch.ones(2, 3), torch.ones(2, 3))

BAD_MODEL = {
    "no vectors": (lambda m: steering_shifts(m, {}, ["a"], CH, 1.0), "no vectors"),
    "no prompts": (lambda m: steering_shifts(m, {"v": _v(m.cfg.d_model)}, [], CH, 1.0), "prompts"),
    "str prompts": (lambda m: steering_shifts(m, {"v": _v(m.cfg.d_model)}, "The day", CH, 1.0), "prompts"),
    "negative scale": (lambda m: steering_shifts(m, {"v": _v(m.cfg.d_model)}, ["a"], CH, -1.0), "positive finite"),
    "nan scale": (lambda m: steering_shifts(m, {"v": _v(m.cfg.d_model)}, ["a"], CH, math.nan), "positive finite"),
    "scale missing a hook": (lambda m: steering_shifts(m, {"v": _v(m.cfg.d_model)}, ["a"], CH, {"blocks.2.hook_resid_post": 1.0}), "no length"),
    "n_random negative": (lambda m: steering_shifts(m, {"v": _v(m.cfg.d_model)}, ["a"], CH, 1.0, n_random=-1), "n_random"),
    "wrong width": (lambda m: steering_shifts(m, {"v": _v(m.cfg.d_model + 3)}, ["a"], CH, 1.0), "width"),
}

@pytest.mark.parametrize("case", BAD_MODEL, ids=list(BAD_MODEL))
def test_bad_model_input_fails_before_any_forward(case, tiny):
    fn, msg = BAD_MODEL[case]
    with _tripwire(tiny):
        with pytest.raises(GcavInputError, match=msg): fn(tiny)

def test_cosine_pick_finds_the_planted_row():
    g = torch.Generator().manual_seed(0); D = torch.randn(50, 16, generator=g); r = torch.randn(16, generator=g)
    D[17] = -3 * r                                                       # anti-parallel, longer
    i, c = latent_by_cosine(D, r)
    assert i == 17 and c == pytest.approx(-1.0, abs=1e-6)

def test_separation_pick_ignores_dead_elements():
    pos = torch.tensor([[0.0, 2.0, 0.5], [0.0, 2.2, 0.1]]); neg = torch.tensor([[0.0, 0.1, 0.4], [0.0, 0.3, 0.2]])
    assert latent_by_separation(pos, neg)[0] == 1
    assert latent_by_separation(torch.zeros(2, 3), torch.zeros(2, 3))[1] == 0.0   # nothing fires: no separation, no NaN

def test_dictionary_picks_point_toward_the_positive_set():
    D = torch.tensor([[0.0, 1.0], [1.0, 0.0]]); ref = as_vector(torch.tensor([-1.0, 0.1]), "h")
    v, info = dictionary_directions(D, ref, torch.tensor([[0.0, 0.0]]).expand(3, 2) + torch.tensor([0.0, 1.0]) * torch.arange(3.0)[:, None],
                                    torch.tensor([[0.0, 5.0], [0.0, 6.0]]))
    torch.testing.assert_close(v["sae_cos"].direction, torch.tensor([-1.0, 0.0]))   # element 1, flipped toward the reference
    torch.testing.assert_close(v["sae_sep"].direction, torch.tensor([-1.0, 0.0]))   # element 1 codes lower on +: flipped
    assert info.element.tolist() == [1, 1]

def test_steering_shifts_restore_the_model_and_repeat(tiny):
    ps = ["The day was", "It felt"]
    before = choice_probs(tiny, ps, CH)
    a = steering_shifts(tiny, {"v": _v(tiny.cfg.d_model)}, ps, CH, 3.0, n_random=2, seed=5)
    b = steering_shifts(tiny, {"v": _v(tiny.cfg.d_model)}, ps, CH, 3.0, n_random=2, seed=5)
    torch.testing.assert_close(choice_probs(tiny, ps, CH), before)
    assert a.equals(b) and (a.dp != 0).all()

@cpu_only
def test_cpu_mean_diff_agrees_and_steers_beyond_random_on_smollm2():
    "cpu (29_cross_method, praise vs complaint at SmolLM2 layer 15): cos(mean_diff, probe) > |cos(mean_diff, random)|, and adding mean_diff at 0.5 x its length raises P(positive) by more than any same-norm random direction moves it."
    from gcav_nb.models import load_model
    from gcav_nb.data import load_concepts, random_pool, apply_template
    from gcav_nb.steering.core import contrast_vectors, random_like
    m = load_model("smollm2-135m"); h = f"blocks.{CPU_LAYER}.hook_resid_post"
    s = load_concepts(["praise", "complaint"], n=40)
    vs = contrast_vectors(m, s["praise"], s["complaint"], h, methods=("mean_diff", "probe"), progress=False)
    md, pr = vs["mean_diff"][h], vs["probe"][h]
    assert float(md.direction @ pr.direction) > abs(float(md.direction @ random_like(md, seed=1).direction))
    prompts = apply_template(random_pool()[-32:], ["Review: {text}\nThe sentiment of this review is"])
    eff = steering_shifts(m, {"mean_diff": md}, prompts, (" positive", " negative"), 0.5 * md.norm, n_random=3, seed=11)
    dp = eff.set_index("label").dp
    assert dp["mean_diff"] > eff[eff.kind == "random"].dp.abs().max(), eff

CPU_LAYER = 15   # one of the layers 29_cross_method reports at cpu
