"""gcav_nb.dictionaries.core: bad input fails early (before a training step or an evaluation pass), same seed -> same SAE,
sae-lens format round trip, and sae-lens parity (our train_sae step = SAETrainer.fit on the same batches)."""
import json, math
import pytest
import torch
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.data import text_corpus
from gcav_nb.store import ActivationStore, token_blocks
from gcav_nb.dictionaries.core import (make_sae, train_sae, activation_batches, evaluate_sae, save_sae, load_sae,
                                       inference_sae, top_contexts, vocab_projection)

HOOK = "blocks.1.hook_resid_post"

@pytest.fixture(scope="module")
def store(tiny, tmp_path_factory):
    return ActivationStore.build(tiny, text_corpus("brown", n_tokens=8000), HOOK, tmp_path_factory.mktemp("s") / "store",
                                 ctx=64, n_tokens=64 * 40, shard_tokens=64 * 20, prepend_bos=True, progress=False)

@pytest.fixture(scope="module")
def held(tiny):
    return torch.stack(list(token_blocks(tiny, text_corpus("brown")[-20:], ctx=32, n_tokens=32 * 4, prepend_bos=True)))

def data(n=2000, d=16, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))

def no_step(monkeypatch):
    "Any sae-lens training step fails the test."
    from sae_lens import SAETrainer
    monkeypatch.setattr(SAETrainer, "step", lambda *a, **k: pytest.fail("a training step ran"))

@pytest.mark.parametrize("kw, err, contains", [
    (dict(architecture="relu"), GcavInputError, "unknown SAE architecture"),
    (dict(architecture="topk", d_sae=32, k=40), GcavInputError, "k must be"),
    (dict(architecture="topk", d_sae=32, k=0), GcavInputError, "k must be"),
    (dict(architecture="standard", l1_coef=1.0), GcavInputError, "no field"),
    (dict(training_tokens=10, batch_size=64), GcavInputError, "less than one batch"),
    (dict(batch_size=0), GcavInputError, "batch_size"),
    (dict(lr=-1.0), GcavInputError, "lr must be"),
    (dict(lr=float("nan")), GcavInputError, "lr must be"),
    (dict(sae="topk"), TypeError, "TrainingSAE"),
])
def test_train_bad_arguments_fail_before_a_step(kw, err, contains, monkeypatch):
    no_step(monkeypatch)
    kw = {"training_tokens": 512, "batch_size": 64, **kw}
    with pytest.raises(err, match=contains): train_sae(data(), progress=False, **kw)

def test_width_mismatch_nan_and_empty_data_fail_before_a_step(store, monkeypatch):
    no_step(monkeypatch)
    with pytest.raises(GcavInputError, match="d_in=32.*width 64"): train_sae(store, sae=make_sae("topk", 32, 64, k=4), training_tokens=512, batch_size=64, progress=False)
    bad = data(); bad[5, 3] = float("inf")
    with pytest.raises(GcavInputError, match="NaN/inf"): train_sae(bad, training_tokens=512, batch_size=64, progress=False)
    with pytest.raises(GcavInputError, match="empty"): train_sae(torch.zeros(0, 16), training_tokens=512, batch_size=64, progress=False)
    with pytest.raises(GcavInputError, match="excluded"): train_sae(store, exclude_tokens=list(range(49152)), training_tokens=512, batch_size=64, progress=False)
    with pytest.raises(UnknownNameError, match="no hook"): train_sae(store, hook="blocks.0.hook_resid_post", training_tokens=512, batch_size=64, progress=False)

def test_evaluate_bad_input_fails_before_the_evaluation_passes(tiny, held):
    sae = make_sae("topk", 64, 128, k=4)
    calls = []
    with tiny.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda a, hook: calls.append(a.shape[1]))]):
        with pytest.raises(GcavInputError, match="d_in=32"): evaluate_sae(make_sae("topk", 32, 64, k=4), tiny, held, HOOK, progress=False)
        with pytest.raises(UnknownNameError): evaluate_sae(sae, tiny, held, "blocks.9.hook_resid_post", progress=False)
        with pytest.raises(GcavInputError, match="names no hook"): evaluate_sae(sae, tiny, held, progress=False)
        with pytest.raises(GcavInputError, match="int tensor"): evaluate_sae(sae, tiny, held.float(), HOOK, progress=False)
        with pytest.raises(GcavInputError, match="excluded"): evaluate_sae(sae, tiny, held, HOOK, exclude_tokens=held.unique().tolist(), progress=False)
    assert all(n <= 2 for n in calls)                                   # only the two-token width probes ran

@pytest.mark.parametrize("arch, kw", [("topk", dict(k=4)), ("standard", {}), ("jumprelu", {}), ("batchtopk", dict(k=4))])
def test_same_seed_same_sae(arch, kw, store):
    a, ha = train_sae(store, architecture=arch, d_sae=128, training_tokens=1024, batch_size=128, seed=3, progress=False, **kw)
    b, hb = train_sae(store, architecture=arch, d_sae=128, training_tokens=1024, batch_size=128, seed=3, progress=False, **kw)
    c, _ = train_sae(store, architecture=arch, d_sae=128, training_tokens=1024, batch_size=128, seed=4, progress=False, **kw)
    for k, v in a.state_dict().items(): assert torch.equal(v, b.state_dict()[k]), k
    assert ha.equals(hb)
    assert not torch.equal(a.W_dec, c.W_dec)

def test_train_sae_equals_saelens_fit_on_the_same_batches():
    "Our loop around SAETrainer.step is sae-lens's fit: the same batches give the same weights."
    from sae_lens import SAETrainer
    X = data(4096, 16, seed=1)
    ours, _ = train_sae(X, architecture="topk", d_sae=32, k=4, training_tokens=2048, batch_size=128, seed=0, progress=False,
                        normalize_activations="none")
    sae = make_sae("topk", 16, 32, k=4, seed=0, normalize_activations="none")
    from gcav_nb.dictionaries.core import _trainer_config
    trainer = SAETrainer(_trainer_config(16, 128, 3e-4, 0, 0, "cpu", None), sae, activation_batches(X, batch_size=128, seed=0))
    with torch.random.fork_rng():
        torch.manual_seed(0); trainer.fit()
    ref = inference_sae(trainer.sae)
    for k, v in ours.state_dict().items(): torch.testing.assert_close(v, ref.state_dict()[k], rtol=1e-5, atol=1e-6)

def test_save_load_round_trip_and_corrupt_files(tmp_path, store):
    sae, _ = train_sae(store, architecture="jumprelu", d_sae=128, training_tokens=1024, batch_size=128, progress=False)
    back = load_sae(save_sae(sae, tmp_path / "sae"))
    x = store.read(0, HOOK)[:50]
    torch.testing.assert_close(back.decode(back.encode(x)), sae.decode(sae.encode(x)))
    meta = json.loads((tmp_path / "sae" / "cfg.json").read_text())["metadata"]
    assert (meta["hook_name"], meta["model_name"], meta["context_size"], meta["prepend_bos"]) == (HOOK, "tiny-llama", 64, True)
    (tmp_path / "sae" / "cfg.json").write_text("{not json")
    with pytest.raises(GcavInputError, match="corrupt"): load_sae(tmp_path / "sae")
    with pytest.raises(FileNotFoundError, match="missing"): load_sae(tmp_path / "none")
    nan = make_sae("topk", 16, 32, k=4)
    with torch.no_grad(): nan.W_dec[0, 0] = float("nan")
    with pytest.raises(GcavInputError, match="NaN"): save_sae(nan, tmp_path / "nan")

def test_latent_tools_bad_input(tiny, store):
    sae, _ = train_sae(store, architecture="topk", d_sae=128, k=4, training_tokens=1024, batch_size=128, progress=False)
    with pytest.raises(GcavInputError, match="out of range"): top_contexts(sae, store, tiny, latents=[500])
    with pytest.raises(GcavInputError, match="d_in=32"): top_contexts(make_sae("topk", 32, 64, k=4), store, tiny, hook=HOOK)
    with pytest.raises(GcavInputError, match="out of range"): vocab_projection(sae, tiny, [-1])
    tc = top_contexts(sae, store, tiny, k=2)
    assert set(tc.columns) == {"latent", "rank", "activation", "token", "context"} and len(tc) > 0


def test_train_sae_checks_an_sae_that_declares_a_wider_data_width():
    "A training SAE with `data_width` (g-SAE: rows [x ‖ grad]) is checked against that width, and must not scale its rows."
    sae = make_sae("topk", 16, 32, k=4, normalize_activations="none"); sae.data_width = 32
    with pytest.raises(GcavInputError, match="width 32 .d_in=16.*width 16"): train_sae(torch.randn(256, 16), sae=sae, training_tokens=512, batch_size=64, progress=False)
    scaled = make_sae("topk", 16, 32, k=4); scaled.data_width = 32
    with pytest.raises(GcavInputError, match="normalize_activations='none'"): train_sae(torch.randn(256, 32), sae=scaled, training_tokens=512, batch_size=64, progress=False)
