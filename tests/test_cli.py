"""gcav_nb.cli: argument errors fail before the model loads (exit 2, one clear line); a tiny end-to-end run writes the folder."""
import subprocess, sys, time
from pathlib import Path
import pytest
from gcav_nb.cli import main, run, validate_args, build_parser
from gcav_nb.config import GcavInputError, UnknownNameError

@pytest.mark.parametrize("args,msg", [
    (["--concepts", "praize"], "unknown concept"),
    (["--layers", "4"], "at least 2 layers"),
    (["--runs", "1"], "--runs must be >= 2"),
    (["--n-examples", "1"], "--n-examples"),
    (["--concept-file", "/nonexistent/c.txt"], "does not exist"),
    (["--model", "no-such-model"], "unknown model"),
    (["--target", ""], "--target"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args, msg, tmp_path, capsys):
    "Bad arguments: exit code 2 and a message naming the problem, before any model is loaded."
    t0 = time.perf_counter()
    assert main(["gcav", "--out", str(tmp_path / "o"), *args]) == 2
    assert msg in capsys.readouterr().err
    assert time.perf_counter() - t0 < 20

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

def test_tiny_end_to_end_run_writes_the_results_folder(tmp_path):
    "gcav on tiny-llama at ci scale writes the table, figures, GCAV checkpoint and summary; tcav writes no checkpoint."
    r = run(["gcav", "--model", "tiny-llama", "--scale", "ci", "--concepts", "praise,food", "--out", str(tmp_path / "g"), "--no-progress"])
    names = {p.name for p in (tmp_path / "g").iterdir()}
    assert {"results.csv", "stability.csv", "scores.csv", "layer_scores.png", "summary.txt", "gcav"} <= names
    assert (tmp_path / "g" / "gcav" / "gcav.safetensors").exists()
    r2 = run(["tcav", "--model", "tiny-llama", "--scale", "ci", "--concepts", "praise,food", "--out", str(tmp_path / "t"), "--no-progress"])
    assert not (tmp_path / "t" / "gcav").exists() and (tmp_path / "t" / "results.csv").exists()
    assert set(r2["result"].tests().method) == {"TCAV"}

def test_console_script_is_registered():
    "settings.ini registers gcav_nb = gcav_nb.cli:main."
    ini = (Path(__file__).resolve().parents[1] / "settings.ini").read_text()
    assert "gcav_nb=gcav_nb.cli:main" in ini.replace(" ", "")
