"""Text queries under load: N concurrent clients against a real search server on loopback.

The store holds generated scenes (`clipworks.data.world`) indexed by the shipped default model, or is the one
given with --store. The server is `clipworks.search.server.serve` in its own process on 127.0.0.1 and a free
port. Each of the --clients threads keeps one keep-alive connection and sends `GET /api/search?q=...&k=10`
until --requests have been sent in all or --seconds have passed, whichever comes first. A --repeated share of
the queries is drawn from a dozen popular ones (the text-embedding cache answers those after the first time);
the others are distinct, never sent twice. Prints requests/s, p50/p95/p99 latency, errors, the server's CPU
seconds per request and the machine's load average (other jobs share the cores); runs "cache" (the server as
shipped) and "no-cache" (its text-embedding cache off) by default. Prints figures only; asserts nothing.

    nice -n 19 python benchmarks/serve_load.py --n 1000 --clients 16 --requests 2000 --seconds 60
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

from _serving import start_server  # benchmarks/ is the script's folder, so on sys.path

POPULAR = ["a red star", "a blue circle", "two green squares", "a yellow triangle", "a purple heart",
           "an orange square above a white circle", "a pink star", "a small black circle", "a large grey square",
           "three blue triangles", "a red circle next to a green star", "a white heart"]
COUNTS = ["a", "one", "two", "three", "four"]
SIZES = ["", "small ", "large ", "tiny "]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "white", "black", "grey"]
SHAPES = ["star", "circle", "square", "triangle", "heart", "diamond", "cross", "hexagon"]
PLACES = ["", " on the left", " on the right", " at the top", " at the bottom", " in the middle"]
SERVER = ("import json, sys\n"
          "from clipworks.search.engine import SearchEngine\n"
          "from clipworks.search.server import serve\n"
          "serve(SearchEngine(sys.argv[1], device='cpu', **json.loads(sys.argv[2])), port=0)\n")


def distinct_queries(seed: int) -> list[str]:
    """Text queries, each different from every other and from the popular ones, in a seeded order."""
    combos = [f"{c} {s}{colour} {shape}{'s' if c not in ('a', 'one') else ''}{p}"
              for c, s, colour, shape, p in itertools.product(COUNTS, SIZES, COLOURS, SHAPES, PLACES)]
    combos = [q for q in combos if q not in POPULAR]
    np.random.default_rng(seed).shuffle(combos)
    return combos


def query_plan(count: int, repeated: float, seed: int) -> list[str]:
    """`count` queries: a `repeated` share drawn from POPULAR, the rest distinct."""
    rng = np.random.default_rng(seed + 1)
    fresh = iter(distinct_queries(seed))
    plan = []
    for _ in range(count):
        if rng.random() < repeated:
            plan.append(POPULAR[int(rng.integers(len(POPULAR)))])
        else:
            plan.append(next(fresh, None) or POPULAR[int(rng.integers(len(POPULAR)))])  # distinct ones ran out
    return plan


def build_store(tmp: Path, n: int, seed: int) -> Path:
    """n generated scenes, written and indexed by the shipped default model."""
    from clipworks.data.world import write_world
    from clipworks.search.indexer import index

    folder = write_world(tmp / "world", size=n, seed=seed, split="train")
    report = index([str(folder)], tmp / "store", model_name="default", device="cpu", progress=False)
    print(f"indexed: {report.summary()}", flush=True)
    return tmp / "store"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(base: str, plan: list[str], clients: int, seconds: float) -> dict:
    """Send the planned queries from `clients` threads (one keep-alive connection each) until done or out of time."""
    parts = urllib.parse.urlsplit(base)
    next_query = iter(plan)
    take = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        mine, failed = [], []
        while time.monotonic() < deadline:
            with take:
                q = next(next_query, None)
            if q is None:
                break
            path = "/api/search?" + urllib.parse.urlencode({"q": q, "k": 10})
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or len(json.loads(body)["results"]) != 10:
                    failed.append(f"{q!r}: HTTP {response.status} {body[:120]!r}")
                    continue
            except (OSError, http.client.HTTPException, ValueError) as exc:
                failed.append(f"{q!r}: {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
                continue
            mine.append(time.perf_counter() - t0)
        conn.close()
        with take:
            latencies.extend(mine)
            errors.extend(failed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1e3 if latencies else np.zeros(1)
    return {"requests": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
            "seconds": wall, "rps": len(latencies) / wall, "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95),
            "p99": np.percentile(ms, 99), "max": ms.max()}


RUNS = {"cache": {}, "no-cache": {"text_cache": 0}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="an indexed store to serve (default: generate and index --n scenes)")
    parser.add_argument("--n", type=int, default=1000, help="scenes in the generated store")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=2000, help="requests in all, per run")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per run")
    parser.add_argument("--repeated", type=float, default=0.5, help="share of queries drawn from the popular dozen")
    parser.add_argument("--runs", default="cache,no-cache", help=f"comma-separated, from {', '.join(RUNS)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs = args.runs.split(",")
    if unknown := [r for r in runs if r not in RUNS]:
        parser.error(f"--runs: unknown {unknown}; choose from {list(RUNS)}")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        tmp = Path(tmp)
        store = Path(args.store) if args.store else build_store(tmp, args.n, args.seed)
        plan = query_plan(args.requests, args.repeated, args.seed)
        print(f"{len(set(plan))} different queries among {len(plan)}; {args.clients} clients, at most "
              f"{args.seconds:.0f} s a run; {os.cpu_count()} cores", flush=True)
        for run in runs:
            proc, base = start_server(SERVER, [str(store), json.dumps(RUNS[run])], tmp / f"serve-{run}.log")
            try:
                load(base, ["warm-up", "a warm-up query"], 1, 60)  # one-off costs, outside the timing
                before, load_before = cpu_seconds(proc.pid), os.getloadavg()[0]
                r = load(base, plan, args.clients, args.seconds)
                cpu = cpu_seconds(proc.pid) - before
                print(f"{run}: {r['requests']} requests in {r['seconds']:.1f} s: {r['rps']:.1f} requests/s; latency "
                      f"p50 {r['p50']:.0f} ms, p95 {r['p95']:.0f} ms, p99 {r['p99']:.0f} ms, max {r['max']:.0f} ms; "
                      f"errors {r['errors']}; server CPU {1e3 * cpu / max(r['requests'], 1):.1f} ms a request; "
                      f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after", flush=True)
                if r["first_error"]:
                    print(f"  first error: {r['first_error']}")
            finally:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
