"""Issue 8 §5, checked on the source: methods attached with fastcore's @patch only, no private names imported across
modules, and core notebooks' export cells short (<= 40 lines) with prose right above each."""
import ast, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p for p in (ROOT / "gcav_nb").rglob("*.py") if "__pycache__" not in p.parts)
CORE_NBS = sorted((ROOT / "nbs").glob("0*.ipynb"))
_EXPORT = re.compile(r"^#\|\s*export(i)?\s*$", re.M)


def _rel(p: Path) -> str: return str(p.relative_to(ROOT))


def attached_by_assignment(tree: ast.Module) -> list[str]:
    "Module-level `Cls.name = ...` / `Cls.a, Cls.b = ...`: methods attached without @patch."
    bad = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        for t in targets:
            for x in (t.elts if isinstance(t, ast.Tuple) else [t]):
                if isinstance(x, ast.Attribute) and isinstance(x.value, ast.Name): bad.append(f"line {node.lineno}: {ast.unparse(x)}")
    return bad


def private_imports(tree: ast.Module, own: str | None) -> list[str]:
    "`from gcav_nb.<m> import _name` where <m> is not the importing module itself."
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gcav_nb") and node.module != own:
            bad += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return bad


def test_the_checks_can_fail():
    "Each check flags the pattern it is for (and not the allowed form)."
    assert attached_by_assignment(ast.parse("class A: pass\ndef f(self): pass\nA.f = f\nA.g, A.h = f, f")) == ["line 3: A.f", "line 4: A.g", "line 4: A.h"]
    assert attached_by_assignment(ast.parse("@patch\ndef f(self:A): pass\nx = 1")) == []
    assert private_imports(ast.parse("from gcav_nb.tcav import _per_layer, per_layer"), "gcav_nb.gcav") == ["line 1: from gcav_nb.tcav import _per_layer"]
    assert private_imports(ast.parse("from gcav_nb.tcav import _per_layer"), "gcav_nb.tcav") == []
    nb = {"cells": [{"cell_type": "code", "source": "#| export\nimport os"},
                    {"cell_type": "code", "source": "#| export\ndef f():\n" + "    x = 1\n" * 40},
                    {"cell_type": "markdown", "source": "Prose."}, {"cell_type": "code", "source": "#| export\ndef g(): pass"},
                    {"cell_type": "code", "source": "#| export\ndocument_params(globals());"}]}
    assert cell_problems(nb) == ["cell 1: 42 lines", "cell 1: no prose above"]


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_methods_are_attached_with_patch_only(path):
    "fastcore's @patch is the one way to add a method to a class (not `Cls.m = f` or tuple assignment)."
    bad = attached_by_assignment(ast.parse(path.read_text()))
    assert not bad, f"{_rel(path)}: " + "; ".join(bad)


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_private_names_imported_across_modules(path):
    "What another module needs is public in the module that owns it."
    own = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    bad = private_imports(ast.parse(path.read_text()), own)
    assert not bad, f"{_rel(path)}: " + "; ".join(bad)


def _is_plumbing(src: str) -> bool:
    "An import cell, or the module's closing `document_params(globals())`: nothing to explain."
    body = [l for l in src.splitlines() if l.strip() and not l.startswith("#")]
    return all(l.startswith(("import ", "from ", " ", ")", "document_params(globals())")) for l in body)


def cell_problems(nb: dict) -> list[str]:
    "Export cells over 40 lines, and export cells (imports and `document_params` aside) without a markdown cell right above."
    cells, bad = nb["cells"], []
    for i, c in enumerate(cells):
        src = "".join(c["source"])
        if c["cell_type"] != "code" or not _EXPORT.search(src): continue
        if (n := len(src.rstrip("\n").splitlines())) > 40: bad.append(f"cell {i}: {n} lines")
        if not _is_plumbing(src) and (i == 0 or cells[i - 1]["cell_type"] != "markdown"): bad.append(f"cell {i}: no prose above")
    return bad


@pytest.mark.parametrize("path", CORE_NBS, ids=lambda p: p.stem)
def test_export_cells_are_short_with_prose_above(path):
    "Core notebooks: every export cell <= 40 lines with its prose right above (issue 8 §5; STYLE 'Notebooks' 2)."
    bad = cell_problems(json.loads(path.read_text()))
    assert not bad, f"{path.name}: " + "; ".join(bad)


CORE = ["activations", "cav", "tcav", "generation", "store", "metrics", "train", "cli", "explorer", "models", "data", "gcav", "texshapes"]


def undocumented(module) -> dict[str, list[str]]:
    "Public functions, methods and constructors of `module` whose help() lacks a description of some parameter."
    import inspect
    bad = {}
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name); fns = []
        if inspect.isfunction(obj): fns = [(name, obj)]
        elif inspect.isclass(obj):
            fns = [(f"{name}.{k}", v) for k, v in vars(obj).items() if inspect.isfunction(v) and not k.startswith("_")]
            if "__init__" in vars(obj) and not hasattr(obj, "__dataclass_fields__"): fns.append((name, obj.__init__))
        for label, fn in fns:
            if getattr(fn, "__module__", "") != module.__name__: continue
            ps = [p for p, v in inspect.signature(fn).parameters.items()
                  if p not in ("self", "cls") and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
            doc = (obj.__doc__ if label == name and inspect.isclass(obj) else fn.__doc__) or ""
            if miss := [p for p in ps if not re.search(rf"^\s+{re.escape(p)}\b.* — ", doc, re.M)]: bad[label] = miss
    return bad


@pytest.mark.parametrize("name", CORE)
def test_core_public_functions_document_every_parameter(name):
    "help() of every public function, method and constructor of the core shows a description of each parameter (issue 8 §2)."
    import importlib
    assert undocumented(importlib.import_module(f"gcav_nb.{name}")) == {}


def test_the_documentation_check_can_fail(tmp_path):
    "A module whose public function has an uncommented parameter is flagged; its commented one is not."
    import importlib.util
    f = tmp_path / "fake_mod.py"
    f.write_text("from gcav_nb.config import document_params\n__all__ = ['f']\n"
                 "def f(a, # described\n      b):\n    'Doc.'\ndocument_params(globals())\n")
    spec = importlib.util.spec_from_file_location("fake_mod", f); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    assert undocumented(m) == {"f": ["b"]}
