"""gcav_nb.steering.lineas (LinEAS): bad input fails before any forward pass, the W2 loss is the optimal matching, the maps
are removed after an exception inside the `with` block and the model's weights keep their gradient flags after a fit, and
(cpu) the direction the notebook found on SmolLM2: LinEAS from 32 complaint/praise sentences raises P(positive
adjective) on held-out prompts more than a random map of the same size."""
import itertools, math
import pytest
import torch
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.models import resolve_hooks, tokenize
from gcav_nb.steering.core import steer
from gcav_nb.steering.lineas import (w2_loss, AffineMaps, pooled_acts, ProxSGD, fit_lineas, fit_linact, random_maps,
                                     review_prompts, p_positive, probe_score)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")
R = "blocks.*.hook_resid_post"
SRC = ["The room was dirty.", "Awful food, cold and late.", "Rude staff again.", "It broke after a day."]
TGT = ["A lovely quiet room.", "Great food, served fast.", "Friendly staff!", "Works perfectly, thank you."]

from conftest import ForwardRan, tripwire as _tripwire

def _maps(m, d=None): return AffineMaps(resolve_hooks(m, R), d or m.cfg.d_model)

BAD = {
    "source empty": (lambda m: fit_lineas(m, [], TGT, R), "source"),
    "source one": (lambda m: fit_lineas(m, SRC[:1], TGT, R), "at least 2"),
    "source str": (lambda m: fit_lineas(m, "The room was dirty.", TGT, R), "source"),
    "target blank": (lambda m: fit_lineas(m, SRC, ["", " "], R), "target"),
    "unknown hook": (lambda m: fit_lineas(m, SRC, TGT, "blocks.0.hook_nonsense"), "hook_nonsense"),
    "steps zero": (lambda m: fit_lineas(m, SRC, TGT, R, steps=0), "steps"),
    "lr nan": (lambda m: fit_lineas(m, SRC, TGT, R, lr=math.nan), "lr"),
    "batch one": (lambda m: fit_lineas(m, SRC, TGT, R, batch_size=1), "batch_size"),
    "l1 negative": (lambda m: fit_lineas(m, SRC, TGT, R, l1=-1.0), "l1"),
    "group inf": (lambda m: fit_lineas(m, SRC, TGT, R, group=math.inf), "group"),
    "linact source": (lambda m: fit_linact(m, SRC[:1], TGT, R), "source"),
    "strength nan": (lambda m: _maps(m).interventions(m, math.nan), "strength"),
    "strength bool": (lambda m: _maps(m).interventions(m, True), "strength"),
    "maps width": (lambda m: _maps(m, m.cfg.d_model + 3).interventions(m), "width"),
    "no prompts": (lambda m: p_positive(m, []), "non-empty"),
    "prompts n": (lambda m: review_prompts(10_000), "n must"),
}

@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_fails_before_any_forward(case, tiny):
    fn, msg = BAD[case]
    with _tripwire(tiny):
        with pytest.raises((GcavInputError, KeyError), match=msg): fn(tiny)

def test_bad_shapes_and_params():
    with pytest.raises(GcavInputError, match="same layer and d"): w2_loss(torch.zeros(2, 3, 4), torch.zeros(1, 3, 4))
    with pytest.raises(GcavInputError, match="empty"): w2_loss(torch.zeros(1, 0, 4), torch.zeros(1, 3, 4))
    with pytest.raises(GcavInputError, match="at least one hook"): AffineMaps([], 4)
    with pytest.raises(GcavInputError, match="positive int"): AffineMaps(["h"], 0)
    with pytest.raises(TypeError, match="ConceptVector"): probe_score(None, "not a probe", ["x"])

def test_w2_loss_is_the_optimal_matching():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1, 6, 1, generator=g), torch.randn(1, 6, 1, generator=g)
    brute = min(float(((x[0, :, 0] - y[0, list(p), 0]) ** 2).mean()) for p in itertools.permutations(range(6)))
    assert math.isclose(float(w2_loss(x, y.sort(1).values)), brute, rel_tol=1e-5)

def test_prox_soft_threshold_and_group_shrink():
    u = torch.nn.Parameter(torch.tensor([[0.5, -0.05], [3.0, 4.0]])); u.grad = torch.zeros_like(u)
    ProxSGD([u], lr=0.1, l1=1.0).step()
    torch.testing.assert_close(u.data, torch.tensor([[0.4, 0.0], [2.9, 3.9]]))
    v = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [0.01, 0.0]])); v.grad = torch.zeros_like(v)
    ProxSGD([v], lr=0.1, group=1.0).step()
    torch.testing.assert_close(v.data[0], torch.tensor([3.0, 4.0]) * (1 - 0.1 * math.sqrt(2) / 5)); assert v.data[1].abs().sum() == 0

def test_maps_removed_after_an_exception_inside_the_block(tiny):
    toks, _ = tokenize(tiny, SRC)
    mp = _maps(tiny)
    with torch.no_grad():
        mp.b.add_(1.0); before = tiny(toks)
        with pytest.raises(RuntimeError, match="inside"):
            with steer(*mp.interventions(tiny)):
                assert (tiny(toks) - before).abs().max() > 1e-4
                raise RuntimeError("an error inside the steering block")
        torch.testing.assert_close(tiny(toks), before)

def test_fit_restores_gradient_flags_and_the_model(tiny):
    toks, mask = tokenize(tiny, SRC)
    flags = [p.requires_grad for p in tiny.parameters()]
    with torch.no_grad(): before = tiny(toks)
    mp, hist = fit_lineas(tiny, SRC, TGT, R, steps=3, lr=0.01, batch_size=4, progress=False, log_every=1)
    assert [p.requires_grad for p in tiny.parameters()] == flags
    with torch.no_grad(): torch.testing.assert_close(tiny(toks), before)
    assert len(hist) == 3 and mp.support() > 0

def test_pooled_acts_with_identity_maps_are_unchanged(tiny):
    H = resolve_hooks(tiny, R); toks, mask = tokenize(tiny, SRC)
    with torch.no_grad():
        torch.testing.assert_close(pooled_acts(tiny, toks, mask, H, _maps(tiny).interventions(tiny)), pooled_acts(tiny, toks, mask, H))

def test_random_maps_match_the_norms(tiny):
    mp = _maps(tiny)
    with torch.no_grad(): mp.dw.normal_(); mp.b.normal_()
    rm = random_maps(mp, seed=3)
    torch.testing.assert_close(rm.dw.norm(dim=1), mp.dw.norm(dim=1).detach()); torch.testing.assert_close(rm.b.norm(dim=1), mp.b.norm(dim=1).detach())

@cpu_only
def test_cpu_lineas_direction_on_smollm2():
    """cpu: as 13_lineas found with its cpu sizes (32 + 32 sentences, 10 SGD steps at lr 0.005, batch 16): LinEAS raises
    P(positive adjective) on the 24 held-out prompts (0.945 -> 0.991, +0.046) and the same-size random map does not
    (-0.003). At lr 0.02 (the first cpu run) the fit diverged and this test failed; the lr was changed for the divergence
    (W2 loss 18 -> 7e9), not for this test."""
    import numpy as np
    from gcav_nb.models import load_model
    from gcav_nb.data import load_concepts
    m = load_model("smollm2-135m"); cs = load_concepts(["complaint", "praise"])
    perm = np.random.default_rng(0).permutation(len(cs["complaint"].examples))
    src, tgt = ([cs[k].examples[i] for i in perm[:32]] for k in ("complaint", "praise"))
    mp, _ = fit_lineas(m, src, tgt, "blocks.*.ln2.hook_out", steps=10, lr=0.005, batch_size=16, progress=False)
    held = review_prompts(24, seed=0)
    p0 = float(p_positive(m, held).mean())
    d_lin = float(p_positive(m, held, mp.interventions(m)).mean()) - p0
    d_rnd = float(p_positive(m, held, random_maps(mp, seed=1).interventions(m)).mean()) - p0
    assert d_lin > 0 and d_lin > d_rnd, (d_lin, d_rnd)
