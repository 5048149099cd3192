"""gcav_nb.steering.biaslens (BiasLens): bad input fails early (before any forward pass), the bias score against its
definition (cosine asymmetry = projection on the difference of the reference CAVs), the permutation Spearman test
against scipy, and (cpu) the direction of the agreement the notebook found on SmolLM2."""
import math
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from gcav_nb.cav import CAVSet
from gcav_nb.config import GcavInputError, UnknownNameError, get_scale
from gcav_nb.models import load_model, layer_hooks
from gcav_nb.steering.core import as_vector
from gcav_nb.steering.biaslens import (OCCUPATIONS, MALE, FEMALE, PROMPTS, concept_sentences, behaviour_bias, concept_cavs,
                                       bias_scores, direction_scores, spearman_test, agreement)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")

from conftest import ForwardRan, tripwire as _tripwire

def _cavs(n_concepts=4, runs=2, d=6, layers=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = {f"blocks.{l}.hook_resid_post": torch.nn.functional.normalize(torch.randn(n_concepts, runs, d, generator=g), dim=-1) for l in range(layers)}
    return CAVSet(v, torch.full((layers, n_concepts, runs), 0.9), ["t0", "t1", "male", "female"][:n_concepts], [f"r{i}" for i in range(runs)])

BAD_DATA = {
    "words str": (lambda: concept_sentences("nurse", 3), GcavInputError, "non-empty list"),
    "words empty": (lambda: concept_sentences([], 3), GcavInputError, "non-empty list"),
    "word blank": (lambda: concept_sentences(["nurse", " "], 3), GcavInputError, "non-empty list"),
    "n zero": (lambda: concept_sentences(["nurse"], 0), GcavInputError, "positive int"),
    "n too many": (lambda: concept_sentences(["nurse"], 10_000), GcavInputError, "distinct"),
    "diff unknown": (lambda: bias_scores(_cavs(), ["t0"], "male", "female", "ratio"), GcavInputError, "diff="),
    "target unknown": (lambda: bias_scores(_cavs(), ["doctor"], "male", "female"), UnknownNameError, "doctor"),
    "ref unknown": (lambda: bias_scores(_cavs(), ["t0"], "man", "female"), UnknownNameError, "man"),
    "same refs": (lambda: bias_scores(_cavs(), ["t0"], "male", "male"), GcavInputError, "same concept"),
    "no targets": (lambda: bias_scores(_cavs(), [], "male", "female"), GcavInputError, "non-empty"),
    "direction missing": (lambda: direction_scores(_cavs(), ["t0"], {}), UnknownNameError, "no direction"),
    "rho short": (lambda: spearman_test([1, 2], [1, 2]), GcavInputError, ">= 3"),
    "rho unpaired": (lambda: spearman_test([1, 2, 3], [1, 2, 3, 4]), GcavInputError, "same length"),
    "rho nan": (lambda: spearman_test([1, 2, math.nan], [1, 2, 3]), GcavInputError, "finite"),
    "n_perm zero": (lambda: spearman_test([1, 2, 3], [1, 2, 3], 0), GcavInputError, "n_perm"),
    "agreement missing target": (lambda: agreement(pd.DataFrame([[1.0, 2.0, 3.0]], columns=["a", "b", "c"]), pd.Series({"a": 1.0})), UnknownNameError, "no behavioural"),
}

@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_bad_data_is_refused(case):
    fn, exc, msg = BAD_DATA[case]
    with pytest.raises(exc, match=msg): fn()

S = [f"The nurse walked in {i}." for i in range(6)]

BAD_MODEL = {
    "targets empty": (lambda m: behaviour_bias(m, []), GcavInputError, "targets"),
    "targets str": (lambda m: behaviour_bias(m, "nurse"), GcavInputError, "targets"),
    "prompt without slot": (lambda m: behaviour_bias(m, ["nurse"], ["The nurse said that"]), GcavInputError, "slot"),
    "one choice": (lambda m: behaviour_bias(m, ["nurse"], choices=(" he",)), GcavInputError, "two answers"),
    "no concepts": (lambda m: concept_cavs(m, {}, [S]), GcavInputError, "non-empty dict"),
    "no negatives": (lambda m: concept_cavs(m, {"nurse": S}, []), GcavInputError, "negatives"),
    "tiny set": (lambda m: concept_cavs(m, {"nurse": S[:2]}, [S]), GcavInputError, "fewer than 4"),
    "name clash": (lambda m: concept_cavs(m, {"negatives_0": S}, [S]), GcavInputError, "named like"),
    "unknown hook": (lambda m: concept_cavs(m, {"nurse": S}, [[s + "!" for s in S]], "blocks.0.hook_nope"), KeyError, "hook_nope"),
}

@pytest.mark.parametrize("case", BAD_MODEL, ids=list(BAD_MODEL))
def test_bad_model_input_fails_before_any_forward(case, tiny):
    fn, exc, msg = BAD_MODEL[case]
    with _tripwire(tiny):
        with pytest.raises(exc, match=msg): fn(tiny)

def test_bias_score_is_the_cosine_asymmetry_and_a_projection():
    cs = _cavs(); h = cs.layers[1]; V = cs[h].double()
    got = bias_scores(cs, ["t0", "t1"], "male", "female")
    cos = lambda a, b: float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    want = np.mean([cos(V[0, r], V[2, r]) - cos(V[0, r], V[3, r]) for r in range(2)])
    assert math.isclose(got.loc[1, "t0"], want, rel_tol=1e-9, abs_tol=1e-12)
    proj = np.mean([float(V[0, r] @ (V[2, r] - V[3, r])) for r in range(2)])
    assert math.isclose(got.loc[1, "t0"], proj, rel_tol=1e-6, abs_tol=1e-7)
    np.testing.assert_allclose(bias_scores(cs, ["t0", "t1"], "female", "male").to_numpy(), -got.to_numpy())
    np.testing.assert_allclose(bias_scores(cs, ["t0", "t1"], "male", "female", "abs").to_numpy(), np.abs(got.to_numpy()))

def test_direction_scores_are_cosines():
    cs = _cavs(); g = torch.Generator().manual_seed(3)
    dirs = {h: as_vector(torch.randn(6, generator=g), h) for h in cs.layers}
    got = direction_scores(cs, ["t1"], dirs)
    for l, h in enumerate(cs.layers):
        assert math.isclose(got.loc[l, "t1"], float(cs.vector(h, "t1").direction.double() @ dirs[h].direction.double()), rel_tol=1e-6)

def test_spearman_matches_scipy_and_its_null_is_calibrated():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    assert math.isclose(spearman_test(x, y, 99)[0], spearmanr(x, y).statistic, rel_tol=1e-12)
    ps = [spearman_test(rng.normal(size=10), rng.normal(size=10), 199, seed=i)[1] for i in range(200)]
    assert 0.02 < np.mean(np.array(ps) < 0.1) < 0.2          # ~10% of independent pairs fall below p = 0.1

def test_paired_reference_sentences_differ_in_one_word():
    m, f = concept_sentences(MALE, 40, seed=5), concept_sentences(FEMALE, 40, seed=5)
    assert all(sum(a != b for a, b in zip(x.split(), y.split())) == 1 for x, y in zip(m, f))

def test_behaviour_bias_flips_sign_when_the_answers_swap(tiny):
    a = behaviour_bias(tiny, ["nurse", "pilot"], PROMPTS[:2])
    b = behaviour_bias(tiny, ["nurse", "pilot"], PROMPTS[:2], (" she", " he"))
    np.testing.assert_allclose(a.to_numpy(), -b.to_numpy(), atol=1e-5)

@cpu_only
def test_cpu_biaslens_agrees_with_behaviour_beyond_random_references():
    "cpu: the notebook's finding on SmolLM2 (18_biaslens), smaller (24 sentences, every 3rd layer): the layer-mean BiasLens score ranks the occupations like log P(he)/P(she), more than random reference concepts do."
    import random
    from gcav_nb.data import random_pool
    m = load_model("smollm2-135m"); H = layer_hooks(m)[::3]
    targets, n = list(OCCUPATIONS), 24
    b = behaviour_bias(m, targets).mean(axis=1)
    pool = random_pool(); idx = random.Random(0).sample(range(len(pool)), 6 * n)
    draws = [[pool[j] for j in idx[i * n:(i + 1) * n]] for i in range(6)]
    concepts = {t: concept_sentences([t], n) for t in targets} | {"male": concept_sentences(MALE, n), "female": concept_sentences(FEMALE, n)}
    concepts |= {"ra0": draws[2], "rb0": draws[3], "ra1": draws[4], "rb1": draws[5]}
    cavs = concept_cavs(m, concepts, draws[:2], H)
    rho = agreement(bias_scores(cavs, targets, "male", "female"), b, 500).loc["mean", "rho"]
    rnd = [agreement(bias_scores(cavs, targets, f"ra{i}", f"rb{i}"), b, 500).loc["mean", "rho"] for i in range(2)]
    assert rho > 0 and rho > max(abs(r) for r in rnd), (rho, rnd)
