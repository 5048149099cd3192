"""Bad-input matrix, Bridge-vs-HF parity (gradients, generation) and hook clean-up for gcav_nb.models, on tiny models."""
import warnings
import pytest
import torch
from transformers import AutoModelForCausalLM
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.models import (load_model, wrap_module, hook_names, resolve_hooks, layer_hooks, tokenize, token_id,
                            generate, model_info, HookedModule, _bridge_vs_hf_grads)

@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-llama", device="cpu")

@pytest.fixture(scope="module")
def tiny_gpt2():
    return load_model("tiny-gpt2", device="cpu")

@pytest.fixture(scope="module")
def cnn():
    return load_model("tiny-cnn")

@pytest.mark.parametrize("name,err,contains", [
    ("tiny-lama", UnknownNameError, "tiny-llama"),
    ("smollm3", UnknownNameError, "smollm2-135m"),
    ("", UnknownNameError, "known"),
    (3, TypeError, "str"),
    (None, TypeError, "str"),
])
def test_load_model_rejects_bad_names(name, err, contains):
    "Unknown or wrongly typed model names fail at once, listing the known names."
    with pytest.raises(err, match=contains): load_model(name)

@pytest.mark.parametrize("device,err", [("gpu", GcavInputError), ("cuda:99", GcavInputError), ("tpu", GcavInputError),
                                        ("", GcavInputError), (0.5, TypeError)])
def test_load_model_rejects_bad_devices(device, err):
    "A wrong device string fails before any weights are read."
    if device == "cuda:99" and not torch.cuda.is_available(): pass  # still an error: no CUDA at all
    with pytest.raises(err): load_model("tiny-llama", device=device)

@pytest.mark.parametrize("dtype", ["float32", 32, "fp16"])
def test_load_model_rejects_bad_dtypes(dtype):
    "dtype must be a torch.dtype."
    with pytest.raises(TypeError, match="torch.dtype"): load_model("tiny-llama", dtype=dtype)

@pytest.mark.parametrize("hooks,contains", [
    ("blocks.0.hook_resid_pst", "blocks.0.hook_resid_post"),
    ("blocks.9.hook_resid_post", "blocks."),
    ("blocks.*.hook_nothing", "unknown hook pattern"),
    (["hook_embed", "blokcs.1.hook_resid_post"], "blocks.1.hook_resid_post"),
    (lambda n: False, "matched none"),
])
def test_unknown_hooks_suggest_close_matches(tiny, hooks, contains):
    "Unknown hook names raise UnknownNameError naming close matches."
    with pytest.raises(UnknownNameError, match=contains.replace(".", r"\.").replace("*", r"\*")): resolve_hooks(tiny, hooks)

@pytest.mark.parametrize("hooks", [3, [], [3], None])
def test_resolve_hooks_rejects_wrong_types(tiny, hooks):
    "Hook specs of the wrong type are a TypeError."
    with pytest.raises(TypeError): resolve_hooks(tiny, hooks)

@pytest.mark.parametrize("layers,err", [([4], GcavInputError), ([-5], GcavInputError), (["0"], TypeError), ([1.0], TypeError)])
def test_layer_hooks_rejects_bad_layers(tiny, layers, err):
    "Layer indices out of range or of the wrong type fail."
    with pytest.raises(err): layer_hooks(tiny, layers=layers)

def test_hook_names_are_in_layer_order(tiny):
    "resolve_hooks returns the model's layer order whatever order the user gave."
    got = resolve_hooks(tiny, ["blocks.3.hook_resid_post", "blocks.0.hook_resid_pre", "hook_embed"])
    assert got == ["hook_embed", "blocks.0.hook_resid_pre", "blocks.3.hook_resid_post"]
    names = hook_names(tiny)
    idx = [names.index(f"blocks.{l}.hook_resid_post") for l in range(4)]
    assert idx == sorted(idx)

@pytest.mark.parametrize("text", [" antidisestablishmentarianism", "", " New York"])
def test_token_id_refuses_split_targets(tiny, text):
    "A target word the tokenizer splits (or empty) is refused, showing the pieces."
    with pytest.raises(GcavInputError, match="tokens"): token_id(tiny, text)

def test_token_id_rejects_non_strings(tiny):
    "token_id needs a string."
    with pytest.raises(TypeError): token_id(tiny, 5)

@pytest.mark.parametrize("texts,kw,err,contains", [
    (["ok", "word " * 400], {}, GcavInputError, "text 1 is"),
    (["ok"], {"max_length": 1}, GcavInputError, "text 0 is"),
    ([], {}, GcavInputError, "empty"),
    (["ok", None], {}, TypeError, r"texts\[1\]"),
    (42, {}, TypeError, "list of strings"),
    (["ok"], {"padding_side": "middle"}, GcavInputError, "middle"),
    (["ok"], {"on_long": "drop"}, GcavInputError, "drop"),
])
def test_tokenize_bad_input(tiny, texts, kw, err, contains):
    "Over-long texts are refused by default naming index and length; other bad input fails clearly."
    with pytest.raises(err, match=contains): tokenize(tiny, texts, **kw)

def test_tokenize_truncates_with_warning_on_request(tiny):
    "on_long='truncate' keeps the first max_length tokens and warns."
    with pytest.warns(UserWarning, match="truncated 1"):
        toks, mask = tokenize(tiny, ["ok", "word " * 400], on_long="truncate", max_length=16)
    assert toks.shape == (2, 16) and mask[1].sum() == 16 and mask[0].sum() == 2

@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("fixture", ["tiny", "tiny_gpt2"])
def test_tokenize_matches_bridge_to_tokens(request, fixture, side):
    "Unpadded tokens equal the Bridge's to_tokens (BOS prepended the same way), padding on either side."
    m = request.getfixturevalue(fixture)
    texts = ["The sentiment of this review is", "Hot", "It was a cold day and"]
    toks, mask = tokenize(m, texts, padding_side=side)
    for i, t in enumerate(texts):
        ref = m.to_tokens(t)[0]
        got = toks[i][mask[i].bool()]
        assert torch.equal(got, ref)
        if side == "left": assert mask[i, -1] == 1

@pytest.mark.parametrize("fixture", ["tiny", "tiny_gpt2"])
def test_bridge_gradients_match_hf_at_all_layers(request, fixture):
    "d logit / d residual at every layer through the Bridge equals a plain HF model's (output_hidden_states) within 1e-4."
    m = request.getfixturevalue(fixture)
    hf = AutoModelForCausalLM.from_pretrained(m.gcav_source, dtype=torch.float32).eval()
    assert _bridge_vs_hf_grads(m, hf, "The weather today is very", token_id(m, " cold")) < 1e-4

@pytest.mark.parametrize("fixture", ["tiny", "tiny_gpt2"])
def test_generate_matches_hf_greedy(request, fixture):
    "generate() gives the same greedy tokens as HF generate on a plain copy of the weights."
    m = request.getfixturevalue(fixture)
    hf = AutoModelForCausalLM.from_pretrained(m.gcav_source, dtype=torch.float32).eval()
    prompt = "What is the capital of France? The capital is"
    ids = tokenize(m, [prompt])[0]
    ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                      pad_token_id=m.tokenizer.eos_token_id)[0, ids.shape[1]:].tolist()
    got = generate(m, prompt, max_new_tokens=8, return_tokens=True)
    assert got == ref[:len(got)]

def test_generate_applies_hooks_and_removes_them(tiny):
    "A forward hook changes generated tokens, and the model is clean afterwards."
    v = torch.randn(tiny.cfg.d_model, generator=torch.Generator().manual_seed(0)) * 50
    base = generate(tiny, "Hello there", max_new_tokens=4, return_tokens=True)
    steered = generate(tiny, "Hello there", max_new_tokens=4, return_tokens=True,
                       fwd_hooks=[("blocks.1.hook_resid_post", lambda t, hook: t + v)])
    assert steered != base
    assert generate(tiny, "Hello there", max_new_tokens=4, return_tokens=True) == base

def _boom(t, hook): raise RuntimeError("boom in hook")

def test_bridge_hooks_removed_after_error(tiny):
    "An exception inside a hook leaves no hook behind on the Bridge."
    ids = tiny.to_tokens("hello")
    with torch.no_grad(): ref = tiny(ids)
    with pytest.raises(RuntimeError, match="boom"):
        tiny.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_resid_post", _boom)])
    with pytest.raises(RuntimeError, match="boom"):
        with tiny.hooks(fwd_hooks=[("blocks.1.hook_resid_post", _boom)]): tiny(ids)
    with torch.no_grad(): assert torch.equal(tiny(ids), ref)

def test_wrapped_module_hooks_removed_after_error(cnn):
    "An exception inside a hook leaves no hook behind on a wrapped CNN (run_with_hooks and hooks())."
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(RuntimeError, match="boom"): cnn.run_with_hooks(x, fwd_hooks=[("conv1", _boom)])
    with pytest.raises(RuntimeError, match="boom"):
        with cnn.hooks(fwd_hooks=[("conv2", _boom)]): cnn(x)
    assert cnn._handles == [] and all(not m._forward_hooks for m in cnn.model.modules())
    cnn(x)  # runs clean

@pytest.mark.parametrize("hooks,err", [([("conv9", print)], UnknownNameError), ([("conv*x", print)], UnknownNameError),
                                       ([(3, print)], TypeError)])
def test_wrapped_module_bad_hooks_fail_before_running(cnn, hooks, err):
    "Bad hook names on a wrapped module fail before the forward pass, and nothing stays registered."
    with pytest.raises(err): cnn.run_with_hooks(torch.randn(1, 3, 32, 32), fwd_hooks=hooks)
    assert cnn._handles == []

@pytest.mark.parametrize("obj,err", [("not a module", TypeError), (42, TypeError)])
def test_wrap_module_rejects_non_modules(obj, err):
    "wrap_module needs an nn.Module."
    with pytest.raises(err): wrap_module(obj)

def test_wrap_module_rejects_unknown_layers():
    "layers= must name real submodules; the error suggests close ones."
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with pytest.raises(UnknownNameError, match="'0'"): wrap_module(net, layers=["00"])
    assert wrap_module(net).layers == ["0", "2"]

def test_wrapped_module_backward_hooks_see_gradients(cnn):
    "bwd_hooks receive d(output)/d(activation), equal to autograd.grad on the same activation."
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    got, acts = {}, {}
    def keep(t, hook): acts[hook.name] = t
    def g(grad, hook): got[hook.name] = grad.clone()
    with cnn.hooks(fwd_hooks=[("conv2", keep)], bwd_hooks=[("conv2", g)]):
        out = cnn(x)[:, 1].sum()
        ref = torch.autograd.grad(out, acts["conv2"], retain_graph=True)[0]
        out.backward()
    assert torch.allclose(got["conv2"], ref)

def test_model_info_and_revision(tiny, cnn):
    "model_info carries name, revision and sizes; same weights give the same revision."
    info = model_info(tiny)
    assert info["name"] == "tiny-llama" and info["n_layers"] == 4 and len(info["revision"]) == 12
    assert model_info(cnn)["revision"] == load_model("tiny-cnn").gcav_revision
    assert isinstance(cnn, HookedModule)

def test_tokenize_needs_a_language_model(cnn):
    "tokenize/token_id/generate on a CNN say that a language model is needed."
    with pytest.raises(TypeError, match="tokenizer"): tokenize(cnn, ["x"])
    with pytest.raises(TypeError, match="tokenizer"): generate(cnn, "x")

def test_hub_code_path_on_a_local_folder(tiny):
    "A local HF folder goes through the same boot path as hub names (no network)."
    m = load_model(tiny.gcav_source)
    ids = tiny.to_tokens("hello")
    with torch.no_grad(): assert torch.allclose(m(ids), tiny(ids))
    assert m.gcav_name == tiny.gcav_source and m.gcav_revision == tiny.gcav_revision

def test_generate_rejects_unknown_hooks_and_bad_args(tiny):
    "generate resolves hook names first (close-match error) and validates max_new_tokens and prompt type."
    with pytest.raises(UnknownNameError, match="blocks.1.hook_resid_post"):
        generate(tiny, "hi", fwd_hooks=[("blocks.1.hook_resid_pots", lambda t, hook: t)])
    with pytest.raises(GcavInputError): generate(tiny, "hi", max_new_tokens=0)
    with pytest.raises(TypeError): generate(tiny, ["hi"])
