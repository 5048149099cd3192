"""gcav_nb.steering.breaking_bad (SAE-latent detoxification): bad input fails early (before any forward pass), the clamp
edit against its formula, the latent vector against W_dec, the model restored after an evaluation, and (cpu) the
direction of the effect the notebook found on SmolLM2: steering down the toxic latents lowers P(insult) more than a
same-length random direction and than the same number of random latents."""
import math
import pytest
import torch
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.dictionaries.core import make_sae
from gcav_nb.steering.core import add, choice_probs, random_like
from gcav_nb.steering.breaking_bad import (INSULTS, contrast_texts, toxic_prompts, insult_ids, toxicity_saes, latent_contrast,
                                           latent_vector, clamp_latents, detox_eval)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")
H1 = "blocks.1.hook_resid_post"

from conftest import ForwardRan, tripwire as _tripwire

@pytest.fixture(scope="module")
def sae(tiny): return make_sae("topk", tiny.cfg.d_model, 32, k=4, seed=0)

BAD_DATA = {
    "pairs zero": (lambda: contrast_texts(0), GcavInputError, "positive int"),
    "pairs bool": (lambda: contrast_texts(True), GcavInputError, "positive int"),
    "prompts str": (lambda: toxic_prompts("4"), GcavInputError, "positive int"),
}

@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_bad_data_is_refused(case):
    fn, exc, msg = BAD_DATA[case]
    with pytest.raises(exc, match=msg): fn()

BAD_MODEL = {
    "no words": (lambda m, s: insult_ids(m, []), GcavInputError, "non-empty"),
    "no single-token word": (lambda m, s: insult_ids(m, ["imbecile"]), GcavInputError, "single token"),
    "no docs": (lambda m, s: toxicity_saes(m, H1, [], [32]), GcavInputError, "non-empty"),
    "empty positive": (lambda m, s: latent_contrast(s, m, [], ["a b"], H1), GcavInputError, "positive"),
    "latent out of range": (lambda m, s: latent_vector(s, [32], hook=H1), GcavInputError, "out of range"),
    "no latents": (lambda m, s: latent_vector(s, [], hook=H1), GcavInputError, "non-empty"),
    "weights mismatch": (lambda m, s: latent_vector(s, [0, 1], [1.0], H1), GcavInputError, "weights"),
    "alpha nan": (lambda m, s: clamp_latents(m, s, [0], math.nan, H1), GcavInputError, "finite"),
    "alpha bool": (lambda m, s: clamp_latents(m, s, [0], True, H1), GcavInputError, "finite"),
    "clamp wrong width": (lambda m, s: clamp_latents(m, s, [0], 1.0, "blocks.1.mlp.hook_post"), GcavInputError, "width"),
    "clamp unknown hook": (lambda m, s: clamp_latents(m, s, [0], 1.0, "blocks.9.hook_resid_post"), Exception, "blocks.9"),
    "eval no prompts": (lambda m, s: detox_eval(m, []), GcavInputError, "prompts"),
    "eval empty prompt": (lambda m, s: detox_eval(m, ["You", ""]), GcavInputError, "prompts"),
    "eval n_gen 0": (lambda m, s: detox_eval(m, ["You"], n_gen=0), GcavInputError, "n_gen"),
}

@pytest.mark.parametrize("case", BAD_MODEL, ids=list(BAD_MODEL))
def test_bad_model_input_fails_before_any_forward(case, tiny, sae):
    fn, exc, msg = BAD_MODEL[case]
    with _tripwire(tiny):
        with pytest.raises(exc, match=msg): fn(tiny, sae)

def test_clamp_removes_alpha_times_the_latents_contribution(tiny, sae):
    iv = clamp_latents(tiny, sae, [1, 5], 2.0, H1)
    x = torch.randn(3, 4, tiny.cfg.d_model)
    z = sae.encode(x)[..., [1, 5]]
    torch.testing.assert_close(iv.edit(x), x - 2.0 * z @ sae.W_dec[[1, 5]], rtol=1e-5, atol=1e-5)

def test_latent_vector_is_the_weighted_decoder_sum(sae):
    v = latent_vector(sae, [0, 2], [3.0, -1.0], H1)
    torch.testing.assert_close(v.direction * v.norm, (3 * sae.W_dec[0] - sae.W_dec[2]).detach(), rtol=1e-5, atol=1e-5)

def test_detox_eval_restores_the_model(tiny, sae):
    ps = toxic_prompts(3)
    before = choice_probs(tiny, ps, (" the", " a"))
    m, g = detox_eval(tiny, ps, [clamp_latents(tiny, sae, [0, 1], 4.0, H1)], n_gen=1, max_new_tokens=2)
    assert 0 <= m["p_toxic"] <= 1 and len(g) == 1
    torch.testing.assert_close(choice_probs(tiny, ps, (" the", " a")), before)

@cpu_only
def test_cpu_toxic_latents_beat_random_controls_on_smollm2():
    "cpu: the notebook's SAE (cached by toxicity_saes, or retrained with the same arguments), |K|=8, mid tier (0.25 x median ||h||, below saturation)."
    import numpy as np
    from gcav_nb.models import load_model
    from gcav_nb.activations import collect
    from gcav_nb.store import corpus_documents
    m = load_model("smollm2-135m"); H = "blocks.15.hook_resid_post"
    pairs = contrast_texts(64, seed=0); prompts = toxic_prompts(48, seed=1)
    docs = corpus_documents("brown")[:-40] + pairs.toxic.tolist() + pairs.neutral.tolist()
    s = toxicity_saes(m, H, docs, [4 * m.cfg.d_model, 16 * m.cfg.d_model], k=32, ctx=128, n_tokens=49_152, training_tokens=98_304, batch_size=256, seed=0)[4 * m.cfg.d_model]
    lc = latent_contrast(s, m, pairs.toxic.tolist(), pairs.neutral.tolist(), H)
    K, W = lc.latent[:8].tolist(), lc["diff"][:8].tolist()
    acts = collect(m, pairs.neutral.tolist(), H, pooling="all", progress=False)
    h = float(acts[H][:, 1:][acts.mask[:, 1:].bool()].norm(dim=-1).median())
    live = lc[(lc.pos + lc.neg) > 0].latent.to_numpy()
    r_lat = np.random.default_rng(0).choice(np.setdiff1d(live, K), size=len(K), replace=False).tolist()
    v = latent_vector(s, K, W, H)
    p = {k: detox_eval(m, prompts, ivs, n_gen=1, max_new_tokens=1)[0]["p_toxic"] for k, ivs in
         {"none": [], "sae": [add(m, v, -0.25 * h)], "random dir": [add(m, random_like(v, seed=7), -0.25 * h)], "random latents": [add(m, latent_vector(s, r_lat, W, H), -0.25 * h)]}.items()}
    assert p["sae"] < p["none"], p
    assert p["sae"] < min(p["random dir"], p["random latents"]), p
