"""gcav_nb.steering.core: the bad-input matrix (every error before any forward pass), the model restored after errors
raised inside `generate`, and interventions that compose."""
import math
import pytest
import torch
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.models import load_model, layer_hooks
from gcav_nb.generation import generate
from gcav_nb.steering.core import (add, project_out, set_neurons, as_vector, random_like, contrast_vectors, choice_probs,
                                   steer, sweep, save_vectors, load_vectors, Reference)

@pytest.fixture(scope="module")
def model(): return load_model("tiny-llama")

class ForwardRan(Exception): pass

def _tripwire(model):
    "A context in which any forward pass raises ForwardRan."
    def boom(a, hook): raise ForwardRan("a forward pass ran")
    return model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", boom)])

H1 = "blocks.1.hook_resid_post"
BAD = {
    "unknown hook": (lambda m: add(m, torch.ones(m.cfg.d_model), 1.0, hook="blocks.1.hook_resid_pots"), UnknownNameError),
    "glob of many hooks": (lambda m: add(m, torch.ones(m.cfg.d_model), 1.0, hook="blocks.*.hook_resid_post"), GcavInputError),
    "wrong width": (lambda m: add(m, torch.ones(m.cfg.d_model + 3), 1.0, hook=H1), GcavInputError),
    "int dtype": (lambda m: add(m, torch.ones(m.cfg.d_model, dtype=torch.int64), 1.0, hook=H1), TypeError),
    "complex dtype": (lambda m: add(m, torch.ones(m.cfg.d_model, dtype=torch.complex64), 1.0, hook=H1), TypeError),
    "2-D vector": (lambda m: add(m, torch.ones(2, m.cfg.d_model), 1.0, hook=H1), GcavInputError),
    "NaN vector": (lambda m: add(m, torch.full((m.cfg.d_model,), math.nan), 1.0, hook=H1), GcavInputError),
    "inf vector": (lambda m: project_out(m, torch.full((m.cfg.d_model,), math.inf), hook=H1), GcavInputError),
    "zero vector": (lambda m: add(m, torch.zeros(m.cfg.d_model), 1.0, hook=H1), GcavInputError),
    "tensor without hook": (lambda m: add(m, torch.ones(m.cfg.d_model), 1.0), GcavInputError),
    "nan scale": (lambda m: add(m, torch.ones(m.cfg.d_model), math.nan, hook=H1), GcavInputError),
    "inf scale": (lambda m: add(m, torch.ones(m.cfg.d_model), -math.inf, hook=H1), GcavInputError),
    "str scale": (lambda m: add(m, torch.ones(m.cfg.d_model), "2", hook=H1), TypeError),
    "bad positions": (lambda m: add(m, torch.ones(m.cfg.d_model), 1.0, hook=H1, positions="after"), GcavInputError),
    "neuron out of range": (lambda m: set_neurons(m, "blocks.0.mlp.hook_post", [m.cfg.d_mlp + 1], 0.0), GcavInputError),
    "nan neuron value": (lambda m: set_neurons(m, "blocks.0.mlp.hook_post", [0], math.nan), GcavInputError),
    "empty contrast set": (lambda m: contrast_vectors(m, [], ["a b", "c d"], H1, progress=False), GcavInputError),
    "blank contrast example": (lambda m: contrast_vectors(m, ["  ", "good"], ["a b", "c d"], H1, progress=False), GcavInputError),
    "tcav without randoms": (lambda m: contrast_vectors(m, ["good", "fine"], ["bad", "awful"], H1, methods="tcav", progress=False), GcavInputError),
    "prompt longer than context": (lambda m: choice_probs(m, ["word " * (m.cfg.n_ctx + 1)], (" good", " bad")), GcavInputError),
    "generate past context": (lambda m: generate(m, ["word " * (m.cfg.n_ctx - 2)], max_new_tokens=10, progress=False), GcavInputError),
    "one choice": (lambda m: choice_probs(m, ["x"], (" good",)), GcavInputError),
    "multi-token choice": (lambda m: choice_probs(m, ["x"], (" good", " extraordinarilyish")), GcavInputError),
    "reference blocks past context": (lambda m: Reference(m, torch.zeros(1, m.cfg.n_ctx + 1, dtype=torch.long)), GcavInputError),
    "sweep nan scale": (lambda m: sweep(m, {"v": as_vector(torch.ones(m.cfg.d_model), H1)}, [1.0, math.nan], ["x"], (" good", " bad")), GcavInputError),
}

@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_fails_before_any_forward(model, case):
    "Each bad input raises its clear error, and no forward pass has run."
    fn, err = BAD[case]
    with _tripwire(model), pytest.raises(err):
        fn(model)

def test_model_restored_after_error_inside_generate(model):
    "An error raised by a hook mid-generation leaves no intervention behind: the next generate is the unsteered one."
    prompts = ["The weather today is", "My favourite food is"]
    clean = generate(model, prompts, max_new_tokens=5, progress=False)
    v = random_like(as_vector(torch.ones(model.cfg.d_model), H1), seed=3)
    n = {"calls": 0}
    def fail_later(a, hook):
        n["calls"] += 1
        if n["calls"] == 3: raise RuntimeError("boom at step 3")
    with pytest.raises(RuntimeError, match="boom"):
        with add(model, v, 300.0), project_out(model, v, hook="blocks.2.hook_resid_post"):
            generate(model, prompts, max_new_tokens=5, progress=False, fwd_hooks=[("blocks.0.hook_resid_post", fail_later)])
    assert generate(model, prompts, max_new_tokens=5, progress=False) == clean
    assert all(len(model.hook_dict[h].fwd_hooks) == 0 for h in layer_hooks(model))

def test_steering_moves_choice_and_random_control_is_same_norm(model):
    "A large add moves the choice probabilities; the same-norm random control has exactly that norm at that hook."
    v = as_vector(torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0)), H1)
    r = random_like(v, seed=1)
    assert (r.norm, r.hook, r.d) == (v.norm, v.hook, v.d) and abs(float(r.direction.norm()) - 1) < 1e-6
    p0 = choice_probs(model, ["I liked it. It was"], (" good", " bad"))
    with steer(add(model, v, 100.0)): p1 = choice_probs(model, ["I liked it. It was"], (" good", " bad"))
    assert float((p1 - p0).abs().max()) > 1e-3

def test_saved_vectors_round_trip_with_provenance(model, tmp_path):
    "save_vectors -> load_vectors keeps the raw vector, hook, method and model; a file is written atomically (no temp left)."
    vs = contrast_vectors(model, ["good day", "great food", "lovely staff"], ["bad day", "awful food", "rude staff"], H1,
                          methods=("mean_diff", "pca"), progress=False)
    p = save_vectors({k: vs[k][H1] for k in vs}, tmp_path/"v.safetensors")
    back = load_vectors(p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["v.safetensors"]
    for k in vs:
        o, b = vs[k][H1], back[k]
        assert torch.allclose(o.direction * o.norm, b.direction * b.norm, atol=1e-5)
        assert (b.hook, b.classifier, b.model, b.concept) == (o.hook, o.classifier, o.model, o.concept)
