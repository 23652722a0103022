"""What the server benchmarks share: start a server process from this clone and wait for the URL it prints."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import clipworks


def start_server(code: str, args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Run `python -c code *args` (this clone on PYTHONPATH, offline), its output to `log`, until it prints an
    http:// URL (the server prints it once the model is loaded and the index built); the process and the URL."""
    env = {**os.environ, "PYTHONPATH": str(Path(clipworks.__file__).parents[1]), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env=env)
    while True:
        for word in log.read_text().split():
            if word.startswith("http://"):
                return proc, word.rstrip("/")
        if proc.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.2)
