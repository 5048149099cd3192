"""gcav_nb.activations: what a notebook cell cannot carry: padding matrices, resume after a crash, corrupt and
mismatched caches, bad input, hook clean-up on error."""
import warnings
import pytest
import torch
import torch.nn as nn
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.models import load_model, wrap_module, tokenize
from gcav_nb.activations import collect, capture, pool, Activations

TEXTS = ["Hi", "The soup was cold and the staff rude.", "Great place!", "A much longer review about bread, soup and the staff.",
         "ok", "Five stars, would eat here again tomorrow.", "No.", "The bread was stale."]

@pytest.fixture(scope="module")
def model(): return load_model("tiny-llama")

def _entry(cache)->"Path":
    "The one request entry inside a cache folder (`<cache>/<model>-<key hash>/`)."
    got = [p for p in cache.iterdir() if p.is_dir()]
    assert len(got) == 1, got
    return got[0]

def _n_hooks(model): return sum(len(getattr(h, "fwd_hooks", [])) for h in model.hook_dict.values())

def _alone(model, hooks, pooling):
    outs = [collect(model, [t], hooks, pooling=pooling, progress=False) for t in TEXTS]
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}

@pytest.mark.parametrize("pooling", ["last", "mean", "all"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_matches_each_text_alone(model, pooling, side):
    "Batched collection (left or right padding) equals running each text alone, for every pooling."
    hooks = "blocks.*.hook_resid_post"
    got = collect(model, TEXTS, hooks, pooling=pooling, padding_side=side, batch_size=3, progress=False)
    alone = _alone(model, hooks, pooling) if pooling != "all" else None
    for k in got:
        g = got[k]
        if pooling == "all":   # alone results are shorter; compare real tokens only
            for i, t in enumerate(TEXTS):
                n = int(got.mask[i].sum()); assert torch.allclose(g[i, :n], collect(model, [t], k, pooling="all", progress=False)[k][0, :n], atol=1e-4)
                assert g[i, n:].abs().sum() == 0
        else: assert torch.allclose(g, alone[k], atol=1e-4), (k, (g - alone[k]).abs().max())

def test_mask_pooling_is_padding_aware(model):
    "A user mask (left-aligned positions) gives the same result under left and right padding."
    toks, am = tokenize(model, TEXTS)
    mask = torch.zeros(len(TEXTS), toks.shape[1]); mask[:, 0] = 1; mask[:3, 1] = 1   # the first token (and the second of the first 3)
    r = collect(model, TEXTS, "blocks.1.hook_resid_post", pooling=mask, padding_side="right", progress=False)
    l = collect(model, TEXTS, "blocks.1.hook_resid_post", pooling=mask, padding_side="left", progress=False)
    assert torch.allclose(r["blocks.1.hook_resid_post"], l["blocks.1.hook_resid_post"], atol=1e-5)

def test_stop_early_changes_nothing(model):
    "Stopping the forward after the last hook gives the same activations and leaves the model intact."
    hooks = "blocks.1.hook_resid_post"
    a = collect(model, TEXTS, hooks, stop_early=True, progress=False)
    b = collect(model, TEXTS, hooks, stop_early=False, progress=False)
    assert torch.equal(a[hooks], b[hooks])
    toks, am = tokenize(model, TEXTS)
    with torch.no_grad(): l1 = model(toks, attention_mask=am)
    collect(model, TEXTS, hooks, progress=False)
    with torch.no_grad(): l2 = model(toks, attention_mask=am)
    assert torch.equal(l1, l2) and _n_hooks(model) == 0

def test_provenance_and_types(model):
    out = collect(model, TEXTS, ["blocks.0.hook_resid_post"], progress=False)
    assert isinstance(out, Activations)
    assert out.meta["model"] == "tiny-llama" and out.meta["pooling"] == "last" and len(out.meta["data_hash"]) == 12
    assert out["blocks.0.hook_resid_post"].dtype == torch.float32 and out["blocks.0.hook_resid_post"].device.type == "cpu"

def test_same_inputs_same_numbers(model):
    a = collect(model, TEXTS, "blocks.*.hook_resid_post", progress=False)
    b = collect(model, TEXTS, "blocks.*.hook_resid_post", progress=False)
    assert all(torch.equal(a[k], b[k]) for k in a)

class _Boom(Exception): pass

def test_resume_after_interruption(model, tmp_path):
    "A run that dies mid-way resumes from its finished batches and gives the uninterrupted result."
    hooks = "blocks.*.hook_resid_post"
    ref = collect(model, TEXTS, hooks, batch_size=2, progress=False)
    calls = {"n": 0}
    def bomb(t, hook):
        calls["n"] += 1
        if calls["n"] == 3: raise _Boom()
    with pytest.raises(_Boom):
        with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", bomb)]):
            collect(model, TEXTS, hooks, batch_size=2, cache=tmp_path/"c", progress=False)
    assert len(list((_entry(tmp_path/"c")/"partial").glob("batch_*.safetensors"))) == 2
    assert _n_hooks(model) == 0
    calls["n"] = -100  # no more bombs; count forwards of the resumed run
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", bomb)]):
        got = collect(model, TEXTS, hooks, batch_size=2, cache=tmp_path/"c", progress=False)
    assert calls["n"] == -100 + 2    # only the 2 unfinished batches ran
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert (_entry(tmp_path/"c")/"acts.safetensors").exists() and not (_entry(tmp_path/"c")/"partial").exists()

def test_cache_hit(model, tmp_path):
    a = collect(model, TEXTS, "blocks.*.hook_resid_post", cache=tmp_path/"c", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = collect(model, TEXTS, "blocks.*.hook_resid_post", cache=tmp_path/"c", progress=False)
    assert all(torch.equal(a[k], b[k]) for k in a)

def test_cache_true_uses_cache_dir(model, tmp_path, monkeypatch):
    monkeypatch.setenv("GCAV_NB_CACHE", str(tmp_path))
    collect(model, TEXTS, "blocks.0.hook_resid_post", cache=True, progress=False)
    assert len(list((tmp_path/"activations").glob("tiny-llama-*/acts.safetensors"))) == 1

def test_truncated_cache_is_rebuilt(model, tmp_path):
    a = collect(model, TEXTS, "blocks.*.hook_resid_post", cache=tmp_path/"c", progress=False)
    f = _entry(tmp_path/"c")/"acts.safetensors"; f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.warns(UserWarning, match="cannot be read"):
        b = collect(model, TEXTS, "blocks.*.hook_resid_post", cache=tmp_path/"c", progress=False)
    assert all(torch.equal(a[k], b[k]) for k in a)

def _forwards(model, fn):
    "Run `fn()` and count the forward passes it makes (calls of the first block's input hook)."
    n = []
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda t, hook: n.append(1))]): out = fn()
    return out, len(n)

def test_one_cache_folder_keeps_every_request(model, tmp_path):
    "Requests for other data, hooks, models or BOS in one explicit folder each keep their entry; a rerun makes 0 forwards."
    other, hook = load_model("tiny-gpt2"), "blocks.0.hook_resid_post"
    runs = [lambda: collect(model, TEXTS, hook, cache=tmp_path/"c", progress=False),
            lambda: collect(model, TEXTS[:5], hook, cache=tmp_path/"c", progress=False),
            lambda: collect(model, TEXTS, "blocks.*.hook_resid_post", cache=tmp_path/"c", progress=False),
            lambda: collect(model, TEXTS, hook, prepend_bos=True, cache=tmp_path/"c", progress=False),
            lambda: collect(other, TEXTS, hook, cache=tmp_path/"c", progress=False)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # no request replaces (or warns about) another
        first = [f() for f in runs]
        assert len(list((tmp_path/"c").glob("*/acts.safetensors"))) == len(runs)
        for f, a in zip(runs, first):
            got, n = _forwards(model, f)
            assert n == 0 and all(torch.equal(got[k], a[k]) for k in a)
    assert torch.allclose(first[4][hook], collect(other, TEXTS, hook, progress=False)[hook])

def test_entry_with_another_requests_key_is_rebuilt(model, tmp_path):
    "A finished file copied into another request's entry (its key says so) is not used: rebuilt with a warning."
    hook = "blocks.0.hook_resid_post"
    collect(load_model("tiny-gpt2"), TEXTS, hook, cache=tmp_path/"g", progress=False)
    collect(model, TEXTS, hook, cache=tmp_path/"c", progress=False)
    (_entry(tmp_path/"c")/"acts.safetensors").write_bytes((_entry(tmp_path/"g")/"acts.safetensors").read_bytes())
    with pytest.warns(UserWarning, match="model: cached 'tiny-gpt2', requested 'tiny-llama'"):
        got = collect(model, TEXTS, hook, cache=tmp_path/"c", progress=False)
    assert torch.allclose(got[hook], collect(model, TEXTS, hook, progress=False)[hook])

def test_same_name_other_weights_gets_its_own_entry(model, tmp_path):
    "Two models with the same registry name but other weights do not share a cache entry."
    hook = "blocks.0.hook_resid_post"
    a = collect(model, TEXTS, hook, cache=tmp_path/"c", progress=False)
    p = next(model.parameters())
    with torch.no_grad(): p.add_(1.0)
    try: b, n = _forwards(model, lambda: collect(model, TEXTS, hook, cache=tmp_path/"c", progress=False))
    finally:
        with torch.no_grad(): p.sub_(1.0)
    assert n == 1 and not torch.equal(a[hook], b[hook])
    assert len(list((tmp_path/"c").glob("*/acts.safetensors"))) == 2

def _interrupted_collect(model, cache)->str:
    "Run a cached `collect` (batch 2) that dies in its third batch, leaving two finished batches; returns its hooks."
    hooks = "blocks.*.hook_resid_post"
    def bomb(t, hook):
        bomb.n += 1
        if bomb.n == 3: raise _Boom()
    bomb.n = 0
    with pytest.raises(_Boom), model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", bomb)]):
        collect(model, TEXTS, hooks, batch_size=2, cache=cache, progress=False)
    return hooks

def test_corrupt_partial_batch_is_recomputed(model, tmp_path):
    hooks = _interrupted_collect(model, tmp_path/"c")
    f = _entry(tmp_path/"c")/"partial"/"batch_00001.safetensors"; f.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="recomputing"):
        got = collect(model, TEXTS, hooks, batch_size=2, cache=tmp_path/"c", progress=False)
    ref = collect(model, TEXTS, hooks, batch_size=2, progress=False)
    assert all(torch.equal(got[k], ref[k]) for k in ref)

def test_nan_activations_name_the_hook(model):
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", lambda t, hook: t * float("nan"))]):
        with pytest.raises(GcavInputError, match="blocks.1.hook_resid_post"):
            collect(model, TEXTS, "blocks.1.hook_resid_post", progress=False)
    assert _n_hooks(model) == 0

def test_unknown_hook(model):
    with pytest.raises(UnknownNameError, match="hook_resid_postt"):
        collect(model, TEXTS, "blocks.0.hook_resid_postt", progress=False)

@pytest.mark.parametrize("data,err,msg", [
    ([], GcavInputError, "empty"),
    ("just one string", TypeError, "list of strings"),
    (["ok", 3], TypeError, "not strings"),
])
def test_bad_text_data(model, data, err, msg):
    with pytest.raises(err, match=msg): collect(model, data, "blocks.0.hook_resid_post", progress=False)

@pytest.mark.parametrize("kw,msg", [(dict(pooling="max"), "'max'"), (dict(batch_size=0), "batch_size"),
                                    (dict(pooling=torch.ones(3, 4)), "pooling mask")])
def test_bad_arguments(model, kw, msg):
    with pytest.raises(GcavInputError, match=msg): collect(model, TEXTS, "blocks.0.hook_resid_post", progress=False, **kw)

def test_one_example_is_fine(model):
    assert collect(model, ["only one"], "blocks.0.hook_resid_post", progress=False)["blocks.0.hook_resid_post"].shape[0] == 1

class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1); self.head = nn.Linear(4, 2); self.unused = nn.Linear(2, 2)
    def forward(self, x): return self.head(self.conv(x).mean((2, 3)))

def test_cnn_flatten_and_hooks_must_fire():
    net = wrap_module(_Net(), name="toy")
    x = torch.randn(5, 3, 6, 6)
    out = collect(net, x, ["conv", "head"], batch_size=2, progress=False)
    assert out["conv"].shape == (5, 4 * 36) and out["head"].shape == (5, 2)
    with torch.no_grad(): assert torch.allclose(out["conv"], net.model.conv(x).reshape(5, -1), atol=1e-6)
    with pytest.raises(GcavInputError, match="did not fire"): collect(net, x, ["conv", "unused"], progress=False)
    with pytest.raises(TypeError, match="floating"): collect(net, x.long(), ["conv"], progress=False)
    assert not net._handles

def test_capture_keep_grad_gives_grads_at_every_hook(model):
    toks, am = tokenize(model, TEXTS[:2])
    with capture(model, "blocks.*.hook_resid_post", keep_grad=True) as acts:
        model(toks, attention_mask=am)[:, -1, 0].sum().backward()
    assert all(a.grad is not None for a in acts.values())
    model.zero_grad(set_to_none=True)
    assert _n_hooks(model) == 0

# ---- length-sorted batches
def test_length_batches_match_each_text_alone_in_input_order(model):
    "Batches sorted by token length give every row back at its input position, equal to running each text alone."
    hooks = "blocks.*.hook_resid_post"
    texts = TEXTS + [t + " And then some more words about it." for t in TEXTS[::2]]
    srt = collect(model, texts, hooks, batch_size=3, progress=False, sort_by_length=True)
    given = collect(model, texts, hooks, batch_size=3, progress=False, sort_by_length=False)
    alone = [collect(model, [t], hooks, progress=False) for t in texts]
    for k in srt:
        assert torch.allclose(srt[k], torch.cat([a[k] for a in alone]), atol=1e-4)
        assert torch.allclose(srt[k], given[k], atol=1e-4)
    assert srt.meta["padding"] < given.meta["padding"]

# ---- cache integrity
def _corrupt_values(f, fill):
    "Overwrite every tensor byte of a safetensors file, keeping its header (and so its metadata) intact."
    b = bytearray(f.read_bytes()); start = 8 + int.from_bytes(b[:8], "little")
    b[start:] = bytes([fill]) * (len(b) - start); f.write_bytes(bytes(b))

@pytest.mark.parametrize("fill", [0x00, 0xFF])   # zeroed values, NaN values
def test_corrupted_cache_values_are_detected_and_rebuilt(model, tmp_path, fill):
    hooks = "blocks.*.hook_resid_post"
    ref = collect(model, TEXTS, hooks, cache=tmp_path/"c", progress=False)
    _corrupt_values(_entry(tmp_path/"c")/"acts.safetensors", fill)
    with pytest.warns(UserWarning, match="checksum"):
        got = collect(model, TEXTS, hooks, cache=tmp_path/"c", progress=False)
    assert all(torch.equal(got[k], ref[k]) for k in ref)

def test_corrupted_partial_batch_redone_others_kept(model, tmp_path):
    "A finished batch whose values were zeroed is redone; the other finished batches are read, not recomputed."
    hooks = _interrupted_collect(model, tmp_path/"c")
    _corrupt_values(_entry(tmp_path/"c")/"partial"/"batch_00000.safetensors", 0x00)
    def count(t, hook): count.n += 1
    count.n = 0
    with pytest.warns(UserWarning, match="checksum"), model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", count)]):
        got = collect(model, TEXTS, hooks, batch_size=2, cache=tmp_path/"c", progress=False)
    assert count.n == 3                                   # batch 0 (corrupted) + batches 2 and 3; batch 1 came from disk
    ref = collect(model, TEXTS, hooks, batch_size=2, progress=False)
    assert all(torch.equal(got[k], ref[k]) for k in ref)

def test_cache_path_that_is_a_file_fails_before_work(model, tmp_path):
    f = tmp_path/"file"; f.write_text("x")
    for bad, msg in [(f, "is a file"), (f/"sub", "cannot create")]:
        with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda t, hook: (_ for _ in ()).throw(_Boom()))]):
            with pytest.raises(GcavInputError, match=msg): collect(model, TEXTS, "blocks.0.hook_resid_post", cache=bad, progress=False)

def test_cache_files_follow_umask(model, tmp_path):
    import os
    old = os.umask(0o022)
    try: collect(model, TEXTS, "blocks.0.hook_resid_post", cache=tmp_path/"c", progress=False)
    finally: os.umask(old)
    assert (_entry(tmp_path/"c")/"acts.safetensors").stat().st_mode & 0o777 == 0o644

# ---- BOS
def test_prepend_bos_is_recorded_and_keys_the_cache(model, tmp_path):
    hook = "blocks.0.hook_resid_post"
    a = collect(model, TEXTS, hook, prepend_bos=True, cache=tmp_path/"c", progress=False)
    b, n = _forwards(model, lambda: collect(model, TEXTS, hook, prepend_bos=False, cache=tmp_path/"c", progress=False))
    assert a.meta["prepend_bos"] is True and b.meta["prepend_bos"] is False
    assert n == 1 and not torch.equal(a[hook], b[hook])   # its own entry, computed, not the BOS=True one read back
    assert not torch.allclose(a[hook], b[hook])
    with pytest.raises(TypeError, match="prepend_bos"): collect(model, TEXTS, hook, prepend_bos="yes", progress=False)

# ---- image input errors name the set
def test_image_mistakes_name_the_set():
    from gcav_nb.activations import collect_sets
    net = wrap_module(_Net(), name="toy")
    rgb = torch.randn(4, 3, 6, 6)
    with pytest.raises(GcavInputError, match=r"set 'gray' has examples of shape \(1, 6, 6\)"):
        collect_sets(net, {"rgb": rgb, "gray": torch.randn(4, 1, 6, 6)}, "conv", progress=False)
    with pytest.raises(GcavInputError, match=r"set 'gray'.*expects \[n, 3, H, W\]"):
        collect_sets(net, {"gray": torch.randn(4, 1, 6, 6), "gray2": torch.randn(4, 1, 6, 6)}, "conv", progress=False)
    with pytest.raises(TypeError, match="set 'pixels'.*floating"):
        collect_sets(net, {"rgb": rgb, "pixels": (rgb * 255).to(torch.uint8)}, "conv", progress=False)
    with pytest.raises(GcavInputError, match="expects"): collect(net, torch.randn(4, 6, 6, 3), "conv", progress=False)
    got = collect_sets(net, {"rgb": rgb, "dbl": rgb.double()}, "conv", progress=False)    # float64 is cast to the model's dtype
    assert torch.allclose(got["rgb"]["conv"], got["dbl"]["conv"])

def test_stop_early_skips_the_unembedding_after_the_last_block(model):
    "With every block requested, the forward stops at the last block: the final norm and unembedding never run."
    fired = []
    with model.hooks(fwd_hooks=[(h, lambda t, hook: fired.append(hook.name)) for h in ["ln_final.hook_normalized", "unembed.hook_out"]]):
        collect(model, TEXTS, "blocks.*.hook_resid_post", progress=False)
        assert fired == []
        collect(model, TEXTS, "blocks.*.hook_resid_post", progress=False, stop_early=False)
    assert "unembed.hook_out" in fired
