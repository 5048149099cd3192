"""gcav_nb.dictionaries.sparse_cbm (28_sparse_cbm): bad input fails early (before any forward pass), the selection
reads exactly n_active distinct concepts, same seed -> same bottleneck, the CBL losses against their definitions, and
(cpu) the direction of the notebook's main effect on SmolLM2: concept directions beat random directions at m = 1."""
import math
import pytest
import torch
import torch.nn.functional as F
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.dictionaries.sparse_cbm import (GENRES, CBL_LOSSES, concept_vocabulary, unit_rows, random_directions, embed_concepts,
                                             concept_scores, SparseCBM, cbl_loss, fit_cbm, evaluate_cbm)

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")
H1 = "blocks.1.hook_resid_post"

from conftest import ForwardRan, tripwire as _tripwire

def _toy(n=120, k=10, seed=0):
    g = torch.Generator().manual_seed(seed); y = torch.arange(n) % 3
    s = torch.randn(n, k, generator=g); s[torch.arange(n), y] += 4.0
    return s, y

Y4 = torch.tensor([0, 1, 0, 1])
BAD_DATA = {
    "repeated phrases": (lambda: concept_vocabulary({"a": ["x"], "b": ["x"]}, []), "repeat"),
    "zero direction": (lambda: unit_rows(torch.zeros(2, 3)), "all zeros"),
    "nan direction": (lambda: unit_rows(torch.tensor([[math.nan, 1.0]])), "NaN"),
    "1-d directions": (lambda: unit_rows(torch.ones(3)), r"\[k, d\]"),
    "k zero": (lambda: random_directions(0, 4), "k must"),
    "d bool": (lambda: random_directions(2, True), "d must"),
    "scores width": (lambda: concept_scores(torch.ones(3, 4), torch.ones(2, 5)), "width"),
    "scores nan": (lambda: concept_scores(torch.tensor([[math.nan, 1.0]]), torch.ones(1, 2)), "NaN"),
    "scores empty": (lambda: concept_scores(torch.zeros(0, 2), torch.ones(1, 2)), "non-empty"),
    "scores mu shape": (lambda: concept_scores(torch.ones(3, 2), torch.ones(1, 2), mu=torch.zeros(3)), "mu must"),
    "scores std zero": (lambda: concept_scores(torch.ones(3, 2), torch.ones(1, 2), std=torch.zeros(2)), "std must"),
    "scores std shape": (lambda: concept_scores(torch.ones(3, 2), torch.ones(1, 2), std=torch.ones(3)), "std must"),
    "n_active too big": (lambda: SparseCBM(3, 2, n_active=4), "n_active"),
    "n_active zero": (lambda: SparseCBM(3, 2, n_active=0), "n_active"),
    "one class": (lambda: SparseCBM(3, 1), "n_classes"),
    "bad tau": (lambda: SparseCBM(3, 2, tau=(1.0, 0.0)), "tau"),
    "unknown loss": (lambda: cbl_loss(SparseCBM(3, 2), torch.ones(2, 3), "l2"), "unknown CBL loss"),
    "l1 without cbl": (lambda: cbl_loss(SparseCBM(3, 2, cbl=False), torch.ones(2, 3), "l1"), "no CBL"),
    "labels out of range": (lambda: fit_cbm(torch.randn(4, 2), Y4 - 1), "labels must be in"),
    "float labels": (lambda: fit_cbm(torch.randn(4, 2), Y4.float()), "int tensor"),
    "labels length": (lambda: fit_cbm(torch.randn(4, 2), Y4[:3]), "int tensor"),
    "one class only": (lambda: fit_cbm(torch.randn(4, 2), torch.zeros(4, dtype=torch.long)), "one class"),
    "nan scores": (lambda: fit_cbm(torch.full((4, 2), math.nan), Y4), "NaN"),
    "loss with selection": (lambda: fit_cbm(torch.randn(4, 2), Y4, n_active=1, loss="gumbel"), "needs the CBL"),
    "steps zero": (lambda: fit_cbm(torch.randn(4, 2), Y4, steps=0), "steps must"),
    "eval width": (lambda: evaluate_cbm(SparseCBM(3, 2), torch.randn(4, 5), Y4), "concept scores"),
}

@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_bad_input_is_refused(case):
    fn, msg = BAD_DATA[case]
    with pytest.raises(GcavInputError, match=msg): fn()

BAD_MODEL = {
    "one phrase": (lambda m: embed_concepts(m, ["only"], H1), "at least 2"),
    "a string": (lambda m: embed_concepts(m, "gardening", H1), "at least 2"),
    "empty phrase": (lambda m: embed_concepts(m, ["a", " "], H1), "non-empty"),
    "repeated phrase": (lambda m: embed_concepts(m, ["a", "a"], H1), "repeat"),
    "template without slot": (lambda m: embed_concepts(m, ["a", "b"], H1, template="about it"), "template"),
    "several hooks": (lambda m: embed_concepts(m, ["a", "b"], "blocks.*.hook_resid_post"), "exactly one"),
}

@pytest.mark.parametrize("case", BAD_MODEL, ids=list(BAD_MODEL))
def test_bad_model_input_fails_before_any_forward(case, tiny):
    fn, msg = BAD_MODEL[case]
    with _tripwire(tiny):
        with pytest.raises(GcavInputError, match=msg): fn(tiny)

def test_selection_reads_n_active_distinct_concepts():
    "The hard selection never repeats a concept, whatever the logits (rows sample without replacement)."
    m = SparseCBM(6, 2, n_active=4).eval()
    with torch.no_grad(): m.select.copy_(torch.zeros(4, 6)); m.select[:, 2] = 5.0    # every row prefers concept 2
    assert len(m.active_concepts()) == 4 and m.selected()[0] == 2
    torch.testing.assert_close(m.selection().sum(-1), torch.ones(4))

def test_same_seed_same_bottleneck():
    s, y = _toy()
    a, ha = fit_cbm(s, y, n_active=3, steps=50, seed=3)
    b, hb = fit_cbm(s, y, n_active=3, steps=50, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()): assert ka == kb and torch.equal(va, vb), ka
    assert ha.train_loss.tolist() == hb.train_loss.tolist()

def test_selection_finds_the_informative_concepts():
    "On a toy where concept j carries class j (j < 3) among 7 distractors, the 3-concept selection reads concepts 0, 1, 2."
    s, y = _toy()
    m, _ = fit_cbm(s[:90], y[:90], n_active=3, steps=400, lr=0.05)
    assert m.active_concepts() == [0, 1, 2]
    assert evaluate_cbm(m, s[90:], y[90:])["accuracy"] > evaluate_cbm(m, s[90:], y[90:].roll(1))["accuracy"]   # vs shuffled labels

def test_cbl_losses_match_their_definitions():
    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.0, 0.0]]); m = SparseCBM(3, 2)
    want = -(torch.diagonal(F.log_softmax(z, 0)).mean() + torch.diagonal(F.log_softmax(z, 1)).mean()) / 2
    torch.testing.assert_close(cbl_loss(m, z, "contrastive"), want)
    torch.testing.assert_close(cbl_loss(m, z, "l1"), torch.tensor(1.0))          # identity CBL
    torch.manual_seed(0); g1 = cbl_loss(m, z, "gumbel"); torch.manual_seed(0); g2 = cbl_loss(m, z, "gumbel")
    assert torch.equal(g1, g2) and float(g1) > 0
    assert set(CBL_LOSSES) == {"none", "contrastive", "gumbel", "l1"}

def test_concept_scores_are_cosines():
    x = torch.randn(5, 4); c = unit_rows(torch.randn(3, 4)); mu = torch.randn(4)
    torch.testing.assert_close(concept_scores(x, c, mu), F.cosine_similarity((x - mu)[:, None], c[None], dim=-1), atol=1e-6, rtol=1e-5)

@cpu_only
def test_cpu_directions_on_smollm2_match_the_saved_run():
    """cpu (28_sparse_cbm's saved run: probe 0.59, all 56 concept directions 0.21, 56 random directions 0.44 on Brown
    genres, SmolLM2 layer 15): the dense probe on h beats the dense concept bottleneck, and so do random directions (the
    null result the notebook reports); on standardised scores (`std=`, the notebook's fix: 0.51 vs 0.43) the concept
    directions beat the random ones."""
    from gcav_nb.models import load_model
    from gcav_nb.data import brown_genre_sets
    from gcav_nb.activations import collect_sets
    m = load_model("smollm2-135m"); hook = "blocks.15.hook_resid_post"; n = 60
    sets = brown_genre_sets(n, seed=0, genres=list(GENRES))
    acts = collect_sets(m, sets, hook, pooling="mean", progress=False)
    X = torch.cat([acts[g][hook] for g in GENRES]); y = torch.arange(len(GENRES)).repeat_interleave(n)
    tr = (torch.arange(len(X)) % n) < int(0.7 * n); te = ~tr
    C = embed_concepts(m, concept_vocabulary().concept.tolist(), hook); mu = X[tr].mean(0)
    def acc(S, seed): return evaluate_cbm(fit_cbm(S[tr], y[tr], len(GENRES), steps=400, lr=2e-2, seed=seed, cbl=False)[0], S[te], y[te])["accuracy"]
    probe = acc(X, 0)
    concepts = sum(acc(concept_scores(X, C, mu), s) for s in range(3)) / 3
    rand = sum(acc(concept_scores(X, random_directions(len(C), X.shape[1], seed=100 + s), mu), s) for s in range(3)) / 3
    assert probe > concepts, (probe, concepts)
    assert rand > concepts, (rand, concepts)
    sd = X[tr].std(0).clamp_min(1e-6)
    concepts_std = sum(acc(concept_scores(X, C, mu, std=sd), s) for s in range(3)) / 3
    rand_std = sum(acc(concept_scores(X, random_directions(len(C), X.shape[1], seed=100 + s), mu, std=sd), s) for s in range(3)) / 3
    assert concepts_std > rand_std, (concepts_std, rand_std)
