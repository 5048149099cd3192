"""gcav_nb.dictionaries.gsae: the selection rule against its definition, the activation gradients against a finite
difference, beta = 0 is TopK (the gradient ignored), bad input fails early (before a training step or a forward pass),
same seed -> same SAE, sae-lens save/load, and (cpu) g-SAE's downstream effect against its shuffled-gradient control."""
import json, math
import pytest
import torch
import torch.nn.functional as F
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.store import token_blocks
from gcav_nb.dictionaries.core import make_sae, save_sae, load_sae
from gcav_nb.dictionaries.gsae import activation_gradients, gsae_select, train_gsae, grad_splice, GSAE

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")
HOOK = "blocks.1.hook_resid_post"
KW = dict(k=4, d_sae=32, training_tokens=1024, batch_size=128, lr=1e-3, progress=False)

from conftest import ForwardRan, tripwire as _tripwire

def rows(n=2048, d=16, seed=0):
    g = torch.Generator().manual_seed(seed); return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)

def test_selection_is_the_top_k_of_the_gradient_weighted_score():
    g = torch.Generator().manual_seed(1)
    pre, dirs, grad = torch.randn(40, 24, generator=g), torch.randn(24, 8, generator=g), torch.randn(40, 8, generator=g)
    out = gsae_select(pre, dirs, grad, 1.5, 5)
    z = pre.relu(); score = z * (1 + 1.5 * (grad @ dirs.T).abs())
    for r in range(40):
        idx = score[r].topk(5).indices; want = torch.zeros(24); want[idx] = z[r, idx]
        torch.testing.assert_close(out[r], want)
    torch.testing.assert_close(gsae_select(pre, dirs, grad, 0.0, 5), torch.zeros(40, 24).scatter(1, z.topk(5).indices, z.gather(1, z.topk(5).indices)))

def test_activation_gradients_match_autograd_through_the_model(tiny):
    "The tapped gradient equals d(summed next-token CE)/d(activation) computed by retain_grad on the hooked activation."
    t = torch.stack(list(token_blocks(tiny, "brown", ctx=12, n_tokens=24, prepend_bos=True)))
    X, G = activation_gradients(tiny, t, HOOK, batch_size=1, progress=False)
    kept = {}
    def keep(act, hook): act.retain_grad(); kept["a"] = act; return act
    with torch.enable_grad(), tiny.hooks(fwd_hooks=[(HOOK, keep)]):
        lg = tiny(t); F.cross_entropy(lg[:, :-1].flatten(0, 1), t[:, 1:].flatten(), reduction="sum").backward()
    torch.testing.assert_close(G, kept["a"].grad.float(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(X, kept["a"].detach().float())
    tiny.zero_grad(set_to_none=True)

def test_beta_zero_ignores_the_gradient():
    X, G = rows(); _, G2 = rows(seed=5)
    a, _ = train_gsae(X, G, beta=0.0, **KW); b, _ = train_gsae(X, G2, beta=0.0, **KW)
    for n, v in a.state_dict().items(): torch.testing.assert_close(v, b.state_dict()[n])

def test_same_seed_same_sae_and_different_seed_differs():
    X, G = rows()
    a, ha = train_gsae(X, G, beta=1.0, seed=3, **KW); b, hb = train_gsae(X, G, beta=1.0, seed=3, **KW); c, _ = train_gsae(X, G, beta=1.0, seed=4, **KW)
    for n, v in a.state_dict().items(): assert torch.equal(v, b.state_dict()[n]), n
    assert ha.equals(hb) and not torch.equal(a.W_dec, c.W_dec)

def test_input_scale_is_folded_into_raw_unit_latents():
    "x is trained as c x (c = sqrt(d)/E||x||): rows 5 x give the same rows c x, so the same decoder directions, and raw-unit latents and reconstructions 5 times larger."
    X, G = rows(); X = X * 3 + 1
    a, ha = train_gsae(X, G, beta=2.0, **KW); b, hb = train_gsae(5 * X, G, beta=2.0, **KW)
    torch.testing.assert_close(a.W_dec, b.W_dec); torch.testing.assert_close(a.W_enc, b.W_enc)
    torch.testing.assert_close(torch.tensor(ha.loss.values), torch.tensor(hb.loss.values), rtol=1e-5, atol=1e-6)   # same training (to rounding)
    with torch.no_grad():
        za, zb = a.encode_with_grad(X[:64], G[:64]), b.encode_with_grad(5 * X[:64], G[:64])
        torch.testing.assert_close(zb, 5 * za, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b.decode(zb), 5 * a.decode(za), rtol=1e-4, atol=1e-4)
    assert a.cfg.normalize_activations == "none"
    torch.testing.assert_close(a.W_dec.norm(dim=-1), torch.ones(a.cfg.d_sae))       # unit directions: the score z(1 + beta|D g|) as in training

def test_save_load_round_trip_through_sae_lens(tmp_path):
    X, G = rows()
    sae, _ = train_gsae(X, G, beta=2.0, hook=HOOK, **KW)
    back = load_sae(save_sae(sae, tmp_path / "g"))
    assert isinstance(back, GSAE) and back.cfg.beta == 2.0
    assert json.loads((tmp_path / "g" / "cfg.json").read_text())["architecture"] == "gsae"
    torch.testing.assert_close(back.encode_with_grad(X[:30], G[:30]), sae.encode_with_grad(X[:30], G[:30]))

def _nan(t): t = t.clone(); t[3, 2] = math.nan; return t
BAD = {
    "x nan": (lambda X, G: train_gsae(_nan(X), G, **KW), "NaN/inf"),
    "grad inf": (lambda X, G: train_gsae(X, G.index_fill(0, torch.tensor([1]), math.inf), **KW), "NaN/inf"),
    "shape mismatch": (lambda X, G: train_gsae(X, G[:, :8], **KW), "same shape"),
    "empty": (lambda X, G: train_gsae(X[:0], G[:0], **KW), "empty"),
    "k > width": (lambda X, G: train_gsae(X, G, **{**KW, "k": 33}), "k must"),
    "k zero": (lambda X, G: train_gsae(X, G, **{**KW, "k": 0}), "k must"),
    "beta negative": (lambda X, G: train_gsae(X, G, beta=-0.5, **KW), "beta"),
    "beta nan": (lambda X, G: train_gsae(X, G, beta=math.nan, **KW), "beta"),
    "too few tokens": (lambda X, G: train_gsae(X, G, **{**KW, "training_tokens": 10}), "less than one batch"),
    "int rows": (lambda X, G: train_gsae(X.long(), G, **KW), "float tensor"),
    "select shapes": (lambda X, G: gsae_select(torch.rand(3, 8), torch.rand(8, 4), torch.rand(3, 5), 1.0, 2), "do not match"),
}

@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_training_input_fails_before_a_step(case, monkeypatch):
    from sae_lens import SAETrainer
    monkeypatch.setattr(SAETrainer, "step", lambda *a, **k: pytest.fail("a training step ran"))
    fn, msg = BAD[case]
    with pytest.raises(GcavInputError, match=msg): fn(*rows())

def test_training_sae_refuses_rows_without_gradients():
    from sae_lens.saes.sae import TrainStepInput
    sae = make_sae("gsae", 16, 32, k=4)
    with pytest.raises(GcavInputError, match="width 2 d_in = 32"):
        sae.training_forward_pass(TrainStepInput(sae_in=torch.randn(8, 16), coefficients={}, dead_neuron_mask=None, n_training_steps=0, is_logging_step=False))

def test_bad_model_input_fails_before_any_forward(tiny):
    t = torch.stack(list(token_blocks(tiny, "brown", ctx=12, n_tokens=24, prepend_bos=True)))
    with _tripwire(tiny):
        with pytest.raises(GcavInputError, match="int tensor"): activation_gradients(tiny, t.float(), HOOK)
        with pytest.raises(GcavInputError, match="int tensor"): activation_gradients(tiny, t[:0], HOOK)
        with pytest.raises(GcavInputError, match="batch_size"): activation_gradients(tiny, t, HOOK, batch_size=0)
        with pytest.raises(KeyError): activation_gradients(tiny, t, "blocks.9.hook_resid_post")
    X, G = rows(d=tiny.cfg.d_model)
    sae, _ = train_gsae(X, G, **{**KW, "d_sae": 128})
    with pytest.raises(GcavInputError, match="d_in"): grad_splice(sae, torch.zeros(2, 12, 7), torch.ones(2, 12, dtype=torch.bool))
    with pytest.raises(TypeError, match="GSAE"): grad_splice(make_sae("topk", 16, 32, k=4), torch.zeros(2, 12, 16), torch.ones(2, 12, dtype=torch.bool))

@cpu_only
def test_cpu_right_gradient_beats_shuffled_gradient_downstream():
    "cpu (23_gsae's setting, smaller): on SmolLM2 a g-SAE spliced with the true gradient recovers more CE loss than the same g-SAE recipe trained and spliced with shuffled gradients."
    from gcav_nb.models import load_model
    from gcav_nb.store import corpus_documents
    from gcav_nb.metrics import ce_loss_recovered
    m = load_model("smollm2-135m"); hook = "blocks.15.hook_resid_post"; docs = corpus_documents("brown")
    tr = torch.stack(list(token_blocks(m, docs[:-60], ctx=128, n_tokens=128 * 64, prepend_bos=True, seed=0)))
    he = torch.stack(list(token_blocks(m, docs[-60:], ctx=128, n_tokens=128 * 6, prepend_bos=True)))
    X, G = activation_gradients(m, tr, hook, progress=False); Xh, Gh = activation_gradients(m, he, hook, progress=False)
    bos = m.tokenizer.bos_token_id; X, G = X[tr != bos], G[tr != bos]
    s = 576 ** 0.5 / float(G.norm(dim=-1).mean()); G, Gh = G * s, Gh * s
    perm = torch.randperm(len(G), generator=torch.Generator().manual_seed(0))
    kw = dict(k=32, beta=2.0, d_sae=4 * 576, training_tokens=len(X) // 256 * 256, batch_size=256, lr=1e-3, progress=False)
    right, shuf = train_gsae(X, G, **kw)[0], train_gsae(X, G[perm], **kw)[0]
    Ghs = Gh.reshape(-1, 576)[torch.randperm(Gh.shape[0] * Gh.shape[1], generator=torch.Generator().manual_seed(1))].reshape(Gh.shape)
    with torch.no_grad():
        r = ce_loss_recovered(m, he, hook, grad_splice(right, Gh, he != bos), progress=False)["recovered"]
        c = ce_loss_recovered(m, he, hook, grad_splice(shuf, Ghs, he != bos), progress=False)["recovered"]
    assert r > c, (r, c)
