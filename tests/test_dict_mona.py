"""gcav_nb.dictionaries.mona: bad input fails early, the similarities against their definitions, selection
deterministic per seed, and (cpu) the direction of the notebook's main effect on SmolLM2: selecting Brown sentences of
a target genre by mean SAE code + generalised Jaccard picks more in-genre examples than random selection."""
import pytest
import torch
from gcav_nb.config import GcavInputError, get_scale
from gcav_nb.dictionaries.core import make_sae
from gcav_nb.dictionaries.mona import mean_by_example, similarity, select, precision, random_select, sae_embeddings

cpu_only = pytest.mark.skipif(get_scale() != "cpu", reason="a cpu-scale result: run with GCAV_NB_SCALE=cpu")

@pytest.mark.parametrize("call, contains", [
    (lambda: similarity(torch.ones(3, 2), torch.ones(2, 3)), "width"),
    (lambda: similarity(torch.ones(0, 2), torch.ones(2, 2)), "pool is empty"),
    (lambda: similarity(torch.ones(3, 2), torch.ones(0, 2)), "target is empty"),
    (lambda: similarity(torch.tensor([[float("nan"), 1.0]]), torch.ones(1, 2)), "NaN"),
    (lambda: similarity(torch.ones(3), torch.ones(1, 3)), "float tensor"),
    (lambda: similarity(-torch.ones(3, 2), torch.ones(1, 2)), "non-negative"),
    (lambda: similarity(torch.ones(3, 2), torch.ones(1, 2), "euclid"), "unknown similarity"),
    (lambda: select(torch.ones(3), 0), "k must"),
    (lambda: select(torch.ones(3), 4), "k must"),
    (lambda: random_select(3, 4), "k must"),
    (lambda: mean_by_example(torch.ones(4, 2), torch.tensor([0, 0, 2, 2]), 3), "no tokens"),
    (lambda: mean_by_example(torch.ones(4, 2), torch.tensor([0, 5, 1, 1]), 2), "index 5"),
    (lambda: mean_by_example(torch.full((2, 2), float("inf")), torch.tensor([0, 1]), 2), "NaN/inf"),
    (lambda: sae_embeddings(make_sae("topk", 4, 8, k=2), torch.ones(3, 5), torch.tensor([0, 0, 1]), 2), "d_in=4"),
])
def test_bad_input_fails_with_a_clear_error(call, contains):
    with pytest.raises(GcavInputError, match=contains): call()

def test_generalised_jaccard_equals_its_definition():
    g = torch.Generator().manual_seed(0)
    P, T = torch.rand(20, 7, generator=g), torch.rand(3, 7, generator=g)
    z = T.double().mean(0)
    want = torch.tensor([float(torch.minimum(p.double(), z).sum() / torch.maximum(p.double(), z).sum()) for p in P], dtype=torch.float64)
    assert torch.allclose(similarity(P, T), want, atol=1e-12)
    assert torch.allclose(similarity(T.mean(0, keepdim=True), T), torch.ones(1, dtype=torch.float64))   # the prototype itself scores 1

def test_selection_is_deterministic_and_ranked():
    s = torch.tensor([0.3, 0.9, 0.3, 0.1])
    assert select(s, 3).tolist() == [1, 0, 2]
    assert torch.equal(random_select(50, 10, seed=4), random_select(50, 10, seed=4))
    assert not torch.equal(random_select(50, 10, seed=4), random_select(50, 10, seed=5))
    assert precision(torch.tensor([0, 1]), torch.tensor([True, False, True])) == 0.5

@cpu_only
def test_cpu_mona_selects_more_in_genre_examples_than_random():
    "cpu: a small version of 27_mona on SmolLM2 block 28: 5 genres, K=32 SAE; MoNA precision > random precision."
    import tempfile
    from gcav_nb.models import load_model
    from gcav_nb.data import brown_genre_sets
    from gcav_nb.store import ActivationStore
    from gcav_nb.dictionaries.core import train_sae
    from gcav_nb.dictionaries.snmf import token_rows
    m = load_model("smollm2-135m"); hook = "blocks.28.hook_resid_post"
    sets = brown_genre_sets(n=40, seed=0, genres=["news", "religion", "hobbies", "romance", "learned"])
    G = list(sets)
    pool = [(t, i) for i, g in enumerate(G) for t in sets[g].examples[:30]]
    targ = [(t, i) for i, g in enumerate(G) for t in sets[g].examples[30:]]
    rows, which = token_rows(m, [t for t, _ in pool + targ], hook)
    store = ActivationStore.build(m, "brown", hook, tempfile.mkdtemp() + "/s", ctx=128, n_tokens=16_384, prepend_bos=True, seed=1, progress=False)
    sae, _ = train_sae(store, hook, "topk", d_sae=2304, training_tokens=32_768, batch_size=256, lr=1e-3, seed=0, progress=False, k=32)
    E = sae_embeddings(sae, rows, which, len(pool) + len(targ))
    lp, lt = torch.tensor([i for _, i in pool]), torch.tensor([i for _, i in targ])
    mona = sum(precision(select(similarity(E[:len(pool)], E[len(pool):][lt == g]), 30), lp == g) for g in range(len(G))) / len(G)
    rnd = sum(precision(random_select(len(pool), 30, seed=g), lp == g) for g in range(len(G))) / len(G)
    assert mona > rnd, (mona, rnd)
