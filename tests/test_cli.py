"""gcav_nb.cli: argument errors fail before the model loads (exit 2, one clear line); the installed command runs end to end,
writes its folder (CAVs included), refuses to reuse a results folder without --overwrite, and resumes from the activation cache."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
import gcav_nb.activations as activations
import gcav_nb.tcav as tcav_mod
from gcav_nb.cli import RUN_FILES, build_parser, main, run, validate_args
from gcav_nb.config import GcavInputError, UnknownNameError

GCAV_NB = Path(sys.executable).parent / "gcav_nb"          # the console script pip installed beside this python
TINY = ["--model", "tiny-llama", "--scale", "ci", "--concepts", "praise,food", "--no-progress"]


@pytest.mark.parametrize("args,msg", [
    (["--concepts", "praize"], "unknown concept"),
    (["--model", "tiny-llama", "--layers", "3"], "at least 2 layers"),
    (["--model", "tiny-llama", "--layers", "99"], "layer 99 does not exist (model has 4 layers: 0..3)"),
    (["--model", "tiny-llama", "--layers", "1,99"], "layer 99 does not exist (model has 4 layers: 0..3)"),
    (["--layers", ""], "--layers '' names no layer"),
    (["--layers", " , "], "names no layer"),
    (["--foil", " positive"], "--foil ' positive' equals --target"),
    (["--target", " yes", "--foil", " yes"], "equals --target"),
    (["--runs", "1"], "--runs must be >= 3 for gcav"),
    (["--runs", "2"], "--runs must be >= 3 for gcav"),
    (["--n-examples", "1"], "--n-examples"),
    (["--concept-file", "/nonexistent/c.txt"], "does not exist"),
    (["--random-file", "/nonexistent/r.txt"], "--random-file '/nonexistent/r.txt' does not exist"),
    (["--relative", "praise:cats"], "not among this run's concepts"),
    (["--relative", "praise"], "expected 'concept:counter'"),
    (["--model", "no-such-model"], "unknown model"),
    (["--target", ""], "--target"),
    (["--runs", "4", "--null-sets", "3"], "--null-sets must be >= --runs (4)"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args, msg, tmp_path, capsys, monkeypatch):
    "Bad arguments: exit code 2 and a message naming the problem, before any forward pass (collect and gradients never run)."
    def no_forward(*a, **k): raise AssertionError("a forward pass ran before the argument error")
    monkeypatch.setattr(activations, "capture", no_forward); monkeypatch.setattr(tcav_mod, "gradients", no_forward)
    assert main(["gcav", "--out", str(tmp_path / "o"), *args]) == 2
    assert msg in capsys.readouterr().err


def test_concept_file_with_one_example_is_refused(tmp_path, capsys):
    "A concept file with a single line is refused (ConceptSet or our own check)."
    f = tmp_path / "lonely.txt"; f.write_text("only one example\n")
    assert main(["gcav", "--out", str(tmp_path / "o"), "--concept-file", str(f)]) == 2
    assert "lonely" in capsys.readouterr().err


def test_unwritable_out_is_refused(tmp_path, capsys):
    "An --out that cannot be created fails early."
    f = tmp_path / "file"; f.write_text("x")
    assert main(["gcav", "--out", str(f / "sub")]) == 2
    assert "--out" in capsys.readouterr().err


def test_missing_out_is_an_argparse_error():
    "--out is required (argparse exits 2)."
    with pytest.raises(SystemExit) as e: build_parser().parse_args(["gcav"])
    assert e.value.code == 2


def _args(tmp_path, *xs): return build_parser().parse_args(["gcav", "--out", str(tmp_path / "o"), "--scale", "ci", *xs])


def test_concept_files_are_not_merged_with_the_bundled_concepts(tmp_path):
    "With --concept-file only the file's concepts run (bundled ones only when named), every line of the file used."
    f = tmp_path / "hot_days.txt"; f.write_text("\n".join(f"It was a hot day, number {i}." for i in range(23)))
    s = validate_args(_args(tmp_path, "--concept-file", str(f), "--inputs-file", str(f)))
    assert list(s["concepts"]) == ["hot_days"] and len(s["concepts"]["hot_days"]) == 23
    assert s["set_size"] == 23                                     # random sets as large as the concept set
    s = validate_args(_args(tmp_path, "--concept-file", str(f), "--concepts", "food", "--inputs-file", str(f)))
    assert list(s["concepts"]) == ["food", "hot_days"] and len(s["concepts"]["food"]) == 8
    s = validate_args(_args(tmp_path, "--concept-file", str(f), "--n-examples", "10"))
    assert len(s["concepts"]["hot_days"]) == 10 and len(s["inputs"]) == 8     # held-out lines become the inputs


def test_random_file_is_the_random_pool(tmp_path):
    "--random-file replaces the bundled pool: every random text comes from the file."
    pool = [f"a plain sentence about nothing in particular, {i}." for i in range(30)]
    f = tmp_path / "pool.txt"; f.write_text("\n".join(pool))
    s = validate_args(_args(tmp_path, "--random-file", str(f), "--templates", "none"))
    _, rs, _ = s["sets"]
    assert len(rs) == 3 and all(len(r) == 8 and set(r) <= set(pool) for r in rs)
    f.write_text("\n".join(pool[:8]))                                # 8 texts: every random set is the same 8
    with pytest.raises(GcavInputError, match="same examples"): validate_args(_args(tmp_path, "--random-file", str(f), "--templates", "none"))


def test_installed_command_shows_every_default():
    "The installed `gcav_nb` command runs; `--help` of each sub-command states every option's default."
    p = subprocess.run([str(GCAV_NB), "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "gcav" in p.stdout and "tcav" in p.stdout
    for cmd in ("gcav", "tcav"):
        h = subprocess.run([str(GCAV_NB), cmd, "--help"], capture_output=True, text=True, timeout=120).stdout
        for want in ("(default: smollm2-135m)", "(default: ' positive')", "(default: all)", "ci 3, cpu 6, gpu 10", "(default: 0)"):
            assert want in h, f"{cmd} --help lacks {want!r}"


def test_command_writes_cavs_and_settings_without_numpy_warnings(tmp_path):
    "A tiny `gcav_nb tcav` run (the installed command): no numpy warning in its output; cavs.safetensors loads; run.json has the settings."
    from gcav_nb.cav import CAVSet
    out = tmp_path / "t"
    env = {**os.environ, "GCAV_NB_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([str(GCAV_NB), "tcav", *TINY, "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "not writable" not in p.stdout + p.stderr, p.stderr[-2000:]
    assert {n for n in RUN_FILES if n != "gcav"} == {q.name for q in out.iterdir()}
    cavs = CAVSet.load(out / "cavs.safetensors")
    assert cavs.concepts == ["praise", "food"] and len(cavs.layers) == 4
    st = json.loads((out / "run.json").read_text())["meta"]["cli"]["settings"]
    assert (st["target"], st["foil"], st["templates"], st["seed"]) == ("logit(' positive')-logit(' negative')", " negative", "sentiment", 0)
    assert isinstance(st["prepend_bos"], bool) and st["random_pool"] == "bundled"
    for key in ("target: logit(' positive')-logit(' negative')", "templates: sentiment", "prepend_bos:", "seed 0"):
        assert key in p.stdout, key


def test_out_folder_is_refused_unless_overwrite_and_then_only_run_files_go(tmp_path, capsys):
    "A non-empty --out is refused; --overwrite replaces the run's files (no stale gcav/ checkpoint) and keeps the user's."
    out = tmp_path / "o"
    r = run(["gcav", *TINY, "--out", str(out), "--cache", str(tmp_path / "c")])
    assert (out / "gcav" / "gcav.safetensors").exists() and len(r["result"].methods) == 2
    (out / "my_notes.txt").write_text("keep me")
    assert main(["tcav", *TINY, "--out", str(out), "--cache", str(tmp_path / "c")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    r2 = run(["tcav", *TINY, "--out", str(out), "--cache", str(tmp_path / "c"), "--overwrite"])
    assert not (out / "gcav").exists() and (out / "my_notes.txt").read_text() == "keep me"
    assert r2["result"].methods == ["TCAV"]
    assert set(__import__("pandas").read_csv(out / "results.csv").method) == {"TCAV"}


def test_interrupted_run_resumes_from_the_activation_cache(tmp_path, monkeypatch):
    "Ctrl-C after the activations were collected: the rerun collects nothing again (no forward pass through `capture`)."
    calls = []
    real_capture, real_gradients = activations.capture, tcav_mod.gradients
    def counting_capture(*a, **k): calls.append(1); return real_capture(*a, **k)
    def interrupted(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(activations, "capture", counting_capture)
    monkeypatch.setattr(tcav_mod, "gradients", interrupted)
    argv = ["tcav", *TINY, "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "cache")]
    with pytest.raises(KeyboardInterrupt): run(argv)
    assert len(calls) >= 1 and any((tmp_path / "cache").rglob("*.safetensors"))
    monkeypatch.setattr(tcav_mod, "gradients", real_gradients)
    calls.clear()
    r = run(argv)                                                     # the folder is still empty: no --overwrite needed
    assert calls == [] and (tmp_path / "o" / "results.csv").exists()
    calls.clear()
    run(["tcav", *TINY, "--out", str(tmp_path / "o2"), "--no-cache"])
    assert len(calls) >= 1                                            # without the cache it does collect


def test_relative_cavs_run_concept_against_concept(tmp_path):
    "--relative praise:complaint scores the relative CAV (concept 'praise~complaint' or similar), not concept-vs-random."
    r = run(["tcav", *TINY[:-3], "--concepts", "praise,complaint", "--relative", "praise:complaint", "--no-progress",
             "--out", str(tmp_path / "o"), "--no-cache"])
    assert len(r["result"].concepts) == 1 and "praise" in r["result"].concepts[0] and "complaint" in r["result"].concepts[0]
    assert r["settings"]["relative"] == ["praise:complaint"]


def test_saved_folder_loads_back_as_a_result(tmp_path):
    "The CLI's folder is a saved ConceptResult: ConceptResult.load reads it, same scores."
    from gcav_nb.tcav import ConceptResult
    r = run(["tcav", *TINY, "--out", str(tmp_path / "o"), "--no-cache"])
    again = ConceptResult.load(tmp_path / "o")
    assert again.frame().score.tolist() == r["result"].frame().score.tolist()

def test_default_cache_keeps_every_request(tmp_path, monkeypatch):
    "Two runs on different data with the default cache each keep their activations (one shared file used to be replaced)."
    monkeypatch.setenv("GCAV_NB_CACHE", str(tmp_path / "cache"))
    run(["tcav", *TINY, "--out", str(tmp_path / "a")])
    run(["tcav", *TINY[:4], "--concepts", "praise,complaint", "--no-progress", "--out", str(tmp_path / "b")])
    kept = sorted((tmp_path / "cache" / "activations").rglob("acts.safetensors"))
    assert len(kept) == 2, kept

def test_explicit_cache_folder_keeps_every_request(tmp_path, monkeypatch):
    "Two runs on different data into one --cache DIR each keep their activations; rerunning both collects nothing."
    import gcav_nb.activations as A
    forwards, real = [], A._forward_batch
    monkeypatch.setattr(A, "_forward_batch", lambda *a, **k: forwards.append(1) or real(*a, **k))
    cache = ["--cache", str(tmp_path / "cache")]
    runs = [["tcav", *TINY, *cache], ["tcav", *TINY[:4], "--concepts", "praise,complaint", "--no-progress", *cache]]
    for i, args in enumerate(runs): run([*args, "--out", str(tmp_path / f"first{i}")])
    kept = sorted((tmp_path / "cache").glob("*/acts.safetensors"))
    assert len(kept) >= 2 and forwards, kept
    forwards.clear()
    for i, args in enumerate(runs): run([*args, "--out", str(tmp_path / f"again{i}")])
    assert forwards == [] and sorted((tmp_path / "cache").glob("*/acts.safetensors")) == kept


def test_progress_bars_are_on_by_default(tmp_path, capsys):
    "The command shows its progress bars unless --no-progress is given."
    run(["tcav", *TINY[:-1], "--out", str(tmp_path / "a"), "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert "100%" in err and "collect" in err, err[-500:]
    run(["tcav", *TINY, "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "c")])
    assert "100%" not in capsys.readouterr().err


def test_pseudo_test_with_more_null_sets_than_runs(tmp_path, capsys):
    "--test pseudo --runs 2 --null-sets 4: CAV runs use 2 random sets, the null's pseudo-concepts all 4; header and run.json say so."
    from gcav_nb.cli import run
    r = run(["tcav", *TINY, "--layers", "0,1", "--runs", "2", "--null-sets", "4", "--test", "pseudo", "--no-cache", "--out", str(tmp_path / "p")])
    res = r["result"]
    assert res.scores["TCAV"].shape[-1] == 2 and res.null_scores["TCAV"].shape[1] == 4 and res.test == "pseudo"
    st = json.loads((tmp_path / "p" / "run.json").read_text())["meta"]["cli"]["settings"]
    assert (st["runs"], st["null_sets"], st["test"]) == (2, 4, "pseudo")
    assert "R=2 runs, N=4 sets for the null" in capsys.readouterr().out
    assert main(["tcav", *TINY, "--test", "pseudo", "--runs", "2", "--out", str(tmp_path / "q")]) == 2          # 2 pseudo-concepts: too few
    assert "--test pseudo needs at least 3 random sets" in capsys.readouterr().err


def test_both_modes_side_by_side_with_the_shared_fusion(tmp_path, capsys):
    "--mode official --mode fixed --shared-fusion: one TGCAV method per mode, named after it; the header and run.json say so."
    r = run(["gcav", *TINY, "--mode", "official", "--mode", "fixed", "--shared-fusion", "--out", str(tmp_path / "o"), "--no-cache"])
    assert set(r["result"].tests().method) == {"TCAV", "TGCAV-official-shared", "TGCAV-fixed-shared"}
    assert r["settings"]["gcav"] == dict(modes=["official", "fixed"], shared_fusion=True)
    assert "GCAV: official, fixed mode, one shared fusion" in capsys.readouterr().out
    st = json.loads((tmp_path / "o" / "run.json").read_text())["meta"]["cli"]["settings"]
    assert st["gcav"]["shared_fusion"] is True
