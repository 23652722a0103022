"""The package's layers, read from the source: no application imports another, and neither the core nor the
shared modules import an application or an entry point (which import applications), lazily or not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clipworks"

# Each top-level name under clipworks/ and its layer; a module may import its own package and lower layers,
# core packages may import each other, and entry points may import anything.
SHARED = {"errors", "io", "cache", "weights"}
CORE = {"model", "data", "training", "evaluation", "search"}
APPLICATIONS = {"captioning", "vqa", "video", "sketch"}
ENTRY_POINTS = {"cli", "demo", "experiments"}
LAYER = {**{n: 0 for n in SHARED}, **{n: 1 for n in CORE}, **{n: 2 for n in APPLICATIONS},
         **{n: 3 for n in ENTRY_POINTS}}
ROOT = "(clipworks)"  # `import clipworks`: the lazy public API, which is the model's


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file, at any depth, relative ones resolved; for
    `from clipworks import x` the module is clipworks.x. Literal importlib.import_module calls count too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base == "clipworks":
                found += [(node.lineno, f"clipworks.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return [(line, name) for line, name in found if name == "clipworks" or name.startswith("clipworks.")]


def _top(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYER else ROOT


def _problem(source: str, target: str) -> str | None:
    """Why `source` (a top-level name) may not import `target`, or None when it may."""
    if source == target or source not in LAYER:  # clipworks/__init__.py re-exports the model's API
        return None
    if target == ROOT:
        return None if LAYER[source] >= 1 else "a shared module imports the package root (the model's API)"
    mine, theirs = LAYER[source], LAYER[target]
    if mine == 3:
        return None
    if theirs == 3:
        return f"imports the entry point {target!r} (entry points import applications)"
    if mine == 2 and theirs == 2:
        return f"the application {source!r} imports the application {target!r}"
    if theirs == 2:
        return f"{'the core' if mine == 1 else 'a shared module'} imports the application {target!r}"
    if mine == 0 and theirs == 1:
        return f"a shared module imports the core package {target!r}"
    return None


def test_every_top_level_name_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()}
    assert names - set(LAYER) == set(), "give each new top-level module or package a layer in this test"
    assert set(LAYER) - names == set(), "a layer names a module or package that no longer exists"


def test_no_import_crosses_the_layers():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _top(".".join(_module_name(path)))
        for line, name in _imports(path):
            if (why := _problem(source, _top(name))) is not None:
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line}: import {name}: {why}")
    assert not violations, "layering violations:\n" + "\n".join(violations)


@pytest.mark.parametrize("source, target, allowed", [
    ("vqa", "captioning", False), ("search", "sketch", False), ("training", "demo", False),
    ("io", "data", False), ("cache", "io", True), ("video", "search", True), ("cli", "vqa", True),
    ("evaluation", "training", True), ("experiments", "captioning", True),
])
def test_the_rules_themselves(source, target, allowed):
    assert (_problem(source, target) is None) is allowed


def test_imports_are_found_at_any_depth_and_relative(tmp_path, monkeypatch):
    sub = tmp_path / "clipworks" / "search"
    sub.mkdir(parents=True)
    (sub / "engine.py").write_text(
        "import os\nfrom . import store\nfrom ..captioning.model import Captioner\n"
        "def f():\n    from clipworks import vqa\n    import importlib\n"
        "    return importlib.import_module('clipworks.video.index')\n")
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path / "clipworks")
    found = [name for _, name in _imports(sub / "engine.py")]
    assert found == ["clipworks.search", "clipworks.captioning.model", "clipworks.vqa", "clipworks.video.index"]
