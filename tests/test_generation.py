"""gcav_nb.generation.generate: KV cache vs no cache vs transformers' generate, batching, hooks, sampling and bad input."""
import pytest
import torch
from transformers import AutoModelForCausalLM
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.generation import generate
from gcav_nb.models import load_model, tokenize

PROMPTS = ["The capital of France is", "Hi", "Once upon a time, in a small village by the sea, there"]

@pytest.fixture(scope="module")
def smol():
    return load_model("smollm2-135m", device="cpu")

def _hf_greedy(model, prompts, n):
    "transformers' own greedy generate on a plain HF copy of the weights, same left-padded tokens; new ids cut after EOS."
    hf = AutoModelForCausalLM.from_pretrained(model.gcav_source, dtype=torch.float32).eval()
    toks, mask = tokenize(model, prompts, padding_side="left")
    out = hf.generate(toks, attention_mask=mask, max_new_tokens=n, do_sample=False, pad_token_id=model.tokenizer.eos_token_id)
    eos = model.tokenizer.eos_token_id
    return [x[:x.index(eos) + 1] if eos in x else x for x in out[:, toks.shape[1]:].tolist()]

@pytest.mark.parametrize("fixture,prompts,n", [("tiny", PROMPTS, 12), ("tiny_gpt2", PROMPTS, 12),
                                               ("smol", ["The capital of France is"], 6)])
def test_cache_on_equals_cache_off_equals_transformers(request, fixture, prompts, n):
    "Greedy tokens with the KV cache == without it == transformers' generate on the same weights; none empty."
    m = request.getfixturevalue(fixture)
    on = generate(m, prompts, max_new_tokens=n, return_tokens=True)
    assert all(len(x) >= 1 for x in on) and sum(map(len, on)) > len(prompts)   # an empty output cannot pass
    assert on == generate(m, prompts, max_new_tokens=n, return_tokens=True, use_cache=False)
    assert on == _hf_greedy(m, prompts, n)

def test_smollm2_writes_paris(smol):
    "SmolLM2 continues 'The capital of France is' with Paris (the Bridge's own cached generate wrote 'Paris-------')."
    out = generate(smol, "The capital of France is", max_new_tokens=6)
    assert "Paris" in out and "---" not in out

def test_batched_equals_one_by_one(tiny):
    "A batch gives what each prompt gives alone, in the order of the prompts, for any batch size."
    one = [generate(tiny, p, max_new_tokens=10, return_tokens=True) for p in PROMPTS]
    assert all(len(x) == 10 for x in one)
    for bs in (1, 2, 32): assert generate(tiny, PROMPTS, max_new_tokens=10, return_tokens=True, batch_size=bs, progress=False) == one

def test_zero_steering_changes_nothing_large_changes_output(tiny):
    "A zero vector added at a hook leaves the tokens unchanged; a large one changes them, with and without the cache."
    v = torch.randn(tiny.cfg.d_model, generator=torch.Generator().manual_seed(0))
    base = generate(tiny, PROMPTS, max_new_tokens=10, return_tokens=True)
    zero = generate(tiny, PROMPTS, max_new_tokens=10, return_tokens=True, fwd_hooks=[("blocks.1.hook_resid_post", lambda t, hook: t + 0 * v)])
    big = [("blocks.1.hook_resid_post", lambda t, hook: t + 50 * v)]
    steered = generate(tiny, PROMPTS, max_new_tokens=10, return_tokens=True, fwd_hooks=big)
    assert zero == base and steered != base
    assert generate(tiny, PROMPTS, max_new_tokens=10, return_tokens=True, fwd_hooks=big, use_cache=False) == steered
    assert generate(tiny, PROMPTS, max_new_tokens=10, return_tokens=True) == base   # hooks removed

def test_hooks_fire_at_every_step(tiny):
    "A hook sees the prompt pass, then one position per new token."
    calls = []
    generate(tiny, "Hello there", max_new_tokens=5, fwd_hooks=[("blocks.0.hook_resid_post", lambda t, hook: calls.append(t.shape[1]))])
    assert calls == [int(tokenize(tiny, ["Hello there"])[1].sum())] + [1] * 4

def test_hooks_removed_after_an_error(tiny):
    "A hook that raises leaves no hook behind."
    base = generate(tiny, "Hi", max_new_tokens=3, return_tokens=True)
    def boom(t, hook): raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"): generate(tiny, "Hi", fwd_hooks=[("blocks.0.hook_resid_post", boom)])
    assert generate(tiny, "Hi", max_new_tokens=3, return_tokens=True) == base

def test_stops_at_eos(tiny):
    "A row that writes EOS stops there."
    eos = tiny.tokenizer.eos_token_id
    def force(t, hook): t[..., eos] += 1e4; return t
    assert generate(tiny, PROMPTS, max_new_tokens=8, return_tokens=True, fwd_hooks=[("unembed.hook_out", force)]) == [[eos]] * 3

def test_sampling_is_seeded(tiny):
    "Same seed, same text; another seed, other text; a one-token nucleus is greedy."
    kw = dict(max_new_tokens=10, do_sample=True, temperature=1.5)
    s0 = generate(tiny, PROMPTS, seed=0, **kw)
    assert generate(tiny, PROMPTS, seed=0, **kw) == s0 and generate(tiny, PROMPTS, seed=1, **kw) != s0
    greedy = generate(tiny, PROMPTS, max_new_tokens=10, return_tokens=True)
    assert generate(tiny, PROMPTS, max_new_tokens=10, do_sample=True, top_p=1e-6, seed=5, return_tokens=True) == greedy

@pytest.mark.parametrize("args,kw,err,contains", [
    ("hi", dict(fwd_hooks=[("blocks.1.hook_resid_pots", print)]), UnknownNameError, "blocks.1.hook_resid_post"),
    ("hi", dict(fwd_hooks=[print]), TypeError, "pair"),
    ([], {}, GcavInputError, "empty list"),
    (["hi", 3], {}, TypeError, r"prompts\[1\]"),
    (42, {}, TypeError, "str or a list"),
    ("hi", dict(max_new_tokens=0), GcavInputError, "max_new_tokens must be >= 1"),
    ("hi", dict(max_new_tokens=2.0), TypeError, "max_new_tokens must be an int"),
    (["hi", ""], {}, GcavInputError, "prompt 1 .* has no tokens"),
    (["hi", "word " * 250], dict(max_new_tokens=10), GcavInputError, "n_ctx=256"),
    (["word " * 300], {}, GcavInputError, "text 0 is"),
    ("hi", dict(do_sample=True, temperature=0), GcavInputError, "temperature"),
    ("hi", dict(do_sample=True, top_p=0), GcavInputError, "top_p"),
    ("hi", dict(batch_size=0), GcavInputError, "batch_size"),
    ("hi", dict(do_sample="yes"), TypeError, "do_sample"),
])
def test_bad_input_fails_before_any_forward(tiny, args, kw, err, contains):
    "Bad arguments raise a clear error before the model runs."
    calls = []
    h = tiny.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(err, match=contains): generate(tiny, args, **kw)
    finally: h.remove()
    assert calls == []

def test_generate_needs_a_language_model():
    "A CNN is refused."
    with pytest.raises(TypeError, match="language model"): generate(load_model("tiny-cnn"), "hi")
