"""gcav_nb.tcav beyond the notebook's cells: parity with captum.concept.TCAV, calibration of the significance test,
gradients against the plain HF model, determinism, and the bad-input matrix."""
import json, tempfile, warnings
import numpy as np
import pytest
import torch
import torch.nn as nn
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb import tcav as T


def small_cnn(seed=0):
    "A 4-block torch CNN, [n, 3, 16, 16] -> [n, 5] logits."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 8 * 8, 16), nn.Tanh(), nn.Linear(16, 5)).eval()


def captum_scores_with_cavs(model, layers, inputs, cavs, target, concept_x, random_x, n_runs):
    "captum.concept.TCAV sign_count scores [layer, 1, run] with OUR CAVs injected through its Classifier interface."
    from captum.concept import TCAV, Concept
    from captum.concept._utils.classifier import Classifier

    class Injected(Classifier):
        "Ignores the data; returns the given CAV for (experimental set, layer) in the order captum trains them."
        def __init__(self): self.calls = {}
        def train_and_eval(self, dataloader, **kw):
            ys = torch.cat([y for _, y in dataloader]).unique().tolist()
            rid = max(ys); k = self.calls.get(rid, 0); self.calls[rid] = k + 1
            li, run = k % len(layers), rid - 1
            self.w = cavs[layers[li]][0, run].double(); self.cls = [0, rid]
            return {"accs": 1.0}
        def weights(self): return torch.stack([self.w, -self.w])   # row 0 = concept (id 0) direction
        def classes(self): return self.cls

    def it(x): return iter([x])
    concept = Concept(0, "concept", it(concept_x))
    randoms = [Concept(i + 1, f"random{i}", it(random_x[i])) for i in range(n_runs)]
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tc = TCAV(model, layers, classifier=Injected(), save_path=d)
        res = tc.interpret(inputs, [[concept, r] for r in randoms], target=target)
    return torch.tensor([[[res[f"0-{r + 1}"][l]["sign_count"][0].item() for r in range(n_runs)]] for l in layers])


def test_scores_equal_captum_given_the_same_cavs():
    "On a small CNN, our one-backward scores equal captum.concept.TCAV's with the same CAVs (within 0.02)."
    model = small_cnn(); g = torch.Generator().manual_seed(0)
    layers = ["0", "2", "5", "8"]; n_runs = 3
    x = torch.randn(40, 3, 16, 16, generator=g)
    grads = T.gradients(model, x, layers, T.class_logit(2))
    cavs = {l: torch.randn(1, n_runs, grads[l].shape[1], generator=g) for l in layers}
    ours = T.tcav_scores(grads, cavs, layers=layers)
    theirs = captum_scores_with_cavs(model, layers, x, cavs, 2, torch.randn(10, 3, 16, 16, generator=g),
                                     [torch.randn(10, 3, 16, 16, generator=g) for _ in range(n_runs)], n_runs)
    assert ours.shape == theirs.shape == (4, 1, n_runs)
    assert (ours - theirs).abs().max().item() <= 0.02, (ours, theirs)


@pytest.fixture(scope="module")
def tiny_llama():
    from gcav_nb.models import load_model
    return load_model("tiny-llama", device="cpu")


def test_gradients_match_the_plain_hf_model(tiny_llama):
    "d logit / d resid_post from our one-backward pass equals the plain HF model's, every layer (TL#1688, #1750)."
    m = tiny_llama; hf = m.original_model; L = m.cfg.n_layers
    texts = ["The food was great", "Awful service, cold soup and a long wait"]
    tid = T._token_id(m, " positive")
    g = T.gradients(m, texts, "blocks.*.hook_resid_post", T.logit(" positive"))
    from gcav_nb.models import tokenize
    for i, t in enumerate(texts):
        toks, _ = tokenize(m, [t])
        outs = {}
        def keep(l):
            def f(mod, inp, out):
                o = out[0] if isinstance(out, tuple) else out
                o.retain_grad(); outs[l] = o
            return f
        hs = [hf.model.layers[l].register_forward_hook(keep(l)) for l in range(L)]
        try:
            hf(toks).logits[0, -1, tid].backward()
        finally:
            for h in hs: h.remove()
        for l in range(L):
            ref = outs[l].grad[0, -1]
            assert torch.allclose(g[f"blocks.{l}.hook_resid_post"][i], ref, atol=1e-5), (l, (g[f"blocks.{l}.hook_resid_post"][i] - ref).abs().max())


def test_hooks_removed_after_use_and_after_error(tiny_llama):
    "No hook is left on the model after a run, nor after a run that raised."
    m = tiny_llama
    def n_hooks(): return sum(len(getattr(h, "fwd_hooks", [])) + len(getattr(h, "_forward_hooks", {})) for h in m.hook_dict.values())
    before = n_hooks()
    T.gradients(m, ["hello there"], "blocks.*.hook_resid_post", " positive")
    with pytest.raises(GcavInputError): T.gradients(m, ["hello there"], "blocks.*.hook_resid_post", lambda o: o[:, 0] * float("nan"))
    assert n_hooks() == before


def test_padding_does_not_change_gradients(tiny_llama):
    "A text's gradient is the same alone and in a right-padded batch with longer texts; also for mean pooling."
    m = tiny_llama; texts = ["ok", "a much longer sentence about the weather today"]
    for pooling in ["last", "mean"]:
        both = T.gradients(m, texts, "blocks.*.hook_resid_post", " positive", pooling=pooling)
        alone = T.gradients(m, texts[:1], "blocks.*.hook_resid_post", " positive", pooling=pooling)
        for k in both: assert torch.allclose(both[k][0], alone[k][0], atol=1e-5)


def test_same_seed_same_scores():
    "Scores and p-values are identical for the same data and seed; another seed gives other CAVs and other scores."
    model = small_cnn(); g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 3, 16, 16, generator=g)
    conc = {"a": torch.randn(12, 3, 16, 16, generator=g) + 0.5}; rnd = [torch.randn(12, 3, 16, 16, generator=g) for _ in range(3)]
    run = lambda seed: T.tcav(model, x, conc, rnd, ["2", "5"], 1, seed=seed, progress=False)
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.scores["TCAV"], b.scores["TCAV"]) and torch.equal(a.null_scores["TCAV"], b.null_scores["TCAV"])
    assert np.array_equal(a.tests().p_value.to_numpy(), b.tests().p_value.to_numpy(), equal_nan=True)
    assert not torch.equal(a.cavs["2"], c.cavs["2"])


# ---- bad input: clear errors raised before any long work ------------------------------------------------------
def test_target_token_split_by_tokenizer(tiny_llama):
    with pytest.raises(GcavInputError, match="tokens|split"):
        T.gradients(tiny_llama, ["hi"], "blocks.0.hook_resid_post", T.logit(" supercalifragilistic"))


@pytest.mark.parametrize("hooks", ["blocks.0.hook_resid_pots", ["blocks.99.hook_resid_post"], "nope.*"])
def test_unknown_hook_names(tiny_llama, hooks):
    with pytest.raises(UnknownNameError):
        T.gradients(tiny_llama, ["hi"], hooks, " positive")


def test_unknown_module_name_plain_torch():
    with pytest.raises(UnknownNameError, match="unknown hook 'conv9'"):
        T.gradients(small_cnn(), torch.randn(2, 3, 16, 16), "conv9", 0)


def test_mismatched_cav_and_gradient_dims():
    g = {"a": torch.randn(5, 8)}
    with pytest.raises(GcavInputError, match="gradient dim 8 != CAV dim 4"): T.tcav_scores(g, {"a": torch.randn(1, 2, 4)})


def test_nan_gradients():
    with pytest.raises(GcavInputError, match="NaN"): T.tcav_scores({"a": torch.full((3, 4), float("nan"))}, {"a": torch.randn(1, 1, 4)})
    with pytest.raises(GcavInputError, match="NaN"):
        T.gradients(small_cnn(), torch.randn(4, 3, 16, 16), "2", lambda o: o[:, 0] * float("nan"))


def test_nan_inputs():
    x = torch.randn(4, 3, 16, 16); x[1, 0, 0, 0] = float("nan")
    with pytest.raises(GcavInputError, match="NaN"): T.gradients(small_cnn(), x, "2", 0)


@pytest.mark.parametrize("inputs,err", [([], GcavInputError), (torch.zeros(0, 3, 16, 16), GcavInputError),
                                        ("a single string", TypeError), ([1, 2], TypeError), (3.5, TypeError)])
def test_empty_or_wrong_inputs(inputs, err):
    with pytest.raises(err): T.gradients(small_cnn(), inputs, "2", 0)


@pytest.mark.parametrize("target,err", [(1.5, TypeError), ([0], TypeError), (T.class_logit(7), GcavInputError)])
def test_wrong_targets(target, err):
    with pytest.raises(err): T.gradients(small_cnn(), torch.randn(2, 3, 16, 16), "2", target)


@pytest.mark.parametrize("kw,err", [(dict(test="welch"), GcavInputError), (dict(test="ttest", null=None), GcavInputError)])
def test_bad_test_arguments(kw, err):
    s = torch.rand(2, 1, 4)
    with pytest.raises(err): T.tcav_pvalues(s, **kw)


def test_wrong_cav_types():
    with pytest.raises(TypeError): T.tcav_scores({"a": torch.randn(3, 4)}, [1, 2, 3])
    with pytest.raises(TypeError): T.tcav_scores([torch.randn(3, 4)], {"a": torch.randn(1, 1, 4)})


def test_random_concept_flagged_significant_at_most_5pct():
    "Calibration: a concept made of random images, tested against random sets, is significant in <= 5% of trials (pseudo test)."
    from gcav_nb.models import load_model
    from gcav_nb.activations import collect
    from gcav_nb.cav import fit_cavs, fit_random_cavs
    m = load_model("tiny-cnn", device="cpu"); layers = ["conv1", "conv2", "conv3"]
    g = torch.Generator().manual_seed(0)
    bank_x = torch.rand(240, 3, 32, 32, generator=g)
    bank = collect(m, bank_x, layers, progress=False)
    grads = T.gradients(m, torch.rand(40, 3, 32, 32, generator=g), layers, T.class_logit(0))
    R, n, trials = 5, 20, 30
    flags = {"pseudo": [], "ttest": []}
    for t in range(trials):
        perm = torch.randperm(240, generator=torch.Generator().manual_seed(t))[:(R + 1) * n].reshape(R + 1, n)
        sets = {f"r{i}": {h: bank[h][perm[i]] for h in layers} for i in range(R + 1)}
        rnd = {k: v for k, v in sets.items() if k != "r0"}
        res = T.tcav_result(grads, fit_cavs({"concept": sets["r0"]}, rnd, layers=layers, seed=t),
                            fit_random_cavs(rnd, layers=layers, ordered=True, seed=t), T.class_logit(0), correction="none", progress=False)
        for k in flags: flags[k] += (res.retest(test=k).tests().p_value <= 0.05).tolist()
    rate = {k: float(np.mean(v)) for k, v in flags.items()}
    print("false-positive rate per layer test:", rate)
    assert rate["pseudo"] <= 0.05, rate


def test_tcav_same_seed_identical_and_hooks_gone():
    "tcav() twice with the same seed gives identical scores and p-values; no hook stays on the model."
    from gcav_nb.models import load_model
    m = load_model("tiny-cnn", device="cpu"); g = torch.Generator().manual_seed(3)
    x = torch.rand(12, 3, 32, 32, generator=g)
    conc = {"a": torch.rand(8, 3, 32, 32, generator=g)}; rnd = [torch.rand(8, 3, 32, 32, generator=g) for _ in range(3)]
    r1 = T.tcav(m, x, conc, rnd, ["conv1", "conv2"], 0, seed=5); r2 = T.tcav(m, x, conc, rnd, ["conv1", "conv2"], 0, seed=5)
    assert torch.equal(r1.scores["TCAV"], r2.scores["TCAV"]) and torch.equal(r1.null_scores["TCAV"], r2.null_scores["TCAV"])
    assert np.array_equal(r1.tests().p_value.to_numpy(), r2.tests().p_value.to_numpy(), equal_nan=True)
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())


@pytest.mark.parametrize("kw,err", [(dict(test="z"), GcavInputError), (dict(correction="holm"), GcavInputError),
                                    (dict(alpha=2.0), GcavInputError), (dict(seed="1"), GcavInputError),
                                    (dict(relative=[("a", "nope")]), UnknownNameError), (dict(hooks="conv7"), UnknownNameError),
                                    (dict(concepts={}), GcavInputError), (dict(target=1.5), TypeError),
                                    (dict(methods=[T.CAVMethod(), T.CAVMethod()]), GcavInputError),
                                    (dict(runs=1), GcavInputError), (dict(runs=4), GcavInputError), (dict(runs=True), GcavInputError)])
def test_tcav_bad_arguments_fail_before_work(kw, err):
    "Every bad argument raises before the model runs a single forward pass (counted with a forward pre-hook)."
    from gcav_nb.models import load_model
    m = load_model("tiny-cnn", device="cpu"); x = torch.rand(4, 3, 32, 32); calls = []
    h = m.register_forward_pre_hook(lambda mod, inp: calls.append(1))
    args = {"hooks": ["conv1"], "concepts": {"a": torch.rand(4, 3, 32, 32)}, "target": 0, **kw}
    try:
        with pytest.raises(err): T.run_concepts(m, x, random_sets=[torch.rand(4, 3, 32, 32) + i for i in range(3)], progress=False, **args)
    finally: h.remove()
    assert calls == [], f"{len(calls)} forward pass(es) ran before the error"


def test_runs_below_the_random_sets_keep_every_set_in_the_null():
    "runs=R fits each concept against the first R random sets; the null's pseudo-concepts use all of them; run.json says so."
    from gcav_nb.models import load_model
    m = load_model("tiny-cnn", device="cpu"); g = torch.Generator().manual_seed(2)
    x, conc = torch.rand(6, 3, 32, 32, generator=g), {"a": torch.rand(6, 3, 32, 32, generator=g)}
    rnd = [torch.rand(6, 3, 32, 32, generator=g) + 0.1 * i for i in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        part, full = (T.run_concepts(m, x, conc, rnd, "conv1", 0, runs=r, test="pseudo", progress=False) for r in (3, None))
    assert part.scores["TCAV"].shape[-1] == 3 and full.scores["TCAV"].shape[-1] == 6
    assert part.null_scores["TCAV"].shape[1] == 6 and torch.equal(part.null_scores["TCAV"], full.null_scores["TCAV"])
    assert torch.allclose(part.scores["TCAV"], full.scores["TCAV"][..., :3])     # the same first three runs
    assert part.meta["runs"] == 3 and full.meta["runs"] == 6


def test_the_forward_counter_sees_work():
    "The counter of the test above does count: a good call runs forward passes."
    from gcav_nb.models import load_model
    m = load_model("tiny-cnn", device="cpu"); calls = []
    h = m.register_forward_pre_hook(lambda mod, inp: calls.append(1))
    T.tcav(m, torch.rand(4, 3, 32, 32), {"a": torch.rand(4, 3, 32, 32)}, [torch.rand(4, 3, 32, 32) + i for i in range(3)], "conv1", 0, progress=False)
    h.remove(); assert len(calls) >= 2


# ---- the generic pipeline: methods, the null through the same method, refusing p, save/load --------------------
class Collapse(T.CAVMethod):
    "A method that replaces every run by the mean over runs: runs that are not independent samples."
    name = "collapse"
    def transform(self, cavs): return [torch.nn.functional.normalize(c.mean(1, keepdim=True).expand_as(c), dim=-1) for c in cavs]


class Record(T.CAVMethod):
    "A method that records what it is given and transforms nothing."
    name = "record"
    def fit(self, cavs, null, grads, *, layers, concepts, seed=0, progress=True):
        self.seen = dict(cavs=[c.shape for c in cavs], null=[n.shape for n in null], grads=[g.shape for g in grads], layers=layers, concepts=concepts)
        return self
    def transform(self, cavs): self.calls = getattr(self, "calls", 0) + 1; return [c.clone() for c in cavs]
    def diagnostics(self): return {"calls": self.calls}


@pytest.fixture(scope="module")
def cnn_run():
    from gcav_nb.models import load_model
    m = load_model("tiny-cnn", device="cpu"); g = torch.Generator().manual_seed(7)
    x = torch.rand(16, 3, 32, 32, generator=g)
    conc = {"red": torch.rand(10, 3, 32, 32, generator=g) * torch.tensor([1., .2, .2])[:, None, None], "noise": torch.rand(10, 3, 32, 32, generator=g)}
    rnd = [torch.rand(10, 3, 32, 32, generator=g) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return T.run_concepts(m, x, conc, rnd, ["conv1", "conv2"], 1, methods=[T.CAVMethod(), Collapse(), Record()], progress=False)


def test_every_method_sees_the_shared_work_and_its_null(cnn_run):
    "A method's fit gets per-layer concept CAVs [C, R, d], the null [N, N-1, d] and gradients [n, d]; transform runs on both."
    rec = cnn_run.diagnostics["record"]; assert rec == {"calls": 2}
    assert torch.equal(cnn_run.scores["record"], cnn_run.scores["TCAV"]) and torch.equal(cnn_run.null_scores["record"], cnn_run.null_scores["TCAV"])
    assert cnn_run.null_scores["TCAV"].shape == (2, 4, 3)


def test_collapsed_runs_get_no_pvalue(cnn_run):
    "Runs that are one vector (cosine 1) are refused a p-value, with the reason; plain TCAV's runs keep theirs."
    t = cnn_run.tests()
    col, tc = t[t.method == "collapse"], t[t.method == "TCAV"]
    assert col.p_value.isna().all() and col.reason.str.contains("collapsed").all() and not col.significant.any()
    assert tc.p_value.notna().all() and (tc.reason == "").all() and (tc.run_cosine < T.COLLAPSE).all()


def test_transformed_cavs_get_heldout_accuracy(cnn_run):
    "A method's CAVs are scored on held-out examples; for the identity-like `record` it is close to the fit's own accuracy."
    a, b = cnn_run.accuracy["record"], cnn_run.accuracy["TCAV"]
    assert a.shape == b.shape and not a.isnan().any()
    assert (a - b).abs().mean() < 0.15


def test_save_load_roundtrip(cnn_run, tmp_path):
    "save() writes the tidy scores, tests, run.json and the CAVs; load() gives back the same tests and CAVs."
    cnn_run.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"scores.csv", "tests.csv", "stability.csv", "run.json", "cavs.safetensors", "random_cavs.safetensors"}
    back = T.ConceptResult.load(tmp_path)
    pd_t, pd_b = cnn_run.tests(), back.tests()
    assert pd_t.drop(columns="cav_accuracy").equals(pd_b.drop(columns="cav_accuracy"))
    assert np.allclose(pd_t.cav_accuracy, pd_b.cav_accuracy, equal_nan=True)
    assert torch.equal(back.cavs["conv1"], cnn_run.cavs["conv1"]) and back.meta["seed"] == 0 and "versions" in back.meta


def test_power_warning_when_nothing_can_be_significant():
    "With 3 random sets the pseudo test cannot pass Bonferroni over many tests: a warning says so, p_min shows why."
    s, n = torch.full((20, 4, 3), 0.9), torch.tensor([[0.45, 0.45], [0.5, 0.5], [0.55, 0.55]]).expand(20, 3, 2)   # null means 0.45, 0.5, 0.55
    with pytest.warns(UserWarning, match="cannot reach"):
        r = T.ConceptResult([f"l{i}" for i in range(20)], list("abcd"), {"TCAV": s}, {"TCAV": n}, test="pseudo")
    assert (r.tests().p_min > 0.05 / 80).all() and not r.tests().significant.any()


def test_prepend_bos_reaches_gradients_and_metadata(tiny_llama):
    "prepend_bos changes the tokens the gradients and the activations see, and the effective value is recorded in the metadata."
    from gcav_nb.models import default_prepend_bos
    hooks = "blocks.0.hook_resid_post"
    a = T.gradients(tiny_llama, ["the day was cold"], hooks, " positive", prepend_bos=True, progress=False)
    b = T.gradients(tiny_llama, ["the day was cold"], hooks, " positive", prepend_bos=False, progress=False)
    assert not torch.allclose(a[hooks], b[hooks])
    sets = {"c": ["warm sun", "hot day", "summer heat"]}; rnd = [["a cat", "the box", "red car"], ["go now", "blue sky", "old tree"]]
    r = T.tcav(tiny_llama, ["it is cold", "so cold"], sets, rnd, hooks, " positive", progress=False)
    assert r.meta["prepend_bos"] == default_prepend_bos(tiny_llama) and isinstance(r.meta["prepend_bos"], bool)
    flip = T.tcav(tiny_llama, ["it is cold", "so cold"], sets, rnd, hooks, " positive", prepend_bos=not r.meta["prepend_bos"], progress=False)
    assert flip.meta["prepend_bos"] is (not r.meta["prepend_bos"]) and not torch.equal(flip.cavs[hooks], r.cavs[hooks])


def test_cache_makes_a_rerun_reuse_activations(tmp_path):
    "run_concepts(cache=folder) writes the activations there; a rerun reads them (no forward pass over the sets) and scores the same."
    from gcav_nb.models import load_model
    m = load_model("tiny-cnn", device="cpu"); g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 3, 32, 32, generator=g); conc = {"a": torch.rand(6, 3, 32, 32, generator=g)}
    rnd = [torch.rand(6, 3, 32, 32, generator=g) + i for i in range(3)]
    first = T.run_concepts(m, x, conc, rnd, "conv1", 0, progress=False, cache=tmp_path)
    assert any(tmp_path.rglob("*.safetensors"))
    calls = []; h = m.register_forward_pre_hook(lambda mod, inp: calls.append(len(inp[0])))
    again = T.run_concepts(m, x, conc, rnd, "conv1", 0, progress=False, cache=tmp_path); h.remove()
    assert sum(calls) == len(x) and torch.equal(again.scores["TCAV"], first.scores["TCAV"])   # only the inputs' forward+backward ran


def test_tcav_takes_every_run_concepts_argument(tmp_path):
    "tcav is run_concepts with plain TCAV: same arguments (methods aside) and defaults; cache= reaches collect (tcav once lacked it)."
    import inspect
    from gcav_nb.models import load_model
    want = {k: p.default for k, p in inspect.signature(T.run_concepts).parameters.items() if k != "methods"}
    assert {k: p.default for k, p in inspect.signature(T.tcav).parameters.items()} == want
    assert all(f"\n    {k}" in T.tcav.__doc__ for k in want)                 # help(tcav) lists every parameter ...
    assert "rerun resumes" in T.tcav.__doc__ and "hook names, glob or predicate" in T.tcav.__doc__   # ... with run_concepts' descriptions
    m = load_model("tiny-cnn", device="cpu"); g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 3, 32, 32, generator=g); conc = {"a": torch.rand(6, 3, 32, 32, generator=g)}
    rnd = [torch.rand(6, 3, 32, 32, generator=g) + i for i in range(3)]
    r = T.tcav(m, x, conc, rnd, "conv1", 0, progress=False, cache=tmp_path, seed=4)
    assert any(tmp_path.rglob("*.safetensors")) and r.methods == ["TCAV"] and r.meta["seed"] == 4
    with pytest.raises(TypeError, match="methods"): T.tcav(m, x, conc, rnd, "conv1", 0, methods=[T.CAVMethod()])


def test_progress_bars_are_on_by_default(capsys):
    "tcav() without a progress argument shows its bars (a 90-second first example is not silent); progress=False hides them."
    from gcav_nb.models import load_model
    m = load_model("tiny-cnn", device="cpu"); g = torch.Generator().manual_seed(3)
    x, conc = torch.rand(4, 3, 32, 32, generator=g), {"a": torch.rand(4, 3, 32, 32, generator=g)}
    rnd = [torch.rand(4, 3, 32, 32, generator=g) + i for i in range(3)]
    T.tcav(m, x, conc, rnd, "conv1", 0)
    err = capsys.readouterr().err
    assert "100%" in err and "collect" in err, err[-500:]
    T.tcav(m, x, conc, rnd, "conv1", 0, progress=False)
    assert "100%" not in capsys.readouterr().err


def test_shared_work_is_done_once_for_every_concept(monkeypatch):
    "Three concepts: one collect over all sets, one batched CAV fit, one gradient pass over the inputs (issue 8 §1, the atlas)."
    from gcav_nb.models import load_model
    calls = {k: 0 for k in ("collect_sets", "fit_tcav_cavs", "gradients")}
    def counted(name):
        real = getattr(T, name)
        def f(*a, **k): calls[name] += 1; return real(*a, **k)
        return f
    for name in calls: monkeypatch.setattr(T, name, counted(name))
    m = load_model("tiny-cnn", device="cpu"); g = torch.Generator().manual_seed(5)
    conc = {c: torch.rand(6, 3, 32, 32, generator=g) for c in ("a", "b", "c")}
    rnd = [torch.rand(6, 3, 32, 32, generator=g) + i for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = T.tcav(m, torch.rand(5, 3, 32, 32, generator=g), conc, rnd, ["conv1", "conv2"], 0, progress=False)
    assert calls == {"collect_sets": 1, "fit_tcav_cavs": 1, "gradients": 1}, calls
    assert r.scores["TCAV"].shape == (2, 3, 3)

def test_run_json_keeps_tables_whole():
    "A method's diagnostics table goes into run.json as row records, not a truncated repr."
    import pandas as pd
    from gcav_nb.tcav import _plain
    df = pd.DataFrame(dict(concept=[f"c{i}" for i in range(12)], cos=[0.5] * 12))
    out = json.loads(json.dumps(_plain({"TGCAV": {"table": df, "max": np.float64(0.5)}})))
    assert out == {"TGCAV": {"table": df.to_dict(orient="records"), "max": 0.5}}
