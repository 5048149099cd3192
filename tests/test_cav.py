"""gcav_nb.cav: parity with scikit-learn, the random-pair symmetry, determinism, bad input and file checks."""
import math
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.cav import (fit_cavs, fit_random_cavs, fit_relative_cavs, fit_tcav_cavs, CAVSet, ConceptVector, split_indices, set_key,
                         heldout_accuracy, Split, _fit_problems, _as_sets)

def _resid_like(n, d, shift, seed):
    "Activations that look like a residual stream: anisotropic, a few large-norm dims, a concept shift."
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.2, 2.0, d); scale[:3] = 8.0
    x = torch.randn(n, d, generator=g) * scale + 5.0
    x[:, 10:40] += shift
    return x

def _sets(L=3, d=96, n=50, R=4, seed=0, shifts=(1.0, 0.3)):
    layers = [f"blocks.{l}.hook_resid_post" for l in range(L)]
    concepts = {c: {h: _resid_like(n, d, s * (l + 1) / L, seed + 7 * ci + l) for l, h in enumerate(layers)}
                for ci, (c, s) in enumerate(zip(["strong", "weak"], shifts))}
    randoms = [{h: _resid_like(n, d, 0.0, 1000 + seed + 11 * r + l) for l, h in enumerate(layers)} for r in range(R)]
    return layers, concepts, randoms

def _against_sklearn(concepts, randoms, layers, C, seed):
    "Our CAVs and one sklearn LogisticRegression per problem on the same split: accuracies, cosines, objectives, the CAVSet."
    cs = fit_cavs(concepts, randoms, C=C, seed=seed)
    ours, ref, cos, gap = [], [], [], []
    J = lambda w, b, X, y: C * np.logaddexp(0, -(2 * y - 1) * (X @ w + b)).sum() + 0.5 * w @ w   # sklearn's objective
    for li, h in enumerate(layers):
        for ci, c in enumerate(cs.concepts):
            for ri, r in enumerate(cs.runs):
                X1, X0 = concepts[c][h], randoms[ri][h]
                (p_tr, p_te), (q_tr, q_te) = split_indices(set_key(concepts[c]), len(X1), min(len(X1), len(X0)), 0.33, seed, ri), \
                                             split_indices(set_key(randoms[ri]), len(X0), min(len(X1), len(X0)), 0.33, seed, ri)
                sp = cs.split(c, r)                                   # the split the CAVSet records is the one it used
                assert torch.equal(sp.pos_test, p_te) and torch.equal(sp.neg_train, q_tr)
                Xtr = torch.cat([X1[p_tr], X0[q_tr]]).double().numpy(); ytr = np.r_[np.ones(len(p_tr)), np.zeros(len(q_tr))]
                Xte = torch.cat([X1[p_te], X0[q_te]]).double().numpy(); yte = np.r_[np.ones(len(p_te)), np.zeros(len(q_te))]
                sk = LogisticRegression(C=C, max_iter=5000, tol=1e-8).fit(Xtr, ytr)
                ref.append(sk.score(Xte, yte)); ours.append(float(cs.accuracy[li, ci, ri]))
                w = torch.tensor(sk.coef_[0]); v = cs[h][ci, ri].double()
                cos.append(float(w @ v / w.norm()))
                j_ours = J(v.numpy() * float(cs.norms[li, ci, ri]), float(cs.bias[li, ci, ri]), Xtr, ytr)
                gap.append((j_ours - J(sk.coef_[0], sk.intercept_[0], Xtr, ytr)) / J(sk.coef_[0], sk.intercept_[0], Xtr, ytr))
    return np.array(ours), np.array(ref), np.array(cos), np.array(gap), cs

@pytest.mark.parametrize("C", [1.0, 0.01])
def test_parity_with_sklearn(C):
    "Same data, same split, same C: held-out accuracy within 1 point of sklearn's LogisticRegression, same weights."
    layers, concepts, randoms = _sets(L=2, d=576, R=3, shifts=(0.6, 0.2))
    ours, ref, cos, _, _ = _against_sklearn(concepts, randoms, layers, C, seed=3)
    print(f"C={C}: held-out accuracy ours {ours.mean():.4f} sklearn {ref.mean():.4f}, min cos {cos.min():.6f}")
    assert abs(ours.mean() - ref.mean()) <= 0.01, (ours.mean(), ref.mean())
    assert np.mean(np.abs(ours - ref) <= 0.01) >= 0.95
    assert cos.min() > 0.999, cos.min()

@pytest.mark.parametrize("big", [20.0, 200.0])
def test_large_activations_give_sklearns_cavs(big):
    """Activation norms in the thousands (SmolLM2's late residual layers are ~450): the fit converges, to an objective at least
    as low as sklearn's (whose lbfgs stops early on these flat objectives, so the directions differ by up to ~7 degrees)."""
    layers = ["a", "b"]
    concepts = {c: {h: big * _resid_like(50, 576, s, 7 * i + l) for l, h in enumerate(layers)} for i, (c, s) in enumerate([("x", 0.5), ("y", 0.05)])}
    randoms = [{h: big * _resid_like(50, 576, 0.0, 100 + 11 * r + l) for l, h in enumerate(layers)} for r in range(3)]
    ours, ref, cos, gap, cs = _against_sklearn(concepts, randoms, layers, 1.0, seed=0)
    print(f"x{big}: {cs.meta['newton_steps']} Newton steps, accuracy ours {ours.mean():.4f} sklearn {ref.mean():.4f}, "
          f"min cos {cos.min():.6f}, objective ours/sklearn - 1: max {gap.max():.2e} min {gap.min():.2e}")
    for h in layers: assert torch.isfinite(cs[h]).all()
    assert torch.isfinite(cs.accuracy).all() and torch.isfinite(cs.bias).all() and cs.meta["newton_steps"] <= 15   # quadratic, not linear, convergence
    assert gap.max() <= 1e-6, gap.max()
    assert abs(ours.mean() - ref.mean()) <= 0.01 and cos.min() > 0.98, (ours.mean(), ref.mean(), cos.min())

def test_mean_diff_is_the_difference_of_training_means():
    layers, concepts, randoms = _sets()
    cs = fit_cavs(concepts, randoms[:1], classifier="mean_diff", seed=0)
    h = layers[1]; X1, X0 = concepts["strong"][h], randoms[0][h]
    sp = cs.split("strong", 0); p_tr, q_tr = sp.pos_train, sp.neg_train
    w = X1[p_tr].mean(0) - X0[q_tr].mean(0)
    assert torch.allclose(cs[h][0, 0], w / w.norm(), atol=1e-5)

@pytest.mark.parametrize("classifier", ["logistic", "mean_diff"])
def test_random_pairs_are_symmetric(classifier):
    "Fitting (j, i) directly gives exactly minus the (i, j) CAV, the same bias up to sign, the same accuracy."
    _, _, randoms = _sets(R=4)
    R = _as_sets(randoms, "random")
    pairs = [(p, q, 0) for p in R for q in R if p != q]
    layers, W, b, acc, _ = _fit_problems(R, pairs, classifier=classifier, tol=1e-20)
    idx = {(p, q): i for i, (p, q, _) in enumerate(pairs)}
    for (p, q), i in idx.items():
        j = idx[(q, p)]
        for h in layers:
            assert torch.allclose(W[h][i], -W[h][j], atol=1e-6, rtol=1e-5)   # float32 weights
        assert torch.allclose(b[:, i], -b[:, j], atol=1e-6) and torch.equal(acc[:, i], acc[:, j])
    un = fit_random_cavs(randoms, classifier=classifier); od = fit_random_cavs(randoms, classifier=classifier, ordered=True)
    assert len(un.runs) == 6 and len(od.runs) == 12 and od.meta["ordered"]
    for ri, r in enumerate(od.runs):
        p, q = r.split("~"); i = idx[(p, q)]
        for h in layers:
            assert torch.allclose(od[h][0, ri].double(), (W[h][i] / W[h][i].norm()).float().double(), atol=1e-5)

def test_same_seed_same_cavs():
    layers, concepts, randoms = _sets()
    a, b = fit_cavs(concepts, randoms, seed=5), fit_cavs(concepts, randoms, seed=5)
    assert torch.equal(a.vectors, b.vectors) and torch.equal(a.accuracy, b.accuracy) and torch.equal(a.bias, b.bias)
    r1, r2 = fit_random_cavs(randoms, seed=5), fit_random_cavs(randoms, seed=5)
    assert torch.equal(r1.vectors, r2.vectors)
    assert not torch.equal(fit_cavs(concepts, randoms, seed=6).accuracy, a.accuracy)

def test_dtype_does_not_matter():
    "float16/float64 inputs give the float32 result (activations are cast to float64 for the fit)."
    layers, concepts, randoms = _sets()
    ref = fit_cavs(concepts, randoms)
    dbl = fit_cavs({c: {h: x.double() for h, x in s.items()} for c, s in concepts.items()},
                   [{h: x.double() for h, x in s.items()} for s in randoms])
    assert torch.allclose(ref.vectors, dbl.vectors, atol=1e-5)

def test_differing_widths_give_a_dict():
    concepts = {"c": {"a": torch.randn(20, 8) + 1, "b": torch.randn(20, 30) + 1}}
    randoms = [{"a": torch.randn(20, 8), "b": torch.randn(20, 30)} for _ in range(3)]
    cs = fit_cavs(concepts, randoms)
    assert isinstance(cs.vectors, dict) and cs.dims == {"a": 8, "b": 30} and cs["b"].shape == (1, 3, 30)

def test_relative_cavs():
    layers, concepts, _ = _sets()
    rel = fit_relative_cavs(concepts, n_runs=4)
    assert rel.concepts == ["strong~weak"] and rel.accuracy.shape == (3, 1, 4)
    swapped = fit_relative_cavs(concepts, pairs=[("weak", "strong")], n_runs=4)
    assert torch.allclose(rel.vectors, -swapped.vectors, atol=1e-5)

def test_concept_vector_provenance_from_collect():
    from gcav_nb.models import load_model
    from gcav_nb.activations import collect
    model = load_model("tiny-llama")
    pos = [f"What a wonderful {w} day!" for w in "sunny bright lovely warm happy calm fine clear".split()]
    neg = [f"The {w} was on the table." for w in "cup fork plate knife spoon bowl jar pan".split()]
    h = "blocks.*.hook_resid_post"
    cs = fit_cavs({"praise": collect(model, pos, h, progress=False)}, {"neutral": collect(model, neg, h, progress=False)}, seed=1)
    v = cs.vector(2, "praise", run=0)
    assert isinstance(v, ConceptVector) and v.hook == "blocks.2.hook_resid_post" and v.layer == 2
    assert v.model == "tiny-llama" and v.revision == model.gcav_revision and v.pooling == "last" and v.seed == 1
    assert set(v.data_hash) == {"praise", "neutral"} and v.classifier == "logistic" and 0 <= v.accuracy <= 1
    assert abs(float(v.direction.norm()) - 1) < 1e-5 and v.negative == "neutral"
    mean = cs.vector("blocks.2.hook_resid_post", "praise"); assert mean.run is None
    assert (-v).concept == "neutral"

# ---- bad input ----
def _one(n=5, d=4): return {"L0": torch.randn(n, d)}

@pytest.mark.parametrize("concepts,randoms,err,msg", [
    ({"c": _one(0)}, [_one()], GcavInputError, "0 example"),
    ({"c": _one(1)}, [_one()], GcavInputError, "1 example"),
    ({"c": {"L0": torch.full((5, 4), float("nan"))}}, [_one()], GcavInputError, "NaN"),
    ({"c": {"L0": torch.ones(5, 4, dtype=torch.long)}}, [_one()], TypeError, "floating"),
    ({"c": _one(d=4)}, [_one(d=5)], GcavInputError, "widths"),
    ({"c": {"L0": torch.randn(5, 2, 2)}}, [_one()], GcavInputError, r"\[n, d\]"),
    ({"c": _one()}, [{"L1": torch.randn(5, 4)}], UnknownNameError, "L0"),
    ({"c": _one()}, [], GcavInputError, "no random"),
    ({"c": [1, 2]}, [_one()], TypeError, "dict"),
])
def test_bad_fit_input(concepts, randoms, err, msg):
    with pytest.raises(err, match=msg): fit_cavs(concepts, randoms)

@pytest.mark.parametrize("kw,msg", [(dict(classifier="svm"), "'svm'"), (dict(C=0), "C must"), (dict(test_frac=1.0), "test_frac"),
                                    (dict(test_frac=0), r"test_frac must be in \(0, 1\)"), (dict(test_frac=-0.2), "test_frac"),
                                    (dict(test_frac=True), "test_frac"),
                                    (dict(seed="1"), "seed"), (dict(layers=["nope"]), "nope")])
def test_bad_fit_options(kw, msg):
    with pytest.raises((GcavInputError, UnknownNameError), match=msg): fit_cavs({"c": _one()}, [_one()], **kw)

def test_one_random_set_is_not_enough_for_pairs():
    with pytest.raises(GcavInputError, match="at least 2"): fit_random_cavs([_one()])

def test_load_checks(tmp_path):
    layers, concepts, randoms = _sets(d=16)
    cs = fit_cavs(concepts, randoms); p = cs.save(tmp_path/"c.safetensors")
    back = CAVSet.load(p, expect_layers=layers, expect_dims={h: 16 for h in layers})
    assert torch.equal(back.vectors, cs.vectors) and back.meta["classifier"] == "logistic" and back.meta["version"]
    with pytest.raises(GcavInputError, match="expected d=32"): CAVSet.load(p, expect_dims=32)
    with pytest.raises(GcavInputError, match="has layers"): CAVSet.load(p, expect_layers=layers[:1])
    (tmp_path/"t.safetensors").write_bytes(p.read_bytes()[:100])
    with pytest.raises(GcavInputError, match="cannot read"): CAVSet.load(tmp_path/"t.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path/"o.safetensors"))
    with pytest.raises(GcavInputError, match="not a gcav_nb CAVSet"): CAVSet.load(tmp_path/"o.safetensors")
    with pytest.raises(FileNotFoundError): CAVSet.load(tmp_path/"missing.safetensors")
    with pytest.raises(UnknownNameError, match="unknown concept"): cs.vector(0, "nope")
    with pytest.raises(GcavInputError, match="out of range"): cs.vector(9, "strong")

def test_to_frame():
    layers, concepts, randoms = _sets()
    df = fit_cavs(concepts, randoms).to_frame()
    assert len(df) == 3 * 2 * 4 and set(df.columns) >= {"layer", "concept", "run", "accuracy"}

# ---- splits seeded by the data, not the name
def test_same_data_two_names_same_cavs_and_accuracies():
    "Identical activations under two names give identical CAVs and accuracies (the split is seeded by content)."
    layers, concepts, randoms = _sets()
    twin = {h: x.clone() for h, x in concepts["strong"].items()}
    cs = fit_cavs({"strong": concepts["strong"], "renamed": twin}, randoms)
    assert torch.equal(cs.accuracy[:, 0], cs.accuracy[:, 1])
    for h in layers: assert torch.equal(cs[h][0], cs[h][1])
    rel = fit_relative_cavs({"a": concepts["strong"], "b": concepts["weak"]}, n_runs=3)
    rel2 = fit_relative_cavs({"x": concepts["strong"], "y": concepts["weak"]}, n_runs=3)
    assert torch.equal(rel.vectors, rel2.vectors) and torch.equal(rel.accuracy, rel2.accuracy)

def test_split_key_comes_from_collect_data_hash():
    from gcav_nb.activations import Activations
    x = torch.randn(10, 4)
    assert set_key(Activations({"L": x}, meta={"data_hash": "abc123"})) == "abc123"
    assert set_key({"L": x}) == set_key({"L": x.clone()}) != set_key({"L": x + 1})

def test_too_few_examples_for_a_split():
    with pytest.raises(GcavInputError, match="m=1"): split_indices("k", 4, 1)

# ---- held-out accuracy of any direction on the CAV's own split
def test_heldout_accuracy_reproduces_the_fit_and_uses_only_heldout_rows():
    layers, concepts, randoms = _sets(R=3)
    cs, rr = fit_tcav_cavs(concepts, randoms)
    data = {**concepts, **dict(zip(cs.runs, randoms))}
    for cavs in (cs, rr):
        for li, L in enumerate(layers):
            for ci, c in enumerate(cavs.concepts):
                for ri, r in enumerate(cavs.runs):
                    sp = cavs.split(c, r)
                    assert not set(sp.pos_train.tolist()) & set(sp.pos_test.tolist())
                    got = heldout_accuracy(cavs[L][ci, ri], data[sp.pos][L], data[sp.neg][L], sp, bias=cavs.bias[li, ci, ri] / cavs.norms[li, ci, ri])
                    assert abs(float(got) - float(cavs.accuracy[li, ci, ri])) < 1e-6, (L, c, r)
    sp = cs.split("strong", 1)                   # a [k, d] stack scores each direction
    k = heldout_accuracy(cs[layers[-1]][0], data[sp.pos][layers[-1]], data[sp.neg][layers[-1]], sp)
    assert k.shape == (3,) and k.dtype == torch.float32

def test_heldout_accuracy_known_split():
    "Held-out rows placed on the wrong side: held-out accuracy 0, whatever the direction's threshold; a re-split says more."
    from gcav_nb.activations import Activations
    n, d = 30, 6
    sp_p, sp_n = split_indices("P", n, n), split_indices("N", n, n)
    P, N = torch.randn(n, d) * 0.1, torch.randn(n, d) * 0.1
    P[sp_p[0], 0] += 1; P[sp_p[1], 0] -= 1; N[sp_n[0], 0] -= 1; N[sp_n[1], 0] += 1
    cs = fit_cavs({"p": Activations({"L": P}, meta={"data_hash": "P"})}, {"n": Activations({"L": N}, meta={"data_hash": "N"})})
    sp = cs.split("p", "n")
    assert torch.equal(sp.pos_test, sp_p[1]) and torch.equal(sp.neg_train, sp_n[0])
    assert float(cs.accuracy[0, 0, 0]) == 0.0
    assert float(heldout_accuracy(cs["L"][0, 0], P, N, sp)) == 0.0
    assert float(heldout_accuracy(-cs["L"][0, 0], P, N, sp)) <= 0.5      # a threshold fit on the held-out rows would give 1.0
    g = torch.Generator().manual_seed(0); rp, rn = torch.randperm(n, generator=g), torch.randperm(n, generator=g)
    assert float(heldout_accuracy(cs["L"][0, 0], P, N, Split("p", "n", rp[10:], rp[:10], rn[10:], rn[:10]))) > 0.3

def test_split_needs_a_recorded_split():
    layers, concepts, randoms = _sets(R=2)
    cs = fit_cavs(concepts, randoms)
    old = CAVSet({L: cs[L] for L in cs.layers}, cs.accuracy, cs.concepts, cs.runs)
    with pytest.raises(GcavInputError, match="records no splits"): old.split("strong", 0)

# ---- per-layer accuracy for reports
def test_layer_accuracy_flags_below_chance():
    layers, concepts, randoms = _sets()
    rr = fit_random_cavs(randoms)
    la = rr.layer_accuracy()
    assert len(la) == 3 and list(la.columns[:4]) == ["layer", "layer_index", "concept", "accuracy"]
    assert (la.below_chance == (la.accuracy <= 0.5)).all()
    cs = fit_cavs(concepts, randoms).layer_accuracy()
    assert not cs.set_index(["layer", "concept"]).loc[(layers[-1], "strong"), "below_chance"]

# ---- files: checksums, names, unit norm, umask, no stray temp
def _rewrite(src, dst, edit_tensors=lambda t: t, edit_info=lambda i: i):
    import json
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    with safe_open(str(src), framework="pt") as f: info = json.loads(f.metadata()["gcav_cavset"])
    save_file(edit_tensors(load_file(str(src))), str(dst), metadata={"gcav_cavset": json.dumps(edit_info(info))})
    return dst

def _zero(k):
    def f(t): t[k] = torch.zeros_like(t[k]); return t
    return f

def _nan(k):
    def f(t): t[k] = torch.full_like(t[k], float("nan")); return t
    return f

def _rename(i): i["layers"][1] = "blocks.7.hook_resid_post"; return i
def _rename_both(i):
    i["layers"][1] = i["meta"]["hooks"][1] = "blocks.7.hook_resid_post"; i.pop("names_sha256"); return i
def _old(i): i.pop("sha256"); i.pop("names_sha256"); i["format"] = "gcav_nb.CAVSet/1"; return i

@pytest.mark.parametrize("edit_t,edit_i,msg", [
    (_zero("vectors.1"), None, r"'vectors.1' \(layer 'blocks.1.hook_resid_post'\) does not match its checksum"),
    (_nan("accuracy"), None, "'accuracy' does not match its checksum"),
    (None, _rename, "names do not match their checksum"),
    (None, _rename_both, "no checksums"),
    (_zero("vectors.0"), _old, "not unit vectors"),
    (None, lambda i: (_old(i), _rename(i))[1], "differ from the hooks"),
])
def test_load_detects_tampering(tmp_path, edit_t, edit_i, msg):
    layers, concepts, randoms = _sets(d=16)
    p = fit_cavs(concepts, randoms).save(tmp_path/"c.safetensors")
    bad = _rewrite(p, tmp_path/"bad.safetensors", edit_t or (lambda t: t), edit_i or (lambda i: i))
    with pytest.raises(GcavInputError, match=msg): CAVSet.load(bad)

def test_save_over_a_folder_fails_without_a_stray_temp(tmp_path):
    layers, concepts, randoms = _sets(d=16)
    cs = fit_cavs(concepts, randoms)
    (tmp_path/"out").mkdir()
    with pytest.raises(GcavInputError, match="folder"): cs.save(tmp_path/"out")
    assert [p.name for p in tmp_path.rglob("*") if p.name != "out"] == []

def test_saved_file_follows_umask(tmp_path):
    import os
    layers, concepts, randoms = _sets(d=16)
    cs = fit_cavs(concepts, randoms)
    for mask, mode in [(0o022, 0o644), (0o077, 0o600)]:
        old = os.umask(mask)
        try: p = cs.save(tmp_path/f"c{mask:o}.safetensors")
        finally: os.umask(old)
        assert p.stat().st_mode & 0o777 == mode
    back = CAVSet.load(p)
    assert back.split("weak", 2) == cs.split("weak", 2) if False else all(torch.equal(a, b) for a, b in zip(back.split("weak", 2)[2:], cs.split("weak", 2)[2:]))
