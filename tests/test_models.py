"""Bad-input matrix, Bridge-vs-HF gradient parity, the hook resolver, the model registry, BOS and hook clean-up for gcav_nb.models."""
import os, time, uuid, warnings
import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer
import gcav_nb.models as M
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.models import (load_model, wrap_module, hook_names, resolve_hooks, layer_hooks, tokenize, token_id,
                            model_info, HookedModule, register_model, known_models, default_prepend_bos, _bridge_vs_hf_grads)

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

@pytest.mark.parametrize("hooks", [3, [3], None, {"blocks.0.hook_resid_post"}])
def test_resolve_hooks_rejects_wrong_types(tiny, hooks):
    "Hook specs of the wrong type are a TypeError."
    with pytest.raises(TypeError): resolve_hooks(tiny, hooks)

def test_resolve_hooks_refuses_an_empty_list(tiny, cnn):
    "An empty list selects nothing: a clear error, not 'no hooks'."
    for m in (tiny, cnn):
        with pytest.raises(GcavInputError, match="no hooks selected"): resolve_hooks(m, [])

def _net():
    return nn.Sequential(*[nn.Sequential(nn.Linear(2, 2), nn.ReLU()) for _ in range(12)])

@pytest.mark.parametrize("kind", ["plain", "wrapped"])
@pytest.mark.parametrize("spec,want", [
    ("1*", ["1", "10", "11"]),                       # was ['1', '1.0', '1.1', '10', ...] on a plain module, an error on a wrapped one
    ("1.*", ["1.0", "1.1"]),
    ("?", [str(i) for i in range(10)]),
    ("[02].0", ["0.0", "2.0"]),
    ("[!0-8].1", ["9.1"]),
    ("11.**", ["11.0", "11.1"]),
    (["3.1", "2"], ["2", "3.1"]),
    (lambda n: n.startswith("11"), ["11", "11.0", "11.1"]),
])
def test_one_glob_semantics_on_plain_and_wrapped_modules(kind, spec, want):
    "resolve_hooks reads a glob, list or predicate the same way on a plain nn.Module and on its wrap_module wrapper."
    net = _net(); m = net if kind == "plain" else wrap_module(net)
    assert resolve_hooks(m, spec) == want

def test_globs_on_the_bridge(tiny):
    "Sets and single-part stars on Bridge hook names."
    assert resolve_hooks(tiny, "blocks.[02].hook_resid_post") == ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]
    assert resolve_hooks(tiny, "blocks.3.hook_resid_p*") == ["blocks.3.hook_resid_pre", "blocks.3.hook_resid_post"]
    assert "blocks.3.attn.hook_z" in resolve_hooks(tiny, "blocks.3.**")

@pytest.mark.parametrize("kind", ["plain", "wrapped"])
@pytest.mark.parametrize("spec,contains", [("11.00", "did you mean '11.0'"), ("2*.9", "unknown hook pattern '2*.9'"),
                                           (["1", "12"], "unknown hook '12'")])
def test_unknown_names_on_modules_suggest(kind, spec, contains):
    "Unknown names and empty globs on plain and wrapped modules raise UnknownNameError with close matches."
    net = _net(); m = net if kind == "plain" else wrap_module(net)
    with pytest.raises(UnknownNameError) as e: resolve_hooks(m, spec)
    assert contains in str(e.value)

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
    (["ok there"], {"max_length": 1}, GcavInputError, "text 0 is"),
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
    assert toks.shape == (2, 16) and mask[1].sum() == 16 and mask[0].sum() == len(tokenize(tiny, ["ok"])[0][0])

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
    "tokenize/token_id/default_prepend_bos on a CNN say that a language model is needed."
    with pytest.raises(TypeError, match="tokenizer"): tokenize(cnn, ["x"])
    with pytest.raises(TypeError, match="tokenizer"): token_id(cnn, "x")
    with pytest.raises(TypeError, match="tokenizer"): default_prepend_bos(cnn)

def test_hub_code_path_on_a_local_folder(tiny):
    "A local HF folder goes through the same boot path as hub names (no network)."
    m = load_model(tiny.gcav_source)
    ids = tiny.to_tokens("hello")
    with torch.no_grad(): assert torch.allclose(m(ids), tiny(ids))
    assert m.gcav_name == tiny.gcav_source and m.gcav_revision == tiny.gcav_revision

def test_register_model_adds_a_loadable_name():
    "A registered name loads like a built-in one and is listed, with its description."
    name = f"tiny-copy-{uuid.uuid4().hex[:6]}"
    register_model(name, lambda device, dtype: load_model("tiny-llama", device, dtype), "a copy for a test")
    assert name in known_models() and known_models(describe=True)[name] == "a copy for a test"
    assert load_model(name, device="cpu").cfg.n_layers == 4

@pytest.mark.parametrize("name,loader,err,contains", [
    ("tiny-llama", lambda d, t: None, GcavInputError, "already registered"),
    ("org/model", lambda d, t: None, GcavInputError, "hub id"),
    ("", lambda d, t: None, GcavInputError, "non-empty"),
    (" spaced", lambda d, t: None, GcavInputError, "spaces"),
    (3, lambda d, t: None, TypeError, "str"),
    ("fresh-name", "not callable", TypeError, "callable"),
])
def test_register_model_bad_input(name, loader, err, contains):
    "Registering a name twice, a hub-like name, or a non-callable loader fails."
    with pytest.raises(err, match=contains): register_model(name, loader)

def test_builtin_models_are_registered():
    "The built-in names come from the registry, each with a description."
    d = known_models(describe=True)
    for n in ("smollm2-135m", "tiny-llama", "tiny-gpt2", "tiny-cnn", "gpt2", "pythia-70m"): assert d[n]

def test_unknown_name_lists_known_models():
    "An unknown name lists the registered ones."
    with pytest.raises(UnknownNameError, match="known: smollm2-135m, tiny-llama"): load_model("no-such-model")

@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable"])
def test_offline_hub_id_fails_fast(monkeypatch, how):
    "With no hub (HF_HUB_OFFLINE=1, or a connect that fails), an uncached hub id fails in seconds, naming the id."
    if how == "HF_HUB_OFFLINE": monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(M, "_hub_probe", lambda: ("127.0.0.1", 9))  # nothing listens on the discard port
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match="'no-such-org/no-such-model'.*unreachable"): load_model("no-such-org/no-such-model", device="cpu")
    assert time.perf_counter() - t0 < 5

def test_default_prepend_bos_follows_the_stock_tokenizer(tiny):
    "tiny-llama (SmolLM2's tokenizer): no BOS by default; prepend_bos=True adds it; model_info records the default."
    stock = AutoTokenizer.from_pretrained(tiny.gcav_source)
    assert default_prepend_bos(tiny) is False and model_info(tiny)["prepend_bos"] is False
    none, _ = tokenize(tiny, ["Hi there"]); bos, _ = tokenize(tiny, ["Hi there"], prepend_bos=True)
    assert none[0].tolist() == stock("Hi there")["input_ids"]
    assert bos[0].tolist() == [stock.bos_token_id, *none[0].tolist()]

def test_default_prepend_bos_true_for_a_bos_tokenizer():
    "A tokenizer that puts BOS before plain text (Llama 3 style) gives True."
    from types import SimpleNamespace
    class AddsBos:
        bos_token_id = 7
        def __call__(self, text, add_special_tokens=True): return {"input_ids": [7] * add_special_tokens + [11]}
    assert default_prepend_bos(SimpleNamespace(tokenizer=AddsBos())) is True

@pytest.fixture(scope="module")
def smol():
    return load_model("smollm2-135m", device="cpu")

def test_smollm2_has_no_bos_by_default(smol):
    "SmolLM2: tokenize adds no BOS unless asked (the Bridge alone prepends <|im_start|>); model_info says so."
    none, _ = tokenize(smol, ["Hello world"]); bos, _ = tokenize(smol, ["Hello world"], prepend_bos=True)
    assert none[0].tolist() == AutoTokenizer.from_pretrained(smol.gcav_source)("Hello world")["input_ids"]
    assert bos[0, 0].item() == smol.tokenizer.bos_token_id and bos.shape[1] == none.shape[1] + 1
    assert model_info(smol)["prepend_bos"] is False and smol.to_tokens("Hello world").shape == none.shape

def test_smollm2_bridge_gradients_match_hf_at_one_layer(smol):
    "SmolLM2: d logit / d resid_pre at layer 15 through the Bridge equals a plain HF copy's within 1e-4."
    hf = AutoModelForCausalLM.from_pretrained(smol.gcav_source, dtype=torch.float32).eval()
    g = _bridge_vs_hf_grads(smol, hf, "Review: The film was wonderful.\nThe sentiment of this review is", token_id(smol, " positive"), layers=[15])
    assert 0 <= g < 1e-4
