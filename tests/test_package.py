"""The package surface: a light import and a consistent public API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import clipworks

REPO = Path(__file__).resolve().parents[1]


def test_import_does_not_load_torch():
    code = "import sys, clipworks, clipworks.cli.main; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_public_api_resolves():
    assert sorted(clipworks.__all__) == sorted([*clipworks._EXPORTS, "__version__"])
    for name in clipworks.__all__:
        assert getattr(clipworks, name) is not None
