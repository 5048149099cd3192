"""gcav_nb.dictionaries.top_afa: the top-AFA selection rule against its definition, the eps_LBO metric, bad input fails
early (before a training step or a forward pass), same seed -> same SAE, sae-lens save/load, and (cpu) the direction of
the trained top-AFA SAE against its controls on SmolLM2."""
import json, math
import pytest
import torch
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.data import text_corpus
from gcav_nb.store import ActivationStore, token_blocks
from gcav_nb.dictionaries.core import make_sae, train_sae, activation_batches, evaluate_sae, save_sae, load_sae
from gcav_nb.dictionaries.top_afa import top_afa, zf_frame, afa_summary, TopAFASAE, TopAFATrainingSAE

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")
HOOK = "blocks.1.hook_resid_post"

def data(n=2000, d=16, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))

def no_step(monkeypatch):
    "Any sae-lens training step fails the test."
    from sae_lens import SAETrainer
    monkeypatch.setattr(SAETrainer, "step", lambda *a, **k: pytest.fail("a training step ran"))

@pytest.fixture(scope="module")
def store(tiny, tmp_path_factory):
    return ActivationStore.build(tiny, text_corpus("brown", n_tokens=8000), HOOK, tmp_path_factory.mktemp("s") / "store",
                                 ctx=64, n_tokens=64 * 40, shard_tokens=64 * 20, prepend_bos=True, progress=False)

def test_top_afa_keeps_the_prefix_whose_norm_is_closest_to_the_target():
    "k* = argmin_j |sqrt(cumsum of sorted (a_i ||w_i||)^2)_j - target| + 1, checked by brute force over every j."
    g = torch.Generator().manual_seed(0)
    a, dn, t = torch.rand(50, 30, generator=g).relu(), torch.rand(30, generator=g) + 0.5, torch.rand(50, generator=g) * 3
    out = top_afa(a, dn, t)
    for r in range(50):
        s = (a[r] * dn) ** 2; order = s.argsort(descending=True); c = s[order].cumsum(0).sqrt()
        k = int((c - t[r]).abs().argmin()) + 1
        want = torch.zeros(30); want[order[:k]] = a[r, order[:k]]
        torch.testing.assert_close(out[r], want)

def test_top_afa_codes_survive_folding_the_input_scale():
    "sae-lens folds the input scaling factor into the weights after training; the selection (a norm ratio) is unchanged."
    sae = make_sae("topafa", 16, 48, seed=1, normalize_activations="none", dtype="float64")   # float64: no near-tie flips
    with torch.no_grad(): sae.b_dec.normal_()
    x = data(64).double(); s = 3.7
    before = sae.encode(x * s)
    sae.fold_activation_norm_scaling_factor(s)
    torch.testing.assert_close(sae.encode(x), before)

def test_eps_lbo_is_zero_for_an_orthonormal_dictionary():
    sae = make_sae("standard", 6, 6, normalize_activations="none")
    with torch.no_grad(): sae.W_enc.copy_(torch.eye(6)); sae.W_dec.copy_(torch.eye(6)); sae.b_enc.zero_(); sae.b_dec.zero_()
    f = zf_frame(sae, torch.rand(30, 6) + 0.1)
    assert f.eps_lbo.abs().max() < 1e-9 and (f.l0 == 6).all()

BAD = {
    "zf nan": (lambda: zf_frame(make_sae("topafa", 16, 32), torch.full((4, 16), math.nan)), "NaN/inf"),
    "zf inf": (lambda: zf_frame(make_sae("topafa", 16, 32), data(4).index_fill(1, torch.tensor([3]), math.inf)), "NaN/inf"),
    "zf width": (lambda: zf_frame(make_sae("topafa", 16, 32), data(4, 17)), "d_in=16.*width 17"),
    "zf empty": (lambda: zf_frame(make_sae("topafa", 16, 32), torch.zeros(0, 16)), "empty"),
    "zf int": (lambda: zf_frame(make_sae("topafa", 16, 32), torch.zeros(3, 16, dtype=torch.long)), "float tensor"),
    "afa coef negative": (lambda: make_sae("topafa", 16, 32, afa_coefficient=-1.0), "afa_coefficient"),
    "afa coef nan": (lambda: make_sae("topafa", 16, 32, afa_coefficient=math.nan), "afa_coefficient"),
    "aux coef bool": (lambda: make_sae("topafa", 16, 32, aux_loss_coefficient=True), "aux_loss_coefficient"),
    "unknown field k": (lambda: make_sae("topafa", 16, 32, k=4), "no field"),
    "selection shapes": (lambda: top_afa(torch.rand(3, 8), torch.rand(7), torch.rand(3)), "do not match"),
    "summary empty": (lambda: afa_summary(zf_frame(make_sae("topafa", 16, 32), data(4)).iloc[:0]), "empty"),
}

@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_refused(case):
    fn, msg = BAD[case]
    with pytest.raises(GcavInputError, match=msg): fn()

def test_training_bad_data_fails_before_a_step(store, monkeypatch):
    no_step(monkeypatch)
    kw = dict(architecture="topafa", training_tokens=512, batch_size=64, progress=False)
    bad = data(); bad[7, 2] = math.nan
    with pytest.raises(GcavInputError, match="NaN/inf"): train_sae(bad, **kw)
    with pytest.raises(GcavInputError, match="empty"): train_sae(torch.zeros(0, 16), **kw)
    with pytest.raises(GcavInputError, match="d_in=32.*width 64"): train_sae(store, sae=make_sae("topafa", 32, 64), training_tokens=512, batch_size=64, progress=False)
    with pytest.raises(GcavInputError, match="excluded"): train_sae(store, exclude_tokens=list(range(49152)), **kw)

def test_evaluate_width_mismatch_fails_before_the_evaluation_passes(tiny):
    held = torch.stack(list(token_blocks(tiny, text_corpus("brown")[-20:], ctx=32, n_tokens=32 * 2, prepend_bos=True)))
    calls = []
    with tiny.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda a, hook: calls.append(a.shape[1]))]):
        with pytest.raises(GcavInputError, match="d_in=32"): evaluate_sae(make_sae("topafa", 32, 64), tiny, held, HOOK, progress=False)
    assert all(n <= 2 for n in calls)                                   # only the two-token width probe ran

def test_same_seed_same_sae(store):
    kw = dict(architecture="topafa", d_sae=128, training_tokens=1024, batch_size=128, progress=False, afa_coefficient=2.0)
    a, ha = train_sae(store, seed=3, **kw); b, hb = train_sae(store, seed=3, **kw); c, _ = train_sae(store, seed=4, **kw)
    for k, v in a.state_dict().items(): assert torch.equal(v, b.state_dict()[k]), k
    assert ha.equals(hb) and not torch.equal(a.W_dec, c.W_dec)

def test_save_load_round_trip_through_sae_lens(store, tmp_path):
    sae, _ = train_sae(store, architecture="topafa", d_sae=128, training_tokens=1024, batch_size=128, progress=False)
    assert isinstance(sae, TopAFASAE) and isinstance(make_sae("topafa", 8, 16), TopAFATrainingSAE)
    back = load_sae(save_sae(sae, tmp_path / "sae"))
    assert json.loads((tmp_path / "sae" / "cfg.json").read_text())["architecture"] == "topafa"
    x = store.read(0, HOOK)[:50]
    torch.testing.assert_close(back.decode(back.encode(x)), sae.decode(sae.encode(x)))

@cpu_only
def test_cpu_trained_top_afa_beats_its_controls_on_smollm2(tmp_path):
    "cpu (22_top_afa's setting, smaller): top-AFA trained on SmolLM2 explains more held-out variance than the same SAE untrained and than top-AFA trained on shuffled activations."
    from gcav_nb.models import load_model
    from gcav_nb.store import corpus_documents
    m = load_model("smollm2-135m"); hook = "blocks.15.hook_resid_pre"; docs = corpus_documents("brown")
    st = ActivationStore.build(m, docs[:-60], hook, tmp_path / "tr", ctx=128, n_tokens=16_384, prepend_bos=True, seed=0, progress=False)
    he = ActivationStore.build(m, docs[-60:], hook, tmp_path / "he", ctx=128, n_tokens=2048, prepend_bos=True, progress=False)
    X = torch.cat(list(activation_batches(st, hook, batch_size=4096, shuffle=False, epochs=1)))
    Xh = torch.cat(list(activation_batches(he, hook, batch_size=4096, shuffle=False, epochs=1)))
    g = torch.Generator().manual_seed(0); Xs = torch.stack([c[torch.randperm(len(c), generator=g)] for c in X.T], 1)
    kw = dict(architecture="topafa", d_sae=4 * 576, training_tokens=16_384, batch_size=256, lr=1e-3, progress=False, afa_coefficient=576 / 32)
    def ev(s):
        with torch.no_grad(): return 1 - float(((s.decode(s.encode(Xh)) - Xh) ** 2).sum() / ((Xh - Xh.mean(0)) ** 2).sum())
    trained, shuffled = train_sae(X, **kw)[0], train_sae(Xs, **kw)[0]
    untrained = make_sae("topafa", 576, 4 * 576, afa_coefficient=576 / 32)
    assert ev(trained) > max(ev(untrained), ev(shuffled)), (ev(trained), ev(untrained), ev(shuffled))
