"""gcav_nb.steering.core: the bad-input matrix (every error before any forward pass), the model restored after errors
raised inside `generate`, and interventions that compose."""
import math
import numpy as np
import pytest
import torch
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.models import load_model, layer_hooks
from gcav_nb.generation import generate
from gcav_nb.steering.core import (add, project_out, set_neurons, as_vector, random_like, contrast_vectors, choice_probs,
                                   steer, sweep, save_vectors, load_vectors, Reference)

@pytest.fixture(scope="module")
def model(): return load_model("tiny-llama")

from conftest import ForwardRan, tripwire as _tripwire

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

POS = ["What a lovely day, I adore it.", "Great food and kind staff.", "Wonderful, thank you so much!", "I love this little shop."]
NEG = ["What an awful day, I hate it.", "Terrible food and rude staff.", "Dreadful, never again.", "I loathe this grim shop."]

def test_steering_vectors_library_parity(model):
    """steering-vectors 0.12.2 (installed with `pip install --no-deps`: its metadata pins transformers<5) on the HF model inside
    the Bridge: its mean and PCA aggregators give our mean_diff and pca vectors, and its steered logits equal ours.
    Skipped only where the library is absent; un-skip when tools/install.sh installs it (asked of the lead)."""
    svl = pytest.importorskip("steering_vectors", reason="steering-vectors not installed: pip install --no-deps steering-vectors==0.12.2")
    from gcav_nb.steering.core import from_layers
    H = layer_hooks(model)
    ours = contrast_vectors(model, POS, NEG, H, methods=("mean_diff", "pca"), prepend_bos=True, progress=False)   # the library tokenizes with BOS
    for meth, agg in (("mean_diff", svl.mean_aggregator()), ("pca", svl.pca_aggregator())):
        lib = svl.train_steering_vector(model.original_model, model.tokenizer, list(zip(POS, NEG)), layers=list(range(len(H))), aggregator=agg, batch_size=2)
        got = from_layers(model, lib.layer_activations, source="steering-vectors")
        for h in H:
            want = ours[meth][h].direction * (ours[meth][h].norm if meth == "mean_diff" else 1.0)
            torch.testing.assert_close(got[h].direction * got[h].norm, want, rtol=1e-5, atol=1e-6)
    ids = model.tokenizer(["The weather today is"], return_tensors="pt")["input_ids"]
    with torch.no_grad(), lib.apply(model.original_model, multiplier=3.0): theirs = model.original_model(ids).logits
    with torch.no_grad(), steer(*[add(model, got[h], 3.0 * got[h].norm) for h in H]): mine = model(ids)
    with torch.no_grad(): clean = model(ids)
    assert float((mine - clean).abs().max()) > 1e-3                       # the steering does something ...
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)        # ... and the same thing

def test_repeng_style_plain_arrays_load_and_steer(model, tmp_path):
    """repeng 0.4.0 cannot be installed here (it uses np.float_, removed in NumPy 2); its ControlVector.directions is a dict of
    numpy arrays keyed by block index, negative from the end. Those load through from_layers at the right hooks and steer
    as `coeff x direction`; as a plain safetensors file they load through load_vectors."""
    from gcav_nb.steering.core import from_layers
    from safetensors.torch import save_file
    d = model.cfg.d_model; g = np.random.default_rng(0)
    dirs = {-1: g.standard_normal(d).astype(np.float32), -3: g.standard_normal(d)}    # float32 and float64, as numpy gives them
    vs = from_layers(model, dirs, source="repeng")
    assert list(vs) == ["blocks.3.hook_resid_post", "blocks.1.hook_resid_post"] and {v.classifier for v in vs.values()} == {"repeng"}
    torch.testing.assert_close(vs["blocks.3.hook_resid_post"].direction * vs["blocks.3.hook_resid_post"].norm, torch.from_numpy(dirs[-1]))
    ids = model.tokenizer(["The weather today is"], return_tensors="pt")["input_ids"]
    def by_hand(a, hook): return a + 2.0 * torch.from_numpy(dirs[-1])            # what repeng's set_control(v, 2.0) adds at block 3
    with torch.no_grad():
        with add(model, vs["blocks.3.hook_resid_post"], 2.0 * vs["blocks.3.hook_resid_post"].norm): mine = model(ids)
        with model.hooks(fwd_hooks=[("blocks.3.hook_resid_post", by_hand)]): ref = model(ids)
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
    save_file({"3": torch.from_numpy(dirs[-1])}, str(tmp_path/"plain.safetensors"))
    assert load_vectors(tmp_path/"plain.safetensors")["3"].hook == "blocks.3.hook_resid_post"
    for bad, msg in (({7: torch.ones(d)}, "does not exist"), ({1: torch.ones(d + 1)}, "width"), ({0: torch.ones(d), -4: torch.ones(d)}, "second time"), ({}, "non-empty")):
        with pytest.raises(GcavInputError, match=msg): from_layers(model, bad)

def test_steering_explorer_callbacks_headless(model):
    "Setting each widget's value updates the selection, the generations and the cost; a plain select moves the widgets; the model is restored."
    from gcav_nb.steering.core import SteeringExplorer, Reference, cost as cost_
    from gcav_nb.store import token_blocks
    H = layer_hooks(model)
    vs = contrast_vectors(model, POS, NEG, H, methods=("mean_diff", "pca"), progress=False)
    ref = Reference(model, torch.stack(list(token_blocks(model, "brown", ctx=16, n_tokens=2 * 16, seed=0))))
    prompts = ["The weather today is", "My favourite food is"]
    sx = SteeringExplorer(model, {**vs, "random": {h: random_like(vs["mean_diff"][h], seed=1) for h in H}}, prompts, ref, mults=(-40, 0, 1, 40), max_new_tokens=4)
    clean = generate(model, prompts, max_new_tokens=4, progress=False)
    w = sx.widgets
    assert sx.table.unsteered.tolist() == clean and (w["vector"].value, w["hook"].value, w["mult"].value) == ("mean_diff", H[0], 1.0)
    w["mult"].value = 0.0
    assert sx.table.iloc[:, 2].tolist() == clean and abs(sx.cost.kl) < 1e-9
    w["hook"].value = H[3]; w["mult"].value = 40.0
    v = vs["mean_diff"][H[3]]
    with add(model, v, 40.0 * v.norm): steered = generate(model, prompts, max_new_tokens=4, progress=False)
    assert sx.table.iloc[:, 2].tolist() == steered and sx.cost.hook == H[3]
    assert abs(sx.cost.kl - cost_(ref, [add(model, v, 40.0 * v.norm)])["kl"]) < 1e-6 and sx.cost.kl > 0
    w["vector"].value = "pca"
    assert (sx.vector, sx.hook) == ("pca", H[3]) and sx.cost.scale == pytest.approx(40.0 * vs["pca"][H[3]].norm)
    sx.select(vector="random", mult=-40.0)
    assert (w["vector"].value, w["mult"].value) == ("random", -40.0) and len(w["table"].outputs) == len(w["cost"].outputs) == 1
    assert all(len(model.hook_dict[h].fwd_hooks) == 0 for h in H)
    with pytest.raises(UnknownNameError, match="has no hook"): sx.select(hook="blocks.9.hook_resid_post")
    with pytest.raises(GcavInputError, match="not offered"): sx.select(mult=2.0)
    with pytest.raises(TypeError, match="not ConceptVectors"): SteeringExplorer(model, {"x": {H[0]: torch.ones(3)}}, prompts)
    with pytest.raises(GcavInputError, match="prompts"): SteeringExplorer(model, vs, [])
