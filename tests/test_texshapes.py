"""TexShapes: labelling rules, the swap ground truth, judging against it, and the random-concept rate (issue 9)."""
import numpy as np
import pandas as pd
import pytest
import torch
from fastcore.test import test_eq as eq, test_close as close

from gcav_nb.config import GcavInputError, UnknownNameError, get_scale
from gcav_nb.texshapes import (RULES, FILLS, TEXTURES, PROBE_LAYERS, class_spec, make_scenes, train_texshapes, swap_effects, seed_table,
                               expected_signs, detection, random_rate, random_concepts, texshapes_sets)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")
U = np.linspace(0, 0.999, 30)

@pytest.mark.parametrize("rule,cls,textures", [("texture", 0, {"striped"}), ("texture", 1, {"dotted", "solid"}), ("card", 1, {"dotted"}),
                                               ("texture", 2, set(FILLS)), ("blind", 0, set(FILLS)), ("blind", 2, set(FILLS))])
def test_rule_textures(rule, cls, textures):
    "Under the texture rule a circle is c0 only when striped: solid circles are c1 (the card's rule had none)."
    eq({class_spec(cls, u, rule)[1] for u in U}, textures)

def test_blind_rule_is_shape_only():
    eq([class_spec(k, 0.5, "blind")[0] for k in range(3)], ["circle", "square", "triangle"])
    eq(len(RULES["blind"]), 3)
    with pytest.raises(GcavInputError, match="0..2"): class_spec(3, 0.5, "blind")
    with pytest.raises(UnknownNameError, match="'plaid'"): make_scenes(2, rule="plaid")

def test_swap_changes_only_the_texture():
    x, y, m = make_scenes([0] * 6, seed=5, return_masks=True)
    for t in TEXTURES:
        xs, ys = make_scenes([0] * 6, seed=5, texture=t)
        eq(ys, y)
        eq(bool(((x - xs).abs().sum(1) * (1 - m)).max() == 0), True)      # outside the shape nothing moves

class Const(torch.nn.Module):
    "A model that ignores its input: texture cannot matter to it."
    def forward(self, x): return torch.tensor([3., 0., 0., 0.]).expand(len(x), 4)

def test_swap_effects_of_a_texture_blind_model():
    sw = swap_effects(Const(), n=8)
    eq(sw.flip.tolist(), [0.0] * 4); eq(sw["drop"].tolist(), [0.0] * 4)
    eq(set(expected_signs(sw).values()), {0})                               # nothing to detect

def test_train_texshapes_deterministic_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GCAV_NB_CACHE", str(tmp_path))
    a = train_texshapes(8, 2, seed=1, n_test=4, progress=False)
    b = train_texshapes(8, 2, seed=1, n_test=4, progress=False)
    eq("cached" in a, False); eq(b["cached"].startswith(str(tmp_path)), True)
    eq(a["history"].train_loss.tolist(), b["history"].train_loss.tolist())
    for p, q in zip(a["model"].parameters(), b["model"].parameters()): eq(torch.equal(p, q), True)
    c = train_texshapes(8, 2, seed=2, n_test=4, progress=False)                 # another seed: another key, another model
    eq(c["key"] != a["key"], True); eq("cached" in c, False)

def _tests(rows):
    return pd.DataFrame(rows, columns=["method", "concept", "significant", "significant_pos", "p_value"])

def test_detection_needs_majority_and_no_wrong_sign():
    eff = pd.DataFrame(dict(texture=list(TEXTURES), flip=[0.0, 0.99, 0.2, 1.0]))
    t = _tests([("M", "striped", True, True, .001)] * 3 + [("M", "striped", True, False, .001)]
               + [("M", "solid", True, False, .001)] * 3 + [("M", "solid", False, False, .5)])
    d = detection(t, eff).set_index("concept")
    eq(d.loc["striped", ["expected", "sig_right_sign", "sig_wrong", "detected"]].tolist(), ["+", 3, 1, False])
    eq(d.loc["solid", ["expected", "sig_right_sign", "detected"]].tolist(), ["−", 3, True])

def test_random_rate_bonferroni_per_draw():
    t = _tests([("M", "random-concept-0", False, False, p) for p in (.02, .5, .5, .5, .5)]
               + [("M", "random-concept-1", False, False, p) for p in (.001, .5, .5, .5, np.nan)])
    r = random_rate(t).iloc[0]
    eq([r.draws, r.tests, r.significant, r.significant_raw, r.refused], [2, 10, 1, 2, 1])
    close(r.rate, 0.1); close(r.rate_raw, 0.2)

def _rate_run(model, n_set, runs, draws, n_target, scale, test="ttest", n_null=None):
    from gcav_nb.models import wrap_module
    from gcav_nb.tcav import run_concepts, CAVMethod, class_logit
    from gcav_nb.gcav import GCAVMethod, GCAVConfig
    wm = wrap_module(model, name="texshapes-cnn").eval()
    _, randoms = texshapes_sets(n_set, n_null or runs, seed=0)      # the first `runs` sets are the runs, all of them the null
    x = make_scenes(torch.zeros(n_target, dtype=torch.long), seed=4242)[0]
    ms = [CAVMethod(), *(GCAVMethod(GCAVConfig.preset(mode=m, scale=scale)) for m in ("official", "fixed"))]
    res = run_concepts(wm, x, random_concepts(draws, n=n_set, seed=0), randoms, list(PROBE_LAYERS), class_logit(0), runs=runs, methods=ms, seed=0, progress=False)
    return random_rate(res.retest(test=test).tests()).set_index("method")

def test_random_concept_rate_whole_path_ci():
    "ci: the whole path (tiny model, 2 draws, TCAV and both GCAV modes) gives one rate per method over draws x layers."
    tr = train_texshapes(20, 1, seed=0, n_test=4, cache=False, progress=False)
    r = _rate_run(tr["model"], n_set=8, runs=3, draws=2, n_target=8, scale="ci")
    eq(len(r), 3); eq(r.draws.tolist(), [2] * 3); eq(r.tests.tolist(), [2 * len(PROBE_LAYERS)] * 3)
    eq(bool(r.rate.between(0, 1).all()), True)

@cpu_only
def test_texshapes_models_meet_the_goals():
    "cpu: >= 0.98 mean test accuracy over 3 seeds; every seed flips most c0 predictions when stripes become dots or solid."
    seeds, _ = seed_table([0, 1, 2], n_per_class=1000, epochs=30, n_test=250, progress=False)
    assert seeds.test_acc.mean() >= 0.98, seeds
    assert (seeds[["flip dotted", "flip solid"]] > 0.5).all(axis=None), seeds
    blind = train_texshapes(1000, 30, seed=0, rule="blind", n_test=250, progress=False)
    assert swap_effects(blind["model"]).flip.max() < 0.5                          # the control does not depend on texture

@cpu_only
def test_random_concept_rate_cpu():
    "cpu: 10 concepts drawn from the random pool are TGCAV-significant at <= 5% of (draw, layer) tests, in both GCAV modes (issue 9)."
    tr = train_texshapes(1000, 30, seed=0, n_test=250, progress=False)
    r = _rate_run(tr["model"], n_set=50, runs=10, draws=10, n_target=100, scale="cpu", test="pseudo", n_null=20)
    assert (r.rate <= 0.05).all(), r   # 05a at cpu: pseudo 0% for every method; TCAV's t-test 18%, TGCAV-fixed's 36% (why 05a uses pseudo)
