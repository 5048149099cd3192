"""gcav_nb.store: bad-input matrix, resuming a killed build, checksums on read, determinism of blocks and stores."""
import json
import pytest
import torch
import gcav_nb.store as store
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.data import text_corpus
from gcav_nb.models import load_model, default_prepend_bos
from gcav_nb.store import ActivationStore, token_blocks

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
KW = dict(ctx=32, n_tokens=2048, shard_tokens=512, batch_size=4, progress=False)

@pytest.fixture(scope="module")
def model(): return load_model("tiny-llama", device="cpu")

@pytest.fixture(scope="module")
def corpus(): return text_corpus("brown", n_tokens=5000)

@pytest.fixture(scope="module")
def built(model, corpus, tmp_path_factory):
    return ActivationStore.build(model, corpus, HOOKS, tmp_path_factory.mktemp("store")/"s", **KW)

@pytest.mark.parametrize("kw,err,contains", [
    (dict(ctx=1), GcavInputError, "ctx must be an int in [2, 256]"),
    (dict(ctx=257), GcavInputError, "the model's context is 256"),
    (dict(ctx=2.5), GcavInputError, "ctx"),
    (dict(ctx=64, n_tokens=63), GcavInputError, "at least one block"),
    (dict(n_tokens=0), GcavInputError, "n_tokens"),
    (dict(corpus=[]), GcavInputError, "empty"),
    (dict(corpus=["", " \n"]), GcavInputError, "empty"),
    (dict(corpus=["ok", None]), TypeError, "not strings"),
    (dict(corpus=42), TypeError, "corpus must be"),
    (dict(corpus="no-such-corpus"), UnknownNameError, "unknown corpus"),
])
def test_token_blocks_bad_input_fails_at_call(model, corpus, kw, err, contains):
    "Bad blocks arguments raise when token_blocks is called (before iterating), naming the value."
    args = dict(corpus=corpus, ctx=32, n_tokens=1024) | kw
    with pytest.raises(err, match=contains.replace("[", r"\[").replace("]", r"\]")): token_blocks(model, **args)

@pytest.mark.parametrize("kw,err,contains", [
    (dict(hooks="blocks.0.hook_resid_pst"), UnknownNameError, "blocks.0.hook_resid_pst"),
    (dict(hooks="blocks.9.*"), UnknownNameError, "blocks.9"),
    (dict(corpus=[]), GcavInputError, "empty"),
    (dict(ctx=1), GcavInputError, "ctx"),
    (dict(ctx=1000), GcavInputError, "model's context"),
    (dict(n_tokens=16), GcavInputError, "at least one block"),
    (dict(shard_tokens=16), GcavInputError, "shard_tokens"),
    (dict(batch_size=0), GcavInputError, "batch_size"),
    (dict(dtype=torch.int64), GcavInputError, "dtype"),
])
def test_build_bad_input_fails_before_work(model, corpus, tmp_path, monkeypatch, kw, err, contains):
    "Each bad build argument fails before any forward pass and before anything is written."
    monkeypatch.setattr(store, "_forward", lambda *a: pytest.fail("a forward pass ran"))
    args = dict(corpus=corpus, hooks=HOOKS) | KW | kw
    with pytest.raises(err, match=contains): ActivationStore.build(model, path=tmp_path/"s", **args)
    assert not (tmp_path/"s"/"manifest.json").exists()

def test_blocks_are_packed_without_padding_and_deterministic(model, corpus):
    "Every block has exactly ctx tokens (BOS first with prepend_bos=True, EOS separators without), reproducible per seed."
    a = list(token_blocks(model, corpus, 32, 4096, True, seed=5)); b = list(token_blocks(model, corpus, 32, 4096, True, seed=5))
    assert len(a) == 128 and all(x.shape == (32,) and x.dtype == torch.long for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert {int(x[0]) for x in a} == {model.tokenizer.bos_token_id}
    assert not all(torch.equal(x, y) for x, y in zip(a, token_blocks(model, corpus, 32, 4096, True, seed=6)))
    eos = list(token_blocks(model, corpus, 32, 4096, prepend_bos=False))
    assert int(eos[0][0]) == model.tokenizer.eos_token_id and model.tokenizer.bos_token_id not in torch.cat(eos).tolist()

def test_store_matches_the_model(model, built):
    "Stored rows equal run_with_cache's activations for the stored tokens; manifest records the settings."
    assert len(built) == 2048 and len(built.shards) == 4 and built.hooks == HOOKS
    k = built.manifest["key"]
    assert (k["ctx"], k["prepend_bos"], k["dtype"], k["model"]) == (32, default_prepend_bos(model), "float32", "tiny-llama")
    toks = built.read(2, "tokens").long()
    with torch.no_grad(): _, cache = model.run_with_cache(toks, names_filter=HOOKS)
    for h in HOOKS: torch.testing.assert_close(built.read(2, h), cache[h].reshape(-1, cache[h].shape[-1]), rtol=1e-5, atol=1e-5)

def test_killed_build_resumes_and_matches(model, corpus, built, tmp_path, monkeypatch):
    "A build interrupted after 2 of 4 shards resumes: only shards 2-3 are computed, and the result equals an uninterrupted build."
    real, calls = store._write_shard, []
    def killed(path, i, *a):
        if i == 2: raise KeyboardInterrupt
        calls.append(i); return real(path, i, *a)
    monkeypatch.setattr(store, "_write_shard", killed)
    with pytest.raises(KeyboardInterrupt): ActivationStore.build(model, corpus, HOOKS, tmp_path/"s", **KW)
    with pytest.raises(GcavInputError, match="incomplete"): ActivationStore(tmp_path/"s")
    forwards = []
    real_fwd = store._forward
    monkeypatch.setattr(store, "_forward", lambda m, t, s: (forwards.append(len(t)), real_fwd(m, t, s))[1])
    monkeypatch.setattr(store, "_write_shard", lambda path, i, *a: (calls.append(i), real(path, i, *a))[1])
    st = ActivationStore.build(model, corpus, HOOKS, tmp_path/"s", **KW)
    assert calls == [0, 1, 2, 3] and sum(forwards) == 2 * 512 // 32      # blocks of shards 2 and 3 only
    assert st.shards == built.shards

def test_rebuild_of_a_complete_store_runs_nothing(model, corpus, built, monkeypatch):
    "Building again with the same arguments returns the store without a forward pass."
    monkeypatch.setattr(store, "_forward", lambda *a: pytest.fail("a forward pass ran"))
    assert ActivationStore.build(model, corpus, HOOKS, built.path, **KW).shards == built.shards

def test_other_settings_at_the_same_path_are_refused(model, corpus, built):
    "A build with another key at an existing store's path fails naming the difference."
    with pytest.raises(GcavInputError, match=r"'n_blocks': \(64, 32\)"): ActivationStore.build(model, corpus, HOOKS, built.path, **(KW | dict(n_tokens=1024)))

def test_corrupted_shard_fails_on_read(model, corpus, tmp_path):
    "Zeroed values with the header intact: a clear checksum error naming the shard and tensor; other shards still read."
    st = ActivationStore.build(model, corpus, HOOKS, tmp_path/"s", **KW)
    f = st.path/st.shards[3]["file"]; raw = bytearray(f.read_bytes())
    n = int.from_bytes(raw[:8], "little"); lo, hi = json.loads(raw[8:8 + n])[HOOKS[1]]["data_offsets"]
    raw[8 + n + lo:8 + n + hi] = bytes(hi - lo); f.write_bytes(bytes(raw))
    st = ActivationStore(st.path)
    assert st.read(3, HOOKS[0]).shape == (512, 64)
    with pytest.raises(GcavInputError, match=f"shard_00003.safetensors: '{HOOKS[1]}' fails its checksum"): st.read(3, HOOKS[1])
    with pytest.raises(GcavInputError, match="fails its checksum"): list(st.batches(HOOKS[1], shuffle=False))

def test_batches_cover_every_row_once(built):
    "Ordered batches concatenate to the stored rows; shuffled ones (seeded) are a permutation of them."
    h = HOOKS[1]; full = torch.cat([built.read(i, h) for i in range(4)])
    assert torch.equal(torch.cat(list(built.batches(h, 300, shuffle=False))), full)
    a = torch.cat(list(built.batches(h, 300, seed=1))); b = torch.cat(list(built.batches(h, 300, seed=1)))
    assert torch.equal(a, b) and not torch.equal(a, full)
    assert torch.equal(a.sum(1).sort().values, full.sum(1).sort().values)
    acts, toks = next(built.batches(h, 64, shuffle=False, with_tokens=True))
    assert acts.shape == (64, 64) and torch.equal(toks, built.read(0, "tokens").reshape(-1)[:64])

def test_store_dtype_float16(model, corpus, tmp_path):
    "float16 storage halves the bytes and stays close to the float32 store."
    st = ActivationStore.build(model, corpus, HOOKS[:1], tmp_path/"h", **(KW | dict(dtype=torch.float16)))
    x = st.read(0, HOOKS[0]); assert x.dtype == torch.float16
    ref = ActivationStore.build(model, corpus, HOOKS[:1], tmp_path/"f", **KW).read(0, HOOKS[0])
    torch.testing.assert_close(x.float(), ref, rtol=1e-2, atol=1e-2)

def test_kill_inside_a_shard_leaves_no_partial_file(model, corpus, built, tmp_path, monkeypatch):
    "Ctrl-C between two forwards of shard 1 (its file half written): no shard_00001 nor temp file is left, and the rerun equals the uninterrupted store."
    real_fwd, n = store._forward, []
    def fwd(m, t, s):
        n.append(len(t))
        if len(n) == 512 // 32 // 4 + 2: raise KeyboardInterrupt          # the second forward of shard 1
        return real_fwd(m, t, s)
    monkeypatch.setattr(store, "_forward", fwd)
    with pytest.raises(KeyboardInterrupt): ActivationStore.build(model, corpus, HOOKS, tmp_path/"s", **KW)
    assert sorted(p.name for p in (tmp_path/"s").iterdir()) == ["manifest.json", "shard_00000.safetensors"]
    monkeypatch.setattr(store, "_forward", real_fwd)
    assert ActivationStore.build(model, corpus, HOOKS, tmp_path/"s", **KW).shards == built.shards

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_shards_are_plain_safetensors(model, corpus, tmp_path, dtype):
    "safetensors' own loader reads every shard (header, offsets, alignment) and gives what read() gives; metadata names the shard."
    from safetensors import safe_open
    from safetensors.torch import load_file
    st = ActivationStore.build(model, corpus, HOOKS, tmp_path/"s", **(KW | dict(dtype=dtype, batch_size=3)))   # batches cross no shard edge evenly
    for i, s in enumerate(st.shards):
        got = load_file(st.path/s["file"])
        assert set(got) == {"tokens", *HOOKS} and got["tokens"].dtype == torch.int32 and got[HOOKS[0]].dtype == dtype
        for k, v in got.items(): assert torch.equal(v, st.read(i, k))
        with safe_open(st.path/s["file"], framework="pt") as f: assert f.metadata() == {"shard": str(i)}
    if dtype == torch.float32:   # batch_size only changes how rows are cut: the store is the same
        assert st.shards == ActivationStore.build(model, corpus, HOOKS, tmp_path/"t", **KW).shards

def test_one_changed_value_fails_and_old_format_is_refused(model, corpus, built, tmp_path):
    "A single float changed in place fails the CRC-32; a store of an older format (sha256 manifests) is refused with a clear error."
    import shutil
    p = tmp_path/"s"; shutil.copytree(built.path, p)
    f = p/built.shards[0]["file"]; raw = bytearray(f.read_bytes())
    n = int.from_bytes(raw[:8], "little"); lo, _ = json.loads(raw[8:8 + n])[HOOKS[0]]["data_offsets"]
    raw[8 + n + lo + 400] ^= 1; f.write_bytes(bytes(raw))                 # one bit of one float
    with pytest.raises(GcavInputError, match="fails its checksum"): ActivationStore(p).read(0, HOOKS[0])
    m = json.loads((p/"manifest.json").read_text()); m["key"]["format"] = 1; (p/"manifest.json").write_text(json.dumps(m))
    with pytest.raises(GcavInputError, match="has format 1"): ActivationStore(p)

def test_batches_by_position(built):
    "positions=slice(1, None) yields exactly the rows not at a block's first position, with their tokens, ordered or shuffled (each once)."
    h, ctx = HOOKS[0], built.ctx
    full = torch.cat([built.read(i, h) for i in range(4)]); toks = torch.cat([built.read(i, "tokens") for i in range(4)])
    keep = full.reshape(-1, ctx, full.shape[1])[:, 1:].reshape(-1, full.shape[1])
    assert torch.equal(torch.cat(list(built.batches(h, 100, shuffle=False, positions=slice(1, None)))), keep)
    a, t = zip(*built.batches(h, 100, seed=2, with_tokens=True, positions=slice(1, None)))
    assert torch.equal(torch.cat(a).sum(1).sort().values, keep.sum(1).sort().values)
    assert sorted(torch.cat(t).tolist()) == sorted(toks[:, 1:].reshape(-1).tolist())
    assert len(torch.cat(list(built.batches(h, 100, shuffle=False, positions=slice(0, 1))))) == len(full) // ctx
    with pytest.raises(GcavInputError, match="keeps none"): built.batches(h, positions=slice(5, 5))
    with pytest.raises(TypeError, match="slice"): built.batches(h, positions=1)
