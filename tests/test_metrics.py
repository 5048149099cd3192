"""gcav_nb.metrics: the bad-input matrix (each error raised before any forward pass), batching invariances and the
CE-recovered end points on tiny-llama."""
import math
import pytest
import torch
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.metrics import ce_loss, ce_loss_recovered, entropy, kl_divergence, kl_vs_model, l0, perplexity
from gcav_nb.models import load_model, tokenize

TEXTS = ["the cat sat on the mat", "a dog", "colourless green ideas sleep furiously", "one two three four"]
HOOK = "blocks.1.hook_resid_post"
NAN, INF = float("nan"), float("inf")

@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-llama", device="cpu")

@pytest.fixture
def counted(tiny, monkeypatch):
    "tiny-llama with its forward passes counted (to check that errors come before any work)."
    calls = []
    run, fwd = tiny.run_with_hooks, tiny.forward
    monkeypatch.setattr(tiny, "run_with_hooks", lambda *a, **k: calls.append(1) or run(*a, **k))
    monkeypatch.setattr(tiny, "forward", lambda *a, **k: calls.append(1) or fwd(*a, **k))
    return tiny, calls

@pytest.mark.parametrize("p,q,kw,err,contains", [
    (torch.zeros(3), torch.zeros(4), {}, GcavInputError, "logits_q has shape (4,)"),
    (torch.zeros(2, 3), torch.zeros(3, 2), {}, GcavInputError, "logits_p has shape (2, 3)"),
    (torch.tensor([0., NAN, 0.]), torch.zeros(3), {}, GcavInputError, "logits_p has NaN"),
    (torch.zeros(3), torch.tensor([0., INF, 0.]), {}, GcavInputError, "logits_q has NaN (or +inf"),
    (torch.zeros(3), torch.full((3,), -INF), {}, GcavInputError, "only -inf"),
    (torch.tensor([1, 2]), torch.tensor([1, 2]), {}, TypeError, "float tensor"),
    (torch.zeros(1), torch.zeros(1), {}, GcavInputError, "vocab >= 2"),
    (torch.zeros(3), torch.zeros(3), dict(reduction="batchmean"), GcavInputError, "reduction='batchmean'"),
    (torch.zeros(2, 3), torch.zeros(2, 3), dict(mask=torch.ones(3)), GcavInputError, "mask has shape (3,)"),
])
def test_kl_divergence_bad_input(p, q, kw, err, contains):
    "Shape mismatches, NaN/inf logits, integer logits and bad options name the problem."
    with pytest.raises(err) as e: kl_divergence(p, q, **kw)
    assert contains in str(e.value)

def test_kl_and_entropy_by_hand():
    "KL of (1/2, 1/4, 1/4) against uniform and entropies match arithmetic done by hand; KL(P||P) = 0."
    p = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]], dtype=torch.float64).log()
    u = torch.zeros(2, 3, dtype=torch.float64)
    kl = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)
    assert torch.allclose(kl_divergence(p, u, reduction="none"), torch.tensor([kl, kl], dtype=torch.float64), atol=1e-12)
    assert kl_divergence(u, p).item() == pytest.approx((2 * math.log(4) + math.log(2)) / 3 - math.log(3), abs=1e-12)
    assert kl_divergence(p, p).item() == pytest.approx(0.0, abs=1e-15)
    assert entropy(p, reduction="mean").item() == pytest.approx(1.5 * math.log(2), abs=1e-12)

@pytest.mark.parametrize("data,kw,err,contains", [
    ([], {}, GcavInputError, "texts is empty"),
    ([""], dict(prepend_bos=False), GcavInputError, "no next token"),
    (["ok", 3], {}, TypeError, "texts[1]"),
    (torch.tensor([[1., 2.]]), {}, GcavInputError, "int tensor"),
    (torch.tensor([1, 2, 3]), {}, GcavInputError, "[batch, pos]"),
    (torch.tensor([[1, 49152]]), {}, GcavInputError, "[0, 49152)"),
    (torch.tensor([[1, -1]]), {}, GcavInputError, "[0, 49152)"),
    (torch.tensor([[1, 2, 3]]), dict(mask=torch.ones(1, 2)), GcavInputError, "mask has shape (1, 2)"),
    (["a text"], dict(mask=torch.ones(1, 2)), GcavInputError, "mask is only for token ids"),
    (["a text"], dict(batch_size=0), GcavInputError, "batch_size"),
    (["a text"], dict(fwd_hooks=[HOOK]), TypeError, "(hook name, fn) pairs"),
    (["a text"], dict(fwd_hooks=[(HOOK, None)]), TypeError, "not callable"),
    (["a text"], dict(fwd_hooks=[("blocks.1.hook_resid_pots", lambda a, hook: a)]), UnknownNameError, "hook_resid_pots"),
])
def test_ce_loss_bad_input_fails_before_any_forward(counted, data, kw, err, contains):
    "Every bad input of ce_loss fails with a message naming it, and no forward pass has run."
    model, calls = counted
    with pytest.raises(err) as e: ce_loss(model, data, progress=False, **kw)
    assert contains in str(e.value) and calls == []

@pytest.mark.parametrize("kw,err,contains", [
    (dict(ablation="resample"), GcavInputError, "ablation='resample'"),
    (dict(replace_fn=None), TypeError, "callable"),
    (dict(hook="blocks.*.hook_resid_post"), GcavInputError, "give exactly one"),
    (dict(hook="blocks.9.hook_resid_post"), UnknownNameError, "blocks.9"),
    (dict(data=[]), GcavInputError, "texts is empty"),
])
def test_ce_loss_recovered_bad_input_fails_before_any_forward(counted, kw, err, contains):
    "Bad options of ce_loss_recovered fail before any forward pass."
    model, calls = counted
    args = dict(data=TEXTS, hook=HOOK, replace_fn=lambda a: a, progress=False) | kw
    with pytest.raises(err) as e: ce_loss_recovered(model, **args)
    assert contains in str(e.value) and calls == []

def test_ce_loss_independent_of_batching(tiny):
    "Per-token losses and the mean are the same with batch size 1 and 4 (padding is masked)."
    a = ce_loss(tiny, TEXTS, per_token=True, batch_size=1, progress=False)
    b = ce_loss(tiny, TEXTS, per_token=True, batch_size=4, progress=False)
    assert torch.equal(a.isnan(), b.isnan()) and torch.allclose(a.nan_to_num(), b.nan_to_num(), atol=1e-4)
    assert ce_loss(tiny, TEXTS, batch_size=1, progress=False) == pytest.approx(ce_loss(tiny, TEXTS, batch_size=3, progress=False), abs=1e-5)

def test_ce_loss_tokens_and_texts_agree(tiny):
    "Token ids with their mask give the same loss as the texts they came from; perplexity = exp(loss)."
    t, m = tokenize(tiny, TEXTS)
    assert ce_loss(tiny, t, mask=m, progress=False) == pytest.approx(ce_loss(tiny, TEXTS, progress=False), abs=1e-6)
    assert math.log(perplexity(tiny, TEXTS, progress=False)) == pytest.approx(ce_loss(tiny, TEXTS, progress=False), abs=1e-9)
    with pytest.raises(GcavInputError, match="one number"): perplexity(tiny, TEXTS, per_token=True)

@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_ce_loss_recovered_end_points(tiny, ablation):
    "The identity recovers exactly 1; the ablation itself as the replacement recovers exactly 0."
    assert ce_loss_recovered(tiny, TEXTS, HOOK, lambda a: a, ablation=ablation, progress=False)["recovered"] == 1.0
    if ablation == "zero": ablate = torch.zeros_like
    else:
        t, m = tokenize(tiny, TEXTS)
        _, cache = tiny.run_with_cache(t, names_filter=[HOOK])
        mean = cache[HOOK][m.bool()].mean(0)                 # mean over real tokens, as the ablation computes it
        ablate = lambda a: mean.expand_as(a)
    r = ce_loss_recovered(tiny, TEXTS, HOOK, ablate, ablation=ablation, progress=False)
    assert r["recovered"] == pytest.approx(0.0, abs=1e-4) and r["ce_ablated"] != r["ce_clean"]

def test_ce_loss_recovered_wrong_shape_replacement(tiny):
    "A replacement of the wrong shape is named with both shapes."
    with pytest.raises(GcavInputError, match=r"replace_fn returned \(.*for an activation of shape"):
        ce_loss_recovered(tiny, TEXTS, HOOK, lambda a: a[..., :3], progress=False)

def test_kl_vs_model_zero_for_identity_positive_otherwise(tiny):
    "A hook that changes nothing gives KL 0; a perturbation gives KL > 0 at every real position, NaN at padding."
    assert kl_vs_model(tiny, TEXTS, [(HOOK, lambda a, hook: a)], progress=False) == pytest.approx(0.0, abs=1e-10)
    g = torch.Generator().manual_seed(0)
    kl = kl_vs_model(tiny, TEXTS, [(HOOK, lambda a, hook: a + torch.randn(a.shape, generator=g))], reduction="none", progress=False)
    _, m = tokenize(tiny, TEXTS)
    assert torch.equal(kl.isnan(), m == 0) and (kl[m == 1] > 0).all()

@pytest.mark.parametrize("acts,kw,err", [
    (torch.tensor([NAN, 1.]), {}, GcavInputError),
    (torch.ones(3), dict(threshold=-0.1), GcavInputError),
    (torch.ones(3), dict(reduction="max"), GcavInputError),
    ([1., 0.], {}, TypeError),
])
def test_l0_bad_input(acts, kw, err):
    "NaN codes, a negative threshold, a bad reduction and a non-tensor are refused."
    with pytest.raises(err): l0(acts, **kw)
