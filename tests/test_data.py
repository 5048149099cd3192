"""Bad-input matrix and determinism for gcav_nb.data (concept sets, loaders, templates, corpus)."""
import json
import pytest
import torch
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.data import (ConceptSet, load_concepts, concept_names, random_pool, random_sets, load_templates,
                          apply_template, text_corpus, corpus_info)

IMGS = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))

def _nan_imgs():
    x = IMGS.clone(); x[1, 2, 3, 4] = float("nan"); return x

def _inf_imgs():
    x = IMGS.clone(); x[3, 0, 0, 0] = float("inf"); return x

@pytest.mark.parametrize("examples,err,contains", [
    ([], GcavInputError, "empty"),
    (["one"], GcavInputError, "one example"),
    (["a", "b", "a"], GcavInputError, "example 2 duplicates example 0"),
    (["a", 3], TypeError, "example 1 is int 3"),
    (["a", None], TypeError, "example 1 is NoneType"),
    (["a", b"bytes"], TypeError, "bytes"),
    (["a", float("nan")], TypeError, "float nan"),
    (["a", ""], GcavInputError, "blank"),
    ("just a string", TypeError, "not one string"),
    ({"a": 1}, TypeError, "dict"),
    (42, TypeError, "int"),
    (_nan_imgs(), GcavInputError, "image 1 has NaN"),
    (_inf_imgs(), GcavInputError, "image 3 has NaN or infinite"),
    (IMGS[:1], GcavInputError, "one image"),
    (IMGS[:0], GcavInputError, "empty"),
    (IMGS[0], GcavInputError, "[n, C, H, W]"),
    ((IMGS * 255).to(torch.uint8), TypeError, "float"),
    (torch.cat([IMGS, IMGS[:1]]), GcavInputError, "image 4 duplicates image 0"),
])
def test_concept_set_rejects_bad_examples(examples, err, contains):
    "Each kind of bad concept data fails at construction with a message naming the value."
    with pytest.raises(err) as e: ConceptSet("c", examples)
    assert contains in str(e.value)

@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_concept_set_rejects_bad_names(name):
    "A concept needs a non-empty string name."
    with pytest.raises(GcavInputError, match="name"): ConceptSet(name, ["a", "b"])

def test_hash_depends_on_content_only():
    "Same examples, same hash; any change (order, one character, image pixel) changes it."
    a = ConceptSet("x", ["a", "b"], source="one"); b = ConceptSet("x", ["a", "b"], source="two")
    assert a.hash == b.hash and len(a.hash) == 12
    assert ConceptSet("x", ["b", "a"]).hash != a.hash and ConceptSet("x", ["a", "b."]).hash != a.hash
    x = IMGS.clone(); x[0, 0, 0, 0] += 1e-3
    assert ConceptSet("i", IMGS).hash != ConceptSet("i", x).hash

@pytest.mark.parametrize("n", [0, 1, 5, -1, 2.0, True])
def test_sample_rejects_bad_sizes(n):
    "sample() needs 2 <= n <= len."
    with pytest.raises(GcavInputError): ConceptSet("x", ["a", "b", "c"]).sample(n)

def test_sample_is_seeded():
    "Same seed, same subset; different seed, usually a different one."
    c = load_concepts("animals")["animals"]
    assert list(c.sample(10, seed=3)) == list(c.sample(10, seed=3))
    assert list(c.sample(10, seed=3)) != list(c.sample(10, seed=4))

@pytest.mark.parametrize("fname,content,err,contains", [
    ("dup.txt", "same\nsame\n", GcavInputError, "duplicates"),
    ("one.txt", "only one\n", GcavInputError, "one example"),
    ("empty.txt", "\n\n", GcavInputError, "empty"),
    ("bad.json", json.dumps({"rows": ["a", "b"]}), GcavInputError, "'examples'"),
    ("nums.json", json.dumps([1, 2]), TypeError, "example 0 is int"),
    ("x.xlsx", "", GcavInputError, ".xlsx"),
    ("c.csv", "id,text\n", GcavInputError, "no rows"),
])
def test_from_file_bad_files(tmp_path, fname, content, err, contains):
    "Bad concept files fail clearly, naming the problem."
    p = tmp_path/fname; p.write_text(content)
    with pytest.raises(err, match=contains.replace(".", r"\.")): ConceptSet.from_file(p)

def test_from_file_missing(tmp_path):
    "A missing file names the path."
    with pytest.raises(FileNotFoundError, match="nope"): ConceptSet.from_file(tmp_path/"nope.txt")

def test_from_folder_bad(tmp_path):
    "A folder without images (or no folder) fails clearly."
    with pytest.raises(GcavInputError, match="no images"): ConceptSet.from_folder(tmp_path)
    with pytest.raises(FileNotFoundError): ConceptSet.from_folder(tmp_path/"missing")

def test_from_hf_without_network_fails_clearly(monkeypatch):
    "from_hf offline gives a GcavInputError naming the dataset, not a hang or a raw traceback."
    monkeypatch.setenv("HF_HUB_OFFLINE", "1"); monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(GcavInputError, match="no-such/dataset"): ConceptSet.from_hf("no-such/dataset")

@pytest.mark.parametrize("names,contains", [("praise ", "praise"), (["food", "animls"], "animals"), ("nothing", "known")])
def test_load_concepts_unknown(names, contains):
    "Unknown bundled concept names raise UnknownNameError with close matches / the known names."
    with pytest.raises(UnknownNameError, match=contains): load_concepts(names)

def test_bundled_concepts_are_valid_and_distinct():
    ">= 8 concepts of >= 50 examples, the required topics present, no sentence in two concepts or in the random pool."
    cs = load_concepts()
    assert len(cs) >= 8 and all(len(c) >= 50 for c in cs.values())
    assert {"praise", "complaint", "food", "questions", "hot_weather", "cold_weather", "animals", "numbers", "kitchen_tools"} <= set(cs)
    texts = [t for c in cs.values() for t in c]
    assert len(texts) == len(set(texts))
    pool = random_pool()
    assert len(pool) >= 2000 and len(set(pool)) == len(pool) and not set(pool) & set(texts)
    assert concept_names() == list(cs)

@pytest.mark.parametrize("args,err", [((0, 10), GcavInputError), ((2, 1), GcavInputError), ((2, 10**6), GcavInputError),
                                      ((2.0, 10), GcavInputError), ((2, "10"), GcavInputError)])
def test_random_sets_bad_args(args, err):
    "random_sets validates its sizes."
    with pytest.raises(err): random_sets(*args)

def test_random_sets_deterministic():
    "Same seed, same sets; sets are duplicate-free."
    a, b = random_sets(4, 30, seed=7), random_sets(4, 30, seed=7)
    assert [x.hash for x in a] == [x.hash for x in b]
    assert random_sets(1, 30, seed=8)[0].hash != a[0].hash

@pytest.mark.parametrize("texts,templates,err,contains", [
    (["a"], ["no slot"], GcavInputError, "{text}"),
    (["a"], ["{text} and {text}"], GcavInputError, "exactly one"),
    (["a"], [], GcavInputError, "no templates"),
    (["a"], "sentimnet", UnknownNameError, "sentiment"),
    ([], "weather", GcavInputError, "empty"),
    (["a", 1], "weather", TypeError, r"texts\[1\]"),
    ("a", "weather", TypeError, "list"),
])
def test_apply_template_bad_input(texts, templates, err, contains):
    "Bad templates or texts fail clearly."
    with pytest.raises(err, match=contains.replace("{", r"\{").replace("}", r"\}")): apply_template(texts, templates)

def test_apply_template_balanced_and_seeded():
    "Every template is used about equally, and the assignment depends only on the seed."
    fam = load_templates("sentiment")["templates"]
    texts = [f"text {i}" for i in range(len(fam) * 3)]
    out = apply_template(texts, "sentiment", seed=1)
    used = [next(j for j, t in enumerate(fam) if o == t.replace("{text}", x)) for o, x in zip(out, texts)]
    assert sorted(used) == sorted(list(range(len(fam))) * 3)
    assert out == apply_template(texts, "sentiment", seed=1)

def test_templates_have_dozens_and_answers():
    "At least 30 bundled templates; sentiment and weather families carry their answer words."
    fams = load_templates()
    assert sum(len(f["templates"]) for f in fams.values()) >= 30
    assert fams["sentiment"]["answers"] == [" positive", " negative"] and fams["weather"]["answers"] == [" cold", " hot"]

def test_text_corpus_size_and_determinism():
    "The offline corpus has >= 300k SmolLM2 tokens, and n_tokens truncation is deterministic."
    info = corpus_info()
    assert info["tokens"] >= 300_000
    assert text_corpus(n_tokens=2000) == text_corpus(n_tokens=2000)
    assert len(text_corpus("templated")) == info["parts"]["templated"]["documents"]

@pytest.mark.parametrize("kw,err", [(dict(name="shakespeare"), UnknownNameError), (dict(n_tokens=0), GcavInputError),
                                    (dict(n_tokens=-5), GcavInputError), (dict(name=3), TypeError)])
def test_text_corpus_bad_args(kw, err):
    "Unknown corpus names and bad token counts fail."
    with pytest.raises(err): text_corpus(**kw)
