"""gcav_nb.gcav: bad input fails early with clear errors; same seed -> same global CAV; checkpoints refuse other layers.

Only what a notebook cell cannot carry: the bad-input matrix (parametrized) and determinism across fresh models."""
import math
import numpy as np
import pytest
import torch
from gcav_nb.config import GcavInputError
from gcav_nb.gcav import GCAV, GCAVConfig, check_gcav_inputs, synthetic_gcav_problem

CFG = dict(embed_dim=16, ae_hidden=(32,), ae_noise_copies=2, ae_epochs=2, ae_batch_size=32, align_steps=5,
           heads=2, ff_dim=8, fuse_epochs=2, num_threads=1)

@pytest.fixture(scope="module")
def problem(): return synthetic_gcav_problem(L=3, C=2, R=4, M=6, n=20, dims=[12, 12, 8], seed=0)

def _fit(p, seed=0, **kw):
    return GCAV(p["layers"], p["dims"], p["concepts"], p["runs"], GCAVConfig(seed=seed, **{**CFG, **kw})).fit(
        p["cavs"], p["random_cavs"], p["grads"], progress=False)

def _bad(p, what):
    cavs, rnd, grads = [c.clone() for c in p["cavs"]], [r.clone() for r in p["random_cavs"]], [g.clone() for g in p["grads"]]
    if what == "one_layer": return cavs[:1], rnd[:1], grads[:1]
    if what == "width": return cavs, rnd, [grads[0], grads[1], torch.randn(20, 9)]
    if what == "width_random": return cavs, [rnd[0], torch.randn(6, 5), rnd[2]], grads
    if what == "one_run": return [c[:, :1] for c in cavs], rnd, grads
    if what == "nan_cav": cavs[1][0, 0, 3] = float("nan"); return cavs, rnd, grads
    if what == "inf_grad": grads[2][0, 0] = float("inf"); return cavs, rnd, grads
    if what == "zero_cav": cavs[0][1, 2] = 0.0; return cavs, rnd, grads
    if what == "runs_differ": cavs[1] = cavs[1][:, :3]; return cavs, rnd, grads

@pytest.mark.parametrize("what,msg", [("one_layer", "at least 2 layers"), ("width", "mismatched width"), ("width_random", "mismatched width"),
                                      ("one_run", "at least 2 CAV runs"), ("nan_cav", "NaN"), ("inf_grad", "NaN or inf"),
                                      ("zero_cav", "all zeros"), ("runs_differ", "concepts x runs")])
def test_bad_input_fails_early_with_a_clear_error(problem, what, msg):
    "Each malformed input raises GcavInputError naming the problem before any training."
    with pytest.raises(GcavInputError, match=msg): check_gcav_inputs(*_bad(problem, what))

def test_fit_refuses_cavs_for_other_widths(problem):
    "A GCAV built for some widths refuses CAVs of another width."
    gm = GCAV(problem["layers"], [12, 12, 7], problem["concepts"], problem["runs"], GCAVConfig(**CFG))
    with pytest.raises(GcavInputError, match="built for 7-d"): gm.fit(problem["cavs"], problem["random_cavs"], problem["grads"], progress=False)

@pytest.mark.parametrize("kw,msg", [(dict(fuse="median"), "'median'"), (dict(positive="next"), "'next'"), (dict(tau=0), "tau"),
                                    (dict(embed_dim=10, heads=4), "divisible"), (dict(ae_dropout=1.0), "ae_dropout"), (dict(temp_growth=0.5), "temp_growth"),
                                    (dict(keep_weight=-1.0), "keep_weight"), (dict(geom_weight=-1.0), "geom_weight")])
def test_config_validates_in_post_init(kw, msg):
    "Bad hyperparameters fail when the config is built."
    with pytest.raises(GcavInputError, match=msg): GCAVConfig(**kw)

def test_same_seed_same_global_cav(problem):
    "Two fresh models with the same seed give identical global CAVs; another seed gives different ones."
    a, b, c = _fit(problem, 0), _fit(problem, 0), _fit(problem, 1)
    assert torch.equal(a.global_cavs, b.global_cavs)
    assert not torch.equal(a.global_cavs, c.global_cavs)

@pytest.mark.parametrize("kw", [dict(positive="random"), dict(negatives="concepts"), dict(fuse="attention"), dict(fuse="mean"),
                                dict(fuse_input="input"), dict(fuse_input="none"), dict(n_negatives=3), dict(fuse_shared=True),
                                dict(geom_weight=1.0), dict(fuse_shared=True, fuse="attention", geom_weight=1.0)])
def test_every_variant_trains_and_decodes(problem, kw):
    "The paper's variants and the ablation switches train and decode to unit vectors of each layer's width."
    gm = _fit(problem, **kw)
    dec = gm.decode()
    assert [d.shape for d in dec] == [(2, 4, 12), (2, 4, 12), (2, 4, 8)]
    assert all(torch.allclose(d.norm(dim=-1), torch.ones(2, 4), atol=1e-5) for d in dec)

def test_checkpoint_roundtrip_and_refusal(problem, tmp_path):
    "save/load keeps the global CAVs and TGCAV scores; a checkpoint for other layers or widths is refused."
    gm = _fit(problem)
    gm.save(tmp_path / "g")
    gl = GCAV.load(tmp_path / "g", expect_layers=problem["layers"], expect_dims=problem["dims"])
    assert torch.equal(gl.global_cavs, gm.global_cavs)
    assert torch.equal(gl.tgcav_scores(problem["grads"]), gm.tgcav_scores(problem["grads"]))
    with pytest.raises(GcavInputError, match="trained for layers"): GCAV.load(tmp_path / "g", expect_layers=["a", "b"])
    with pytest.raises(GcavInputError, match="trained for widths"): GCAV.load(tmp_path / "g", expect_dims=[12, 12, 9])
    with pytest.raises(GcavInputError, match="not a GCAV checkpoint"): GCAV.load(tmp_path)

def test_unfitted_model_refuses_to_decode(problem):
    "decode() before fit() is a clear error."
    gm = GCAV(problem["layers"], problem["dims"], problem["concepts"], problem["runs"], GCAVConfig(**CFG))
    with pytest.raises(GcavInputError, match="not trained"): gm.decode()

def test_gcav_rejects_bad_sets_before_work():
    "A one-example concept, one layer or too few random sets is refused by `gcav` before any forward pass."
    from gcav_nb.models import load_model
    from gcav_nb.tcav import class_logit
    from gcav_nb.gcav import gcav
    cnn = load_model("tiny-cnn", device="cpu"); x = torch.rand(4, 3, 32, 32)
    calls = []; h = cnn.register_forward_pre_hook(lambda m, a: calls.append(1))
    with pytest.raises(GcavInputError, match="at least 2"):
        gcav(cnn, x, {"one": x[:1]}, [x, x + 1, x + 2], ["relu1", "relu2"], class_logit(0), progress=False)
    with pytest.raises(GcavInputError, match="2 layers"):
        gcav(cnn, x, {"c": x}, [x + 1, x + 2, x + 3], ["relu1"], class_logit(0), progress=False)
    with pytest.raises(GcavInputError, match="random"):
        gcav(cnn, x, {"c": x}, [x + 1], ["relu1", "relu2"], class_logit(0), progress=False)
    h.remove(); assert not calls, "gcav ran a forward pass before refusing its input"


# --- issue 9: diagnostics, the two modes, a null that goes through GCAV -------------------------------------------
from gcav_nb.gcav import GCAVMethod, ground_truth_benchmark, null_negatives, INSENSITIVE_COS, gcav
from gcav_nb.tcav import run_cosine, COLLAPSE, CAVMethod
from gcav_nb.config import scale_table

@pytest.fixture(scope="module")
def gt_problem(): return synthetic_gcav_problem(L=4, C=2, R=6, M=10, N=6, n=60, dims=[32] * 4, seed=0)

def _gfit(p, mode, **kw):  # ci sizes but the cpu embedding width (128): P's rows have norm ~sqrt(128) as at cpu, where the collapse was found
    return GCAV(p["layers"], p["dims"], p["concepts"], p["runs"], GCAVConfig.preset(mode, "ci", embed_dim=128, **kw)).fit(
        p["cavs"], p["random_cavs"], p["grads"], progress=False)

def test_presets_are_modes_times_scales():
    "preset(mode, scale): the mode sets the fusion's design, the scale the sizes from config's one table."
    o, f = GCAVConfig.preset("official", "cpu"), GCAVConfig.preset("fixed", "cpu")
    assert (o.pos_init, o.fuse_residual, o.mode) == ("normal", False, "official")
    assert f.mode == "fixed" and (f.pos_init, f.fuse_residual) != (o.pos_init, o.fuse_residual)
    assert o.embed_dim == f.embed_dim == 128
    assert o.keep_weight == 0 and f.keep_weight > 0   # the keep term is ours: off in the official mode
    assert "gcav" in set(scale_table().reset_index().iloc[:, 0]) or "gcav" in str(scale_table())
    with pytest.raises(GcavInputError, match="mode='best'"): GCAVConfig.preset("best")

def test_official_fusion_ignores_its_input_and_the_fixed_one_does_not(gt_problem):
    "The official design (P ~ N(0,1)) gives the same output for random inputs, and the diagnostics warn; the fixed mode reads its input."
    with pytest.warns(UserWarning, match="fusion ignores input"): d_off = _gfit(gt_problem, "official").diagnostics()
    assert (d_off.input_sensitivity > INSENSITIVE_COS).all() and d_off.fusion_ignores_input.all()
    d_fix = _gfit(gt_problem, "fixed").diagnostics(warn=False)
    assert (d_fix.input_sensitivity < INSENSITIVE_COS).all()
    assert (d_fix.run_cos_decoded < d_off.run_cos_decoded).all()

def test_collapsed_runs_are_flagged():
    "Runs that are copies of one vector have run cosine 1 and are flagged; orthogonal runs are not."
    assert float(run_cosine(torch.ones(1, 4, 8))) > COLLAPSE
    assert float(run_cosine(torch.eye(4)[None])) == 0.0

def test_null_goes_through_gcav(gt_problem):
    "transform(null) trains stages 2-3 for every pseudo-concept (negatives share no random set with it) and decodes them."
    m = GCAVMethod(GCAVConfig.preset("fixed", "ci")).fit(gt_problem["cavs"], gt_problem["null"], gt_problem["grads"], progress=False)
    tn = m.transform(gt_problem["null"])
    assert [t.shape for t in tn] == [(6, 5, 32)] * 4
    assert m._stacks[-1][1].concepts == [f"null_{i}" for i in range(6)]
    assert not any(torch.allclose(a, b) for a, b in zip(tn, gt_problem["null"]))
    neg = null_negatives(gt_problem["null"])
    assert neg[0].shape == (6, 20, 32)

def test_gcav_method_refuses_bad_use(gt_problem):
    "transform before fit, and a null that is not [N, R', d] per layer, fail with clear errors."
    m = GCAVMethod(GCAVConfig.preset("fixed", "ci"))
    with pytest.raises(GcavInputError, match="before fit"): m.transform(gt_problem["cavs"])
    with pytest.raises(GcavInputError, match="null must be"):
        m.fit(gt_problem["cavs"], [n[:, 0] for n in gt_problem["null"]], gt_problem["grads"], progress=False)

def test_random_concepts_through_gcav_are_rarely_significant(gt_problem):
    "Each of the 6 null pseudo-concepts, sent through the fixed GCAV and tested against the rest: significant at <= 5% of layers."
    p = synthetic_gcav_problem(L=4, C=2, R=10, M=10, N=10, n=100, dims=[64] * 4, seed=3)   # 10 draws x 4 layers
    r = ground_truth_benchmark(p, {"fixed": GCAVMethod(GCAVConfig.preset("fixed", "ci"))}).iloc[0]
    assert r.null_flagged <= 0.05

def test_gcav_method_is_a_cav_method_and_gcav_runs_both_modes():
    "GCAVMethod plugs into the pipeline; gcav() scores TCAV and both TGCAV modes, each null through its own method."
    from gcav_nb.models import load_model
    from gcav_nb.tcav import class_logit
    assert isinstance(GCAVMethod(), CAVMethod)
    cnn = load_model("tiny-cnn", device="cpu"); g = torch.Generator().manual_seed(0)
    img = lambda n: torch.rand(n, 3, 32, 32, generator=g)
    r = gcav(cnn, img(8), {"c": img(8)}, [img(8) for _ in range(3)], ["relu1", "relu2"], class_logit(0),
             config=[GCAVConfig.preset(m, "ci") for m in ("official", "fixed")], test="pseudo", progress=False)
    assert r.methods == ["TCAV", "TGCAV-official", "TGCAV-fixed"]
    assert r.null_scores["TGCAV-fixed"].shape == (2, 3, 2)
    assert not torch.equal(r.null_scores["TGCAV-fixed"], r.null_scores["TCAV"])

def test_residual_decode_keeps_each_runs_own_part(problem):
    "decode_residual: decoded - n(Dec(g)) is each run's own AE residual v - n(Dec(Enc(v))); the official decode is n(Dec(g)) alone."
    import torch.nn.functional as F
    gm = _fit(problem, decode_residual=True)
    C, R = len(problem["concepts"]), problem["runs"]
    with torch.no_grad():
        v = [F.normalize(c.reshape(C * R, -1), dim=-1) for c in problem["cavs"]]
        rec = gm._decode(gm._encode(v))
        dg = gm._decode(gm.global_cavs.reshape(1, C * R, -1).expand(len(v), -1, -1))
    for l, d in enumerate(gm.decode()):
        want = F.normalize(F.normalize(dg[l], dim=-1) + v[l] - F.normalize(rec[l], dim=-1), dim=-1).reshape(C, R, -1)
        assert torch.allclose(d, want, atol=1e-5)
    off = _fit(problem)
    assert not any(k.startswith("residual_") for k in off.state_dict())
    assert torch.allclose(off.decode()[0], F.normalize(off._decode(off.global_cavs.reshape(1, C * R, -1).expand(3, -1, -1))[0], dim=-1).reshape(C, R, -1), atol=1e-6)

def test_residual_decode_survives_save_and_load(problem, tmp_path):
    "The residuals are buffers: a loaded fixed-mode GCAV decodes exactly as the trained one."
    gm = _fit(problem, decode_residual=True); gm.save(tmp_path / "g")
    gl = GCAV.load(tmp_path / "g")
    assert all(torch.equal(a, b) for a, b in zip(gl.decode(), gm.decode()))

def test_fixed_mode_runs_stay_as_different_as_their_inputs():
    "On CAVs sharing one direction (like SmolLM2's, width 96 here), the fixed mode's decoded runs are no more alike than the input runs + 0.1; P = 0 alone pushes them together."
    p = synthetic_gcav_problem(L=4, C=2, R=6, M=10, N=6, n=60, dims=[96] * 4, shared=1.0, seed=0)
    raw = float(torch.stack([run_cosine(c) for c in p["cavs"]]).mean())
    fix = _gfit(p, "fixed").diagnostics(warn=False).run_cos_decoded.mean()
    p0 = _gfit(p, "fixed", decode_residual=False).diagnostics(warn=False).run_cos_decoded.mean()
    assert fix <= raw + 0.1 and p0 > fix


def test_tgcav_figures_move_under_a_1e6_change_of_the_cavs_tcav_does_not():
    """Issue 8 §6, 05_gcav's finding: GCAV's training amplifies a 1e-6 change of its input CAVs into a visible change of
    TGCAV's Std/CV/RR (both modes, cpu preset), while TCAV's figures from the same CAVs do not move; seeds spread them too."""
    from gcav_nb.gcav import GCAV, GCAVConfig, synthetic_gcav_problem, stability_table
    from gcav_nb.tcav import sign_scores
    p = synthetic_gcav_problem(L=4, dims=[24, 24, 16, 16])
    eps = [c + 1e-6 * torch.randn(c.shape, generator=torch.Generator().manual_seed(9)) for c in p["cavs"]]
    figs = lambda s: s[["Std", "CV", "RR"]].to_numpy(dtype=float)
    tc = lambda cavs: figs(stability_table({"TCAV": sign_scores(p["grads"], cavs)}, p["concepts"], round_to=None).iloc[0])
    assert np.abs(tc(eps) - tc(p["cavs"])).max() == 0
    for mode in ("official", "fixed"):
        def tg(cavs, seed=0):
            m = GCAV(p["layers"], p["dims"], p["concepts"], p["runs"], GCAVConfig.preset(mode, "cpu", seed=seed)).fit(cavs, p["random_cavs"], p["grads"], progress=False)
            return figs(stability_table({"TGCAV": m.tgcav_scores(p["grads"])}, p["concepts"], round_to=None).iloc[0])
        base = tg(p["cavs"])
        assert (np.abs(tg(eps) - base) > 0).all(), mode
        assert (np.abs(tg(p["cavs"], seed=1) - base) > 0).all(), mode


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keep_term_holds_the_mean_where_gradients_share_a_direction(seed):
    """05_gcav's third benchmark problem, small: when every target gradient shares one direction (SmolLM2's do, cosine
    0.6-0.95), the variance loss alone moves some concept's mean score far from TCAV's; the keep term holds it (gap 0.03-0.06
    vs 0.19-0.36 without it, found by running these three seeds)."""
    from gcav_nb.tcav import sign_scores
    p = synthetic_gcav_problem(L=4, C=3, R=6, M=10, N=6, n=60, dims=[64] * 4, grad_shared=4.5, seed=seed)
    assert float(run_cosine(p["grads"][0][None])) > 0.5                               # the problem is what it says: inputs' gradients alike
    t0 = sign_scores(p["grads"], p["cavs"]).mean((0, 2))                               # [C] TCAV means
    gap = {k: float((_gfit(p, "fixed", keep_weight=k).tgcav_scores(p["grads"]).mean((0, 2)) - t0).abs().max()) for k in (0.0, 10.0)}
    assert gap[10.0] < gap[0.0], gap


def test_shared_fusion_is_one_model_applied_to_each_concept_alone(problem):
    "fuse_shared: one fusion (1 group) for all concepts; a concept's global CAV does not change when another concept's CAVs do."
    gm = _fit(problem, fuse_shared=True).eval()
    assert gm.fuser.pos.shape[0] == 1
    z = gm.aligned.permute(0, 2, 1, 3).clone()                                          # [C, R, L, D]
    with torch.no_grad():
        a = gm.fuse(z); z[1] = torch.randn_like(z[1]); b = gm.fuse(z)
    assert torch.allclose(a[0], b[0], atol=1e-6) and not torch.allclose(a[1], b[1])

def test_shared_fusion_reads_its_input_and_the_geometry_term_keeps_concept_cosines():
    """05_gcav's two options at cpu sizes on a small problem whose concept CAVs share a direction (found by running it):
    the shared fusion's output for random inputs is further from its output for the real ones (input sensitivity 0.16 vs
    0.55 per concept), and the geometry term holds the decoded concept-to-concept cosines nearer the input CAVs' (gap 0.016 vs 0.071)."""
    from gcav_nb.gcav import _concept_gram
    p = synthetic_gcav_problem(L=4, C=3, R=10, M=10, N=6, n=60, dims=[96] * 4, shared=1.0, seed=0)
    raw = torch.stack([_concept_gram(c) for c in p["cavs"]])
    def fit(**kw):
        gm = GCAV(p["layers"], p["dims"], p["concepts"], p["runs"], GCAVConfig.preset("fixed", "cpu", num_threads=1, **kw)).fit(
            p["cavs"], p["random_cavs"], p["grads"], progress=False)
        return gm.diagnostics(warn=False).input_sensitivity.mean(), float((torch.stack([_concept_gram(x) for x in gm.decode()]) - raw).abs().mean())
    (s_own, _), (s_sh, g_sh), (_, g_geo) = fit(), fit(fuse_shared=True), fit(fuse_shared=True, geom_weight=10.0)
    assert s_sh < s_own, (s_sh, s_own)
    assert g_geo < g_sh, (g_geo, g_sh)
