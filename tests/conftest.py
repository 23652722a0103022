"""Shared test helpers, and the rule that a test skips only for a missing piece of the machine.

A skip hides a test that did not run, so only the environment reasons below may skip (no CUDA device, no
chromium, no Java for METEOR, no unprivileged mount namespace); they are counted in the summary. Any other
skip, such as a reference library (open_clip, transformers, pycocoevalcap, clip_benchmark) gone missing behind
an importorskip, fails the run."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the network, whatever the caller's shell sets

ENVIRONMENT_SKIPS = (  # prefixes of the skip reasons that name a missing piece of the machine
    "no CUDA device",
    "Debian's chromium is not installed",
    "METEOR needs Java",
    "no unprivileged mount namespace",
    "no Python 3.10 interpreter",
    "no package registry reachable",
)

_skips: Counter[str] = Counter()
_unexpected: list[str] = []


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A function returning a TCP port on 127.0.0.1 that is free right now (for servers and torch.distributed)."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick


@pytest.fixture(scope="session")
def serve_app() -> Callable[..., contextlib.AbstractContextManager[str]]:
    """`with serve_app(app) as base:` runs a FastAPI app in uvicorn on a thread, on the listening socket that
    `clipworks serve` makes (loopback, any free port), and yields its base URL once it answers."""
    import uvicorn

    from clipworks.search.server import listening_socket

    @contextlib.contextmanager
    def serving(app) -> Iterator[str]:
        sock = listening_socket("127.0.0.1", 0)
        srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not srv.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            srv.should_exit = True
            thread.join(timeout=10)

    return serving


def _skip_reason(report: pytest.TestReport) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    allowed = next((prefix for prefix in ENVIRONMENT_SKIPS if reason.startswith(prefix)), None)
    if allowed is None:
        _unexpected.append(f"{report.nodeid}: {reason}")
    else:
        _skips[allowed] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if _skips:
        counts = ", ".join(f"{reason}: {n}" for reason, n in _skips.most_common())
        terminalreporter.write_line(f"skipped for the machine: {sum(_skips.values())} ({counts})")
    for line in _unexpected:
        terminalreporter.write_line(f"FAILED (a skip that is not an environment reason) {line}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _unexpected and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
