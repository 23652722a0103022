"""Vector index latency: exact vs HNSW search in clipworks.search.ann, on synthetic clustered vectors.

For each size: build time, single-query latency p50/p99 (one query per call), batch throughput
(all queries in one call) and HNSW recall@10 against exact search at several efSearch values.
Vectors are seeded Gaussian clusters (1000 centres plus noise), L2-normalised; queries come from
the same clusters but are not in the index. Prints figures only; it asserts nothing about time.

    python benchmarks/ann_latency.py --sizes 100000,1000000 --dim 128 --queries 1000 --threads 2
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from clipworks.search.ann import VectorIndex

EF_SEARCH = (16, 64, 128, 256)
K = 10


def clustered(n: int, centres: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """n vectors around randomly chosen centres, L2-normalised, built in chunks to bound memory."""
    out = np.empty((n, centres.shape[1]), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = centres[rng.integers(0, len(centres), m)]
        x += noise * rng.standard_normal(x.shape, dtype=np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def single_query_ms(index: VectorIndex, queries: np.ndarray) -> tuple[float, float]:
    """p50 and p99 latency in ms of searching one query per call."""
    index.search(queries[:1], K)  # warm-up
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], K)
        times.append(time.perf_counter() - t0)
    p50, p99 = np.percentile(times, [50, 99]) * 1e3
    return float(p50), float(p99)


def batch_qps(index: VectorIndex, queries: np.ndarray) -> float:
    t0 = time.perf_counter()
    index.search(queries, K)
    return len(queries) / (time.perf_counter() - t0)


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(g, w)) / len(w) for g, w in zip(got, want)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated numbers of vectors")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=faiss.omp_get_max_threads())
    parser.add_argument("--noise", type=float, default=1.0,
                        help="per-coordinate noise around unit-variance centres; larger is harder for HNSW")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    faiss.omp_set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"dim {args.dim}, {args.queries} queries, k {K}, noise {args.noise}, "
          f"faiss {faiss.__version__}, threads {args.threads}")
    print(f"{'N':>9} {'index':<12}{'build s':>9}{'p50 ms':>9}{'p99 ms':>9}{'batch q/s':>11}{'recall@10':>11}")
    for n in sizes:
        rng = np.random.default_rng(args.seed)
        centres = rng.standard_normal((1000, args.dim), dtype=np.float32)
        vectors = clustered(n, centres, rng, args.noise)
        queries = clustered(args.queries, centres, rng, args.noise)
        ids = np.arange(n, dtype=np.int64)

        rows = []
        t0 = time.perf_counter()
        exact = VectorIndex.build(vectors, ids, kind="exact")
        build = time.perf_counter() - t0
        _, truth = exact.search(queries, K)
        rows.append(("exact", build, *single_query_ms(exact, queries), batch_qps(exact, queries), 1.0))
        del exact

        t0 = time.perf_counter()
        hnsw = VectorIndex.build(vectors, ids, kind="hnsw")
        build = time.perf_counter() - t0
        for ef in EF_SEARCH:
            hnsw.set_ef_search(ef)
            _, got = hnsw.search(queries, K)
            rows.append((f"hnsw ef{ef}", build, *single_query_ms(hnsw, queries),
                         batch_qps(hnsw, queries), recall(got, truth)))
        del hnsw, vectors

        for name, build, p50, p99, qps, rec in rows:
            print(f"{n:>9} {name:<12}{build:>9.2f}{p50:>9.3f}{p99:>9.3f}{qps:>11.0f}{rec:>11.3f}", flush=True)


if __name__ == "__main__":
    main()
