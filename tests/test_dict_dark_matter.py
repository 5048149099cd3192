"""gcav_nb.dictionaries.dark_matter: the regression against ground truths (an exact linear error, a shrunk SAE), the
shuffled-pair control, bad input fails early, and (cpu) the direction of the main effect on SmolLM2: a trained SAE's
error is linearly predictable from x far better than the same regression on shuffled pairs."""
import math
import pytest
import torch
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.dictionaries.core import make_sae, train_sae, activation_batches
from gcav_nb.dictionaries.dark_matter import check_rows, sae_error, ridge_fit, predict, r2, dark_matter, best_scale

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")

def _shrunk(d=8, c=0.5):
    s = make_sae("standard", d, d, normalize_activations="none")
    with torch.no_grad(): s.W_enc.copy_(c * torch.eye(d)); s.W_dec.copy_(torch.eye(d)); s.b_enc.zero_(); s.b_dec.zero_()
    return s

def test_a_shrunk_sae_has_a_fully_linear_error_and_rescaling_removes_it():
    "e = (1 - c) x for an SAE that shrinks by c: R2_vec = 1; best_scale finds 1/c and the rescaled error vanishes."
    x = torch.rand(600, 8, generator=torch.Generator().manual_seed(0)) + 0.1
    s = _shrunk()
    dm = dark_matter(s, x)
    assert dm["r2_vec"] > 0.999 and dm["unpred_share"] < 1e-3
    assert abs(best_scale(s, x) - 2.0) < 1e-5
    assert sae_error(s, x, scale=2.0).abs().max() < 1e-5

def test_shuffled_pairs_lose_the_linear_relation():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 12, generator=g); W = torch.randn(12, 12, generator=g)
    e = x @ W + 0.1 * torch.randn(2000, 12, generator=g)
    f, t = slice(0, 1000), slice(1000, None)
    real = r2(e[t], predict(x[t], ridge_fit(x[f], e[f])))
    shuf = r2(e[t], predict(x[t], ridge_fit(x[f][torch.randperm(1000, generator=g)], e[f])))
    assert real > 0.95 and shuf < 0.05, (real, shuf)

def test_ridge_fit_recovers_weights_and_intercept():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(500, 5, generator=g); W = torch.randn(5, 2, generator=g)
    Wf = ridge_fit(x, x @ W - 1.5, ridge=0.0, intercept=True)
    torch.testing.assert_close(Wf[:-1].float(), W, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(Wf[-1].float(), torch.full((2,), -1.5), rtol=1e-4, atol=1e-4)

BAD = {
    "nan rows": (lambda: dark_matter(_shrunk(), torch.full((50, 8), math.nan)), "NaN/inf"),
    "inf rows": (lambda: sae_error(_shrunk(), torch.ones(5, 8).index_fill(0, torch.tensor([2]), math.inf)), "NaN/inf"),
    "width mismatch": (lambda: dark_matter(_shrunk(), torch.rand(50, 9)), "d_in=8.*width 9"),
    "empty": (lambda: dark_matter(_shrunk(), torch.zeros(0, 8)), "empty"),
    "int rows": (lambda: check_rows(torch.zeros(4, 8, dtype=torch.long)), "float tensor"),
    "1-D rows": (lambda: check_rows(torch.zeros(8)), "float tensor"),
    "too few rows": (lambda: dark_matter(_shrunk(), torch.rand(3, 8)), "too few"),
    "fit_frac": (lambda: dark_matter(_shrunk(), torch.rand(50, 8), fit_frac=0.0), "fit_frac"),
    "ridge negative": (lambda: ridge_fit(torch.rand(10, 3), torch.rand(10, 2), ridge=-1.0), "ridge"),
    "ridge nan": (lambda: ridge_fit(torch.rand(10, 3), torch.rand(10, 2), ridge=math.nan), "ridge"),
    "row mismatch": (lambda: ridge_fit(torch.rand(10, 3), torch.rand(9, 2)), "rows"),
    "best_scale width": (lambda: best_scale(_shrunk(), torch.rand(5, 7)), "d_in=8"),
}

@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_refused(case):
    fn, msg = BAD[case]
    with pytest.raises(GcavInputError, match=msg): fn()

def test_bad_rows_fail_before_the_sae_runs(monkeypatch):
    "Rows are checked before any encode."
    s = _shrunk()
    monkeypatch.setattr(type(s), "encode", lambda *a, **k: pytest.fail("the SAE ran"))
    with pytest.raises(GcavInputError, match="NaN/inf"): dark_matter(s, torch.full((50, 8), math.nan))
    with pytest.raises(GcavInputError, match="width"): sae_error(s, torch.rand(5, 3))

def test_same_seed_same_numbers():
    x = torch.randn(400, 8, generator=torch.Generator().manual_seed(3))
    s = make_sae("topk", 8, 16, k=2, seed=0, normalize_activations="none")
    assert dark_matter(s, x, seed=5) == dark_matter(s, x, seed=5)

@cpu_only
def test_cpu_trained_sae_error_is_linearly_predictable_beyond_shuffled_pairs(tmp_path):
    "cpu (24_dark_matter's setting, smaller): on SmolLM2 a trained TopK SAE's held-out error is predicted by a linear map of x (R2_vec, R2_norm) better than by the same fit on shuffled pairs."
    from gcav_nb.models import load_model
    from gcav_nb.store import ActivationStore, corpus_documents
    m = load_model("smollm2-135m"); hook = "blocks.15.hook_resid_post"; docs = corpus_documents("brown")
    st = ActivationStore.build(m, docs[:-60], hook, tmp_path / "tr", ctx=128, n_tokens=16_384, prepend_bos=True, seed=0, progress=False)
    he = ActivationStore.build(m, docs[-60:], hook, tmp_path / "he", ctx=128, n_tokens=4096, prepend_bos=True, progress=False)
    X = torch.cat(list(activation_batches(he, hook, batch_size=4096, shuffle=False, epochs=1)))
    sae, _ = train_sae(st, hook, "topk", d_sae=4 * 576, k=32, training_tokens=16_384, batch_size=256, lr=1e-3, progress=False)
    dm = dark_matter(sae, X)
    assert dm["r2_vec"] > dm["r2_vec_shuffled"] and dm["r2_norm"] > dm["r2_norm_shuffled"], dm
