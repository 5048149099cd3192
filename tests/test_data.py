"""Bad-input matrix and determinism for gcav_nb.data (concept sets, loaders, templates, corpus)."""
import json
import pytest
import torch
from gcav_nb.config import GcavInputError, UnknownNameError
import hashlib, re, warnings
from gcav_nb.data import (ConceptSet, load_concepts, concept_names, random_pool, random_sets, load_templates,
                          apply_template, text_corpus, corpus_info, check_sets, text_sets, download, BROWN,
                          brown_documents, brown_genre_sets, untag, detokenize)

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

def test_pydoc_corpus_size_and_determinism():
    "The Python-docs corpus has >= 300k SmolLM2 tokens, and n_tokens truncation is deterministic."
    info = corpus_info("pydoc")
    assert info["tokens"] >= 300_000
    assert text_corpus("pydoc", n_tokens=2000) == text_corpus("pydoc", n_tokens=2000)
    assert len(text_corpus("templated")) == info["parts"]["templated"]["documents"]

def test_brown_is_the_default_corpus_with_15_genres():
    "text_corpus() is Brown: 500 files, 15 genres, ~1.16M words, the pinned tarball, deterministic prefixes."
    info = corpus_info()
    assert info["tgz_sha256"] == BROWN["sha256"] and info["version"] == "1.9.80"
    assert info["files"] == 500 and len(info["genres"]) == 15
    assert 1_100_000 <= info["words"] <= 1_200_000 and info["tokens"] > info["words"]
    assert text_corpus(n_tokens=20_000) == text_corpus("brown", n_tokens=20_000)
    files = list(dict.fromkeys((d["fileid"], d["genre"]) for d in brown_documents()))
    assert len({g for _, g in files[:15]}) == 15, "the first 15 files are one per genre"

def test_brown_has_no_tags_left():
    "No `word/tag` tokens and no Brown quote marks survive in the plain text."
    tagged = re.compile(r"\w/(at|nn|nns|vbd|vbz|jj|rb|cs|ppss|np)\b")
    docs = text_corpus("brown")
    assert not any(tagged.search(d) for d in docs)
    assert not any("``" in d for d in docs)   # opening quotes became '"' ('' stays only inside words: inch marks like 10'')

def test_brown_detokenization():
    "Punctuation attaches to its neighbour; words with a slash keep it."
    assert untag("The/at ratio/nn 1/2/cd ./.") == ["The", "ratio", "1/2", "."]
    assert detokenize(["``", "Yes", "''", ",", "he", "said", "(", "twice", ")", ";", "then", "left", "."]) == '"Yes", he said (twice); then left.'

def test_brown_genre_sets_are_seeded_valid_concepts():
    "One ConceptSet per genre, seeded, sentences of 8-40 words, all distinct across genres."
    a, b = brown_genre_sets(20, seed=3), brown_genre_sets(20, seed=3)
    assert list(a) == list(b) and [x.hash for x in a.values()] == [x.hash for x in b.values()]
    assert len(a) == 15 and all(len(x) == 20 for x in a.values())
    assert all(8 <= len(s.split()) <= 40 for x in a.values() for s in x)
    check_sets(a, None)
    with pytest.raises(GcavInputError, match="science_fiction"): brown_genre_sets(5000, genres=["science_fiction"])
    with pytest.raises(UnknownNameError, match="known"): brown_genre_sets(5, genres=["poetry"])

def test_download_checks_checksum_and_reuses_cache(tmp_path, monkeypatch):
    "download: right sha -> cached file reused without the source; wrong sha -> clear error, nothing cached."
    monkeypatch.setenv("GCAV_NB_CACHE", str(tmp_path/"cache"))
    src = tmp_path/"f.txt"; src.write_bytes(b"abc"); sha = hashlib.sha256(b"abc").hexdigest()
    f = download(src.as_uri(), sha, "f.txt"); src.unlink()
    assert download(src.as_uri(), sha, "f.txt") == f and f.read_bytes() == b"abc"
    other = tmp_path/"g.txt"; other.write_bytes(b"xyz")
    with pytest.raises(GcavInputError, match="expected " + sha): download(other.as_uri(), sha, "g.txt")
    assert sorted(p.name for p in (tmp_path/"cache"/"downloads").iterdir()) == ["f.txt"]
    f.write_bytes(b"abd")
    with pytest.raises(GcavInputError, match="delete it"): download(src.as_uri(), sha, "f.txt")

def test_download_without_network_names_the_url(tmp_path, monkeypatch):
    "An unreachable URL gives a ConnectionError naming it and where to put the file."
    monkeypatch.setenv("GCAV_NB_CACHE", str(tmp_path))
    with pytest.raises(ConnectionError, match=r"http://127\.0\.0\.1:9/corpus\.tgz.*copy the file"):
        download("http://127.0.0.1:9/corpus.tgz", "0" * 64, "corpus.tgz")

def test_load_concepts_n_larger_than_available_fails():
    "n=10000 on a 120-example concept fails naming the available count (it used to return 120 silently)."
    with pytest.raises(GcavInputError, match="has 120 examples"): load_concepts("food", n=10_000)
    assert len(load_concepts("food", n=120)["food"]) == 120
    for bad in (0, 1, 2.5, True):
        with pytest.raises(GcavInputError, match="n must be"): load_concepts("food", n=bad)

def test_hash_is_independent_of_name_and_source():
    "ConceptSet.hash is public and content-only: renaming a set keeps its hash (CAV splits are seeded by it)."
    a, b = ConceptSet("praise", ["good", "great"], source="x"), ConceptSet("other", ["good", "great"], source="y")
    assert a.hash == b.hash and a != b
    assert "hash" in ConceptSet.__dict__ and isinstance(ConceptSet.__dict__["hash"], property)

TWO = ["x y", "z w"]
@pytest.mark.parametrize("concepts,randoms,err,contains", [
    ({}, None, GcavInputError, "no concept sets"),
    ({"c": TWO}, [], GcavInputError, "no random sets"),
    ("praise", None, TypeError, "got str"),
    ([TWO], None, TypeError, "list of ConceptSets"),
    ({"c": 3}, None, TypeError, "got int"),
    ({"c": "one string"}, None, TypeError, "not one string"),
    ({"c": []}, None, GcavInputError, "empty"),
    ({"c": ["a"]}, None, GcavInputError, "one example"),
    ({"c": ["a", "b", "a"]}, None, GcavInputError, "duplicates"),
    ({"c": ["a", "  "]}, None, GcavInputError, "blank"),
    ({"c": ["a", ""]}, None, GcavInputError, "blank"),
    ({"c": ["a", None]}, None, TypeError, "example 1 is NoneType"),
    ({"": TWO}, None, GcavInputError, "name"),
    ({"c": TWO}, [["r1", "r1"]], GcavInputError, "duplicates"),
    ({"c": TWO}, [["only"]], GcavInputError, "one example"),
    ({"c": TWO}, [list(reversed(TWO)), ["p", "q"]], GcavInputError, "same examples as random set 'random_0'"),
    ({"c": TWO}, [["p", "q"], ("q", "p")], GcavInputError, "random sets 'random_0' and 'random_1'"),
    ({"c": TWO}, {"c": ["p", "q"]}, GcavInputError, "both as concept and random"),
    ({"c": TWO}, [ConceptSet("r", ["p", "q"]), ConceptSet("r", ["s", "t"])], GcavInputError, "named 'r'"),
    ({"c": TWO}, [IMGS], GcavInputError, "mix texts and images"),
    ({"c": IMGS}, [torch.cat([IMGS[2:], IMGS[:2]])], GcavInputError, "same examples"),
])
def test_check_sets_rejects(concepts, randoms, err, contains):
    "check_sets applies ConceptSet's checks to plain lists and the cross-set checks, with messages naming the set."
    with pytest.raises(err, match=re.escape(contains)): check_sets(concepts, randoms)

def test_check_sets_converts_and_names():
    "Lists, tuples, tensors and ConceptSets come back as ConceptSets; list randoms are named by position or their own name."
    cs, rs = check_sets({"c": ("a", "b"), "i": None or ConceptSet("other", ["e", "f"])}, [["p", "q"], ConceptSet("mine", ["s", "t"])])
    assert list(cs) == ["c", "i"] and cs["i"].name == "i" and list(rs) == ["random_0", "mine"]
    assert all(isinstance(x, ConceptSet) for x in [*cs.values(), *rs.values()])
    assert check_sets(load_concepts(["food"]), random_sets(2, 10))[1].keys() == {"random_0", "random_1"}
    assert check_sets([ConceptSet("a", TWO)], None) == ({"a": ConceptSet("a", TWO)}, {})

def test_check_sets_warns_on_identical_concepts():
    "Two concepts with the same examples warn (a deliberate control is allowed)."
    with pytest.warns(UserWarning, match="same examples"): check_sets({"a": TWO, "b": TWO[::-1]}, None)

def test_text_sets_moved_to_data():
    "data.text_sets: first n examples per concept, R random sets, held-out inputs, templated, seeded."
    cs, rs, inputs = text_sets(load_concepts(["praise", "food"]), 5, 3, 4, ["Review: {text} Sentiment:"], seed=1)
    assert [len(v) for v in cs.values()] == [5, 5] and len(rs) == 3 and all(len(r) == 5 for r in rs) and len(inputs) == 4
    assert all(x.startswith("Review: ") for x in inputs)
    raw = text_sets(load_concepts(["praise"]), 5, 1, 4, None)
    assert raw[0]["praise"] == list(load_concepts("praise")["praise"])[:5] and not set(raw[2]) & set(raw[0]["praise"])
    assert text_sets(load_concepts(["praise", "food"]), 5, 3, 4, ["Review: {text} Sentiment:"], seed=1) == (cs, rs, inputs)
    with pytest.warns(UserWarning, match="only 70 examples left"): text_sets(load_concepts(["praise"]), 50, 2, 100, None)
    with pytest.raises(GcavInputError, match="not enough left"): text_sets(load_concepts(["praise"]), 119, 2, 10, None)

@pytest.mark.parametrize("kw,err", [(dict(name="shakespeare"), UnknownNameError), (dict(name="offline"), UnknownNameError), (dict(n_tokens=0), GcavInputError),
                                    (dict(n_tokens=-5), GcavInputError), (dict(name=3), TypeError)])
def test_text_corpus_bad_args(kw, err):
    "Unknown corpus names and bad token counts fail."
    with pytest.raises(err): text_corpus(**kw)
