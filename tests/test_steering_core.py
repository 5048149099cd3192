"""gcav_nb.steering.core.next_token_logits: the last real token's logits (right padding never leaks), the same numbers as
`choice_probs(..., return_logits=True)` and as the model alone, interventions active and removed, bad input before any
forward pass."""
import pytest
import torch
from gcav_nb.config import GcavInputError
from gcav_nb.models import tokenize
from gcav_nb.steering.core import add, as_vector, choice_probs, next_token_logits, steer

from conftest import tripwire as _tripwire

PROMPTS = ["The weather today is", "She said that the old house by the river was", "Hi"]
H1 = "blocks.1.hook_resid_post"

def test_last_real_token_of_each_prompt(tiny):
    "Each row equals the model's logits at the prompt's last token when the prompt runs alone (no padding)."
    z = next_token_logits(tiny, PROMPTS, batch_size=2)
    assert z.shape == (len(PROMPTS), tiny.cfg.d_vocab) and z.dtype == torch.float32
    with torch.no_grad():
        for i, p in enumerate(PROMPTS):
            torch.testing.assert_close(z[i], tiny(tokenize(tiny, [p])[0])[0, -1].float(), atol=1e-4, rtol=1e-4)

def test_same_numbers_as_choice_probs_logits(tiny):
    "next_token_logits is exactly what choice_probs(..., return_logits=True) returns, steered or not, for any batch size."
    v = as_vector(torch.randn(tiny.cfg.d_model, generator=torch.Generator().manual_seed(0)), H1)
    for ivs in ([], [add(tiny, v, 50.0)]):
        for bs in (1, 2, 32):
            assert torch.equal(next_token_logits(tiny, PROMPTS, ivs, batch_size=bs), choice_probs(tiny, PROMPTS, (" good", " bad"), ivs, bs, return_logits=True)[1])

def test_interventions_act_and_are_removed_after_an_error(tiny):
    "The interventions change the logits while active; after an exception inside `steer`, the next call is unsteered."
    v = as_vector(torch.randn(tiny.cfg.d_model, generator=torch.Generator().manual_seed(1)), H1)
    clean = next_token_logits(tiny, PROMPTS)
    assert (next_token_logits(tiny, PROMPTS, [add(tiny, v, 50.0)]) - clean).abs().max() > 1e-3
    with pytest.raises(RuntimeError, match="inside"):
        with steer(add(tiny, v, 50.0)):
            raise RuntimeError("an error inside the steering block")
    assert torch.equal(next_token_logits(tiny, PROMPTS), clean)

BAD = {
    "no prompts": (lambda m: next_token_logits(m, []), "empty|non-empty|no text"),
    "prompt longer than context": (lambda m: next_token_logits(m, ["word " * (m.cfg.n_ctx + 1)]), "max_length"),
    "empty prompt without BOS": (lambda m: next_token_logits(m, ["fine", ""], prepend_bos=False), "prompt 1 has no token"),
    "batch_size zero": (lambda m: next_token_logits(m, ["fine"], batch_size=0), "batch_size"),
    "batch_size bool": (lambda m: next_token_logits(m, ["fine"], batch_size=True), "batch_size"),
}

@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_fails_before_any_forward(tiny, case):
    "Each bad input raises GcavInputError naming the bad value, and no forward pass has run."
    fn, msg = BAD[case]
    with _tripwire(tiny), pytest.raises(GcavInputError, match=msg):
        fn(tiny)
