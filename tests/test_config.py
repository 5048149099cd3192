"""config: atomic saves under several umasks, bad cache roots and the scale table's error matrix."""
import os, stat
from pathlib import Path
import pytest
from gcav_nb.config import (GcavInputError, UnknownNameError, atomic_folder, atomic_write, cache_dir, register_scales,
                            scale_table, scaled)

def _mode(p): return stat.S_IMODE(os.stat(p).st_mode)

@pytest.fixture
def umask():
    "Set the process umask for one test, restored afterwards."
    old = os.umask(0o022); os.umask(old)
    def set_(m): os.umask(m)
    yield set_
    os.umask(old)

@pytest.mark.parametrize("m", [0o022, 0o077, 0o002])
def test_atomic_write_mode_follows_umask(tmp_path, umask, m):
    "A file written by atomic_write gets 0o666 & ~umask, not the temp file's 0600."
    umask(m)
    f = atomic_write(tmp_path/"a.bin", lambda p: p.write_bytes(b"x"))
    assert _mode(f) == 0o666 & ~m

@pytest.mark.parametrize("m", [0o022, 0o077])
def test_atomic_folder_modes_follow_umask(tmp_path, umask, m):
    "Every folder and file of an atomic_folder gets the umask's modes."
    umask(m)
    def build(t): (t/"d").mkdir(); (t/"d"/"f.txt").write_text("x")
    out = atomic_folder(tmp_path/"out", build)
    assert [_mode(out), _mode(out/"d"), _mode(out/"d"/"f.txt")] == [0o777 & ~m, 0o777 & ~m, 0o666 & ~m]

def test_atomic_write_success_and_failure_leave_no_temp(tmp_path):
    "After success only the target exists; a failing writer keeps the old content and removes its temp."
    f = tmp_path/"r.json"
    atomic_write(f, lambda p: p.write_text("old"))
    assert [x.name for x in tmp_path.iterdir()] == ["r.json"]
    def boom(p): p.write_text("partial"); raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"): atomic_write(f, boom)
    assert f.read_text() == "old" and [x.name for x in tmp_path.iterdir()] == ["r.json"]

def test_atomic_write_interrupt_leaves_no_temp(tmp_path):
    "A Ctrl-C inside the writer also removes the temp file."
    def stop(p): raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): atomic_write(tmp_path/"x", stop)
    assert list(tmp_path.iterdir()) == []

def test_atomic_folder_replace_and_failure(tmp_path):
    "Replacing a folder leaves no stray .tmp/.old; a failing build keeps the old folder and removes its temp."
    out = tmp_path/"cavs"
    atomic_folder(out, lambda t: (t/"a").write_text("1"))
    atomic_folder(out, lambda t: (t/"b").write_text("2"))
    assert sorted(x.name for x in out.iterdir()) == ["b"] and [x.name for x in tmp_path.iterdir()] == ["cavs"]
    def boom(t): (t/"c").write_text("3"); raise RuntimeError("no")
    with pytest.raises(RuntimeError): atomic_folder(out, boom)
    assert (out/"b").read_text() == "2" and [x.name for x in tmp_path.iterdir()] == ["cavs"]

@pytest.mark.parametrize("kind", ["file", "under_file", "proc"])
def test_cache_dir_bad_root_names_the_path(tmp_path, monkeypatch, kind):
    "GCAV_NB_CACHE pointing at a file, below a file, or somewhere unwritable is a GcavInputError naming the path."
    f = tmp_path/"f"; f.write_text("")
    root = {"file": f, "under_file": f/"sub", "proc": Path("/proc/gcav_nb_cache")}[kind]
    monkeypatch.setenv("GCAV_NB_CACHE", str(root))
    with pytest.raises(GcavInputError, match=str(root)): cache_dir("models")

def test_cache_dir_unwritable_folder(tmp_path, monkeypatch):
    "An existing folder without write permission is refused (os.access stubbed: tests may run as root)."
    monkeypatch.setenv("GCAV_NB_CACHE", str(tmp_path))
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(GcavInputError, match="not writable"): cache_dir("x")

def test_scales_registry_errors():
    "Same content re-registers; other content, unknown names and bad scales fail with the bad value."
    register_scales("_t", ci=dict(n=1), cpu=dict(n=2), gpu=dict(n=3))
    register_scales("_t", ci=dict(n=1), cpu=dict(n=2), gpu=dict(n=3))
    assert scaled("_t", "gpu") == dict(n=3) and scale_table().loc[("_t", "n")].tolist() == [1, 2, 3]
    with pytest.raises(GcavInputError, match="already registered"): register_scales("_t", ci=dict(n=1), cpu=dict(n=5))
    with pytest.raises(UnknownNameError, match="'_nope'"): scaled("_nope")
    with pytest.raises(GcavInputError, match="'big'"): scaled("_t", "big")
    with pytest.raises(TypeError, match="ci="): register_scales("_u", ci=None, cpu={})
    with pytest.raises(GcavInputError, match="name"): register_scales("", ci={}, cpu={})

_MOD = '''
from dataclasses import dataclass
from fastcore.basics import patch
def f(x:int, # the input
      y=2, # how many
     )->str: # the answer
    "Do f."
@dataclass
class Cfg:
    "A config."
    lr:float=0.1 # step size
class Box:
    "A box."
    def __init__(self, size:int, # its size
                ): self.size = size
@patch
def grow(self:Box, by:int=1, # how much bigger
        ):
    "Grow the box."
def _private(a, # hidden
            ): "Private."
'''

def test_document_params_reaches_help(tmp_path, monkeypatch):
    "Comments of functions, dataclass fields, __init__ and @patch'ed methods reach __doc__ and help(); twice = once."
    import importlib, pydoc
    from gcav_nb.config import document_params
    (tmp_path/"_docmod.py").write_text(_MOD); monkeypatch.syspath_prepend(str(tmp_path))
    m = importlib.import_module("_docmod")
    assert document_params(m) == 4
    assert "x: int — the input" in m.f.__doc__ and "y = 2 — how many" in m.f.__doc__ and "str — the answer" in m.f.__doc__
    assert "lr: float = 0.1 — step size" in m.Cfg.__doc__ and "size: int — its size" in m.Box.__doc__
    assert "by: int = 1 — how much bigger" in pydoc.render_doc(m.Box.grow, renderer=pydoc.plaintext)
    assert m._private.__doc__ == "Private."
    assert document_params(vars(m)) == 0 and m.f.__doc__.count("Args:") == 1

def test_config_documents_itself():
    "help() on a gcav_nb.config function shows its parameter comments."
    import pydoc
    from gcav_nb import config
    h = pydoc.render_doc(config.cache_dir, renderer=pydoc.plaintext)
    assert "sub-folders under the cache root" in h and "make the folder if it is missing" in h

def test_document_params_follows_delegates_and_shares_a_line_comment(tmp_path):
    "A parameter taken through fastcore `delegates` gets its delegate's comment; one comment documents every parameter on its line."
    import importlib.util
    from gcav_nb.tcav import tcav
    assert "activation cache" in tcav.__doc__
    f = tmp_path / "m_doc.py"
    f.write_text("from fastcore.meta import delegates\nfrom gcav_nb.config import document_params\n"
                 "def base(a, # the a\n         b=1, # the b\n        ):\n    'Base.'\n\n"
                 "@delegates(base)\ndef wrap(x, y, # both coordinates\n         **kwargs):\n    'Wrap.'\n\ndocument_params(globals())\n")
    spec = importlib.util.spec_from_file_location("m_doc", f); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    assert "the b" in m.wrap.__doc__
    assert m.wrap.__doc__.count("both coordinates") == 2


def test_document_params_reaches_classmethods():
    "Classmethods (plain or fastcore `@patch(cls_method=True)`) get their parameters in help() too."
    from gcav_nb.data import ConceptSet
    assert "Args:" in ConceptSet.from_list.__doc__ and "the concept's name" in ConceptSet.from_list.__doc__
    assert "Args:" in ConceptSet.from_file.__doc__
