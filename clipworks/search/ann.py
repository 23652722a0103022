"""Vector index for semantic search: a rebuildable cache over embeddings kept elsewhere.

Built on faiss-cpu (chosen over usearch, hnswlib and LanceDB on this machine: exact search 17x faster,
graph build 2.4-5.6x faster, a wheel with no compiler). The index family is chosen by collection size
(`choose_kind`) and its search parameter is then tuned by *measuring* recall@10 at build time, as
autofaiss does: a sample of the collection's own vectors is searched exactly (brute force, the truth)
and with the index at each setting, and the fastest setting whose recall meets the target is kept.
On CLIP-like 300k x 512 vectors (2,000 clusters) the former default, HNSW M 32 / efSearch 64, found
62% of the true top-10; IVF-PQ fast-scan with exact re-ranking reached 95.7% at under half its latency
(research/round2/performance.md). Where IVF cannot partition the data, the IVF-Flat tuner ends at nprobe
= nlist (an exact scan) rather than returning a low recall silently; the sweep is kept in the index's JSON.
On data calibrated against the default model's embeddings (benchmarks/ann_latency.py), 1M x 512 needed
nprobe 2 of 4,096 lists with x128 re-ranking for 0.95 (p50 0.47 ms on one loaded thread).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from clipworks.errors import InputFileError
from clipworks.io import atomic_write

EXACT_MAX = 50_000  # at or below this many vectors, exact search is fast enough and never misses
IVF_FLAT_MAX = 200_000  # up to here IVF-Flat; beyond, IVF-PQ fast-scan scans 4-bit codes and re-ranks exactly
# IVF-PQ finds its lists with an HNSW graph over the centroids: a flat scan of 4,096 x 512 centroids alone
# took a third of a 1M query's time
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
KINDS = ("exact", "ivf-flat", "ivf-pq", "hnsw")
DEFAULT_RECALL = 0.95  # recall@10 the tuner aims for unless told otherwise
SAMPLE_QUERIES = 1000  # store vectors used as tuning queries
RECALL_K = 10
# IVF-PQ: candidates re-ranked exactly, as a multiple of k. Deep, because on tight clusters 4-bit codes
# cannot order near neighbours: at 1M calibrated vectors x32 peaked at 0.80 recall@10, x128 reached 0.975
K_FACTORS = (2, 4, 8, 16, 32, 64, 128, 256)
PLATEAU_STEPS = 3  # stop raising nprobe after this many steps without a gain in recall
EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072)
KMEANS_ITERATIONS = 8
KMEANS_POINTS_PER_LIST = 40  # k-means trains on a sample of this many points per list


def nlist_for(n_vectors: int) -> int:
    """Number of IVF lists: the power of two nearest 4 * sqrt(n), between 64 and 4096, with at least 39
    training points per list (faiss's minimum for k-means)."""
    nlist = 2 ** np.clip(np.round(np.log2(4 * np.sqrt(max(n_vectors, 1)))), 6, 12)
    while nlist > 64 and nlist * 39 > n_vectors:
        nlist //= 2
    return int(nlist)


def estimated_bytes(kind: str, n_vectors: int, dim: int) -> int:
    """Approximate memory of an index of this kind (every kind keeps the float vectors, for exact scores)."""
    floats = n_vectors * dim * 4
    extra = {"exact": 0, "ivf-flat": n_vectors * 8 + nlist_for(n_vectors) * dim * 4,
             "ivf-pq": n_vectors * (dim // 16 + 8) + nlist_for(n_vectors) * (dim * 4 + HNSW_M * 8),
             "hnsw": n_vectors * HNSW_M * 2 * 4 * 1.1}[kind]
    return int(floats + extra)


def choose_kind(n_vectors: int, dim: int, memory_budget_bytes: int | None = None) -> str:
    """Pick the index family for a collection of this size: the one place that rule lives.

    Exact (IndexFlatIP) up to EXACT_MAX vectors; IVF-Flat up to IVF_FLAT_MAX; IVF-PQ fast-scan with exact
    re-ranking beyond (IVF-Flat where dim is not a multiple of 16, which 4-bit PQ needs). If that kind's
    estimated size exceeds memory_budget_bytes, exact search, the smallest, is used. HNSW is never
    picked by size (on clustered CLIP-like data it needs a far larger efSearch for the same recall) but
    can be asked for by name.
    """
    if n_vectors <= EXACT_MAX:
        return "exact"
    kind = "ivf-flat" if n_vectors <= IVF_FLAT_MAX or dim % 16 else "ivf-pq"
    if memory_budget_bytes is not None and estimated_bytes(kind, n_vectors, dim) > memory_budget_bytes:
        return "exact"
    return kind


def factory_string(kind: str, n_vectors: int, dim: int) -> str:
    """The faiss index_factory string for this kind and size."""
    nlist = nlist_for(n_vectors)
    strings = {"exact": "Flat", "ivf-flat": f"IVF{nlist},Flat",
               "ivf-pq": f"IVF{nlist}_HNSW{HNSW_M},PQ{dim // 8}x4fs,RFlat",
               "hnsw": f"HNSW{HNSW_M},Flat"}
    if kind not in strings:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return strings[kind]


@dataclass
class Tuning:
    """How an index was chosen: its factory string, search parameters and the recall@10 measured on a sample."""

    index: str
    params: dict[str, int] = field(default_factory=dict)
    recall_at_10: float = 1.0
    sample_queries: int = 0  # 0: exact search, right by construction, nothing measured
    target_recall: float = DEFAULT_RECALL
    build_seconds: float = 0.0
    sweep: list[dict[str, Any]] = field(default_factory=list)  # every setting tried: params, recall, seconds


def _apply(index: faiss.Index, params: dict[str, int]) -> None:
    """Set search parameters on the faiss index: nprobe (IVF), k_factor (re-ranking), efSearch (HNSW)."""
    for name, value in params.items():
        if name == "nprobe":
            faiss.extract_index_ivf(index).nprobe = int(value)
        elif name == "k_factor":
            faiss.downcast_index(index).k_factor = float(value)
        elif name == "efSearch":
            faiss.downcast_index(index).hnsw.efSearch = int(value)
        else:
            raise ValueError(f"unknown search parameter {name!r} (expected nprobe, k_factor or efSearch)")


def _recall(index: faiss.Index, queries: np.ndarray, rows: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(recall@10, seconds) of the index on sample queries that are rows of it; each query's own row is left out."""
    t0 = time.perf_counter()
    _, got = index.search(queries, RECALL_K + 1)
    seconds = time.perf_counter() - t0
    hits = 0
    for own, found, want in zip(rows, got, truth):
        found = found[(found != own) & (found >= 0)][:RECALL_K]
        hits += len(np.intersect1d(found, want))
    return hits / truth.size, seconds


def _sample_truth(vectors: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, queries, truth): sample rows of the collection, their vectors, and each one's exact top-10 others."""
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), min(size, len(vectors)), replace=False))
    queries = vectors[rows]
    _, top = faiss.knn(queries, vectors, RECALL_K + 1, metric=faiss.METRIC_INNER_PRODUCT)
    truth = np.stack([t[t != own][:RECALL_K] for own, t in zip(rows, top)])
    return rows, queries, truth


def tune(index: faiss.Index, kind: str, vectors: np.ndarray, target: float, sample: int = SAMPLE_QUERIES,
         seed: int = 0) -> tuple[dict[str, int], float, int, list[dict[str, Any]]]:
    """Sweep the kind's search parameter on sample queries from `vectors` (the indexed rows, in row order);
    return (params, recall@10, sample size, sweep) of the fastest setting whose recall meets `target`, or of
    the most accurate one if none does. The index is left set to the chosen parameters.

    The values step by about x1.5. IVF-Flat and HNSW have one parameter, whose cost grows with it: the
    first value that meets the target is the fastest. IVF-PQ has two (nprobe, and k_factor for re-ranking):
    scanning lists costs far more than re-ranking k * k_factor vectors, so the smallest nprobe meeting the
    target is found at the deepest re-ranking, then shallower ones are tried at that nprobe, and the
    setting timed fastest (best of 3) among those that meet the target is kept.
    """
    rows, queries, truth = _sample_truth(vectors, sample, seed)
    if kind == "hnsw":
        name, values = "efSearch", list(EF_SEARCH)
    else:
        nlist = faiss.extract_index_ivf(index).nlist
        name, values = "nprobe", [p for p in NPROBES if p < nlist] + [nlist]
    sweep: list[dict[str, Any]] = []

    def measure(params: dict[str, int]) -> float:
        _apply(index, params)
        recall, seconds = _recall(index, queries, rows, truth)
        if recall >= target and kind == "ivf-pq":  # several settings may meet it: time them fairly
            seconds = min(seconds, *(_recall(index, queries, rows, truth)[1] for _ in range(2)))
        sweep.append({"params": params, "recall_at_10": round(recall, 4), "seconds": round(seconds, 4)})
        return recall

    # re-ranking is cheap beside scanning lists, so the deepest re-ranking needs the fewest lists: find that
    # nprobe first, then keep shallower re-ranking only where it still meets the target at that nprobe
    k_factors = sorted(K_FACTORS, reverse=True) if kind == "ivf-pq" else [None]
    extra = {"k_factor": k_factors[0]} if kind == "ivf-pq" else {}
    best_recall, stale = -1.0, 0
    for value in values:
        recall = measure({name: value, **extra})
        if recall >= target:
            for k_factor in k_factors[1:]:
                if measure({name: value, "k_factor": k_factor}) < target:
                    break
            break
        best_recall, stale = max(best_recall, recall), (stale + 1 if recall <= best_recall else 0)
        if stale == PLATEAU_STEPS and kind != "ivf-flat":
            break  # more lists no longer help (the codes or the graph limit recall): stop paying for them
    meeting = [s for s in sweep if s["recall_at_10"] >= target]
    best = min(meeting, key=lambda s: s["seconds"]) if meeting else max(sweep, key=lambda s: s["recall_at_10"])
    _apply(index, best["params"])
    return best["params"], best["recall_at_10"], len(rows), sweep


def _build_faiss(kind: str, vectors: np.ndarray, seed: int) -> faiss.Index:
    n, dim = vectors.shape
    index = faiss.index_factory(dim, factory_string(kind, n, dim), faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        faiss.downcast_index(index).hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if kind.startswith("ivf"):
        ivf = faiss.extract_index_ivf(index)
        # spherical k-means on a sample: the vectors are on the unit sphere and full k-means at 1M is minutes
        ivf.cp.spherical, ivf.cp.niter, ivf.cp.seed = True, KMEANS_ITERATIONS, seed
        size = min(n, KMEANS_POINTS_PER_LIST * ivf.nlist)  # PQ trains on the same sample's residuals
        rows = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
        index.train(vectors[rows])
    index.add(vectors)
    if kind == "ivf-flat":
        faiss.extract_index_ivf(index).make_direct_map()  # reconstruct rows for filtered search
    return index


class VectorIndex:
    """Inner-product index over L2-normalised float32 vectors, answering with store ids."""

    def __init__(self, index: faiss.Index, ids: np.ndarray, kind: str, tuning: Tuning):
        self._index = index
        self._ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._kind = kind
        self.tuning = tuning
        self._order = np.argsort(self._ids, kind="stable")  # rows sorted by id, for id -> row lookup
        self._sorted_ids = self._ids[self._order]
        _apply(index, tuning.params)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, kind: str | None = None,
              memory_budget_bytes: int | None = None, recall: float = DEFAULT_RECALL,
              sample: int = SAMPLE_QUERIES, seed: int = 0) -> VectorIndex:
        """Index vectors [N, D] (float32, L2-normalised) under ids [N], tuned to reach `recall` (recall@10,
        measured on `sample` of the vectors themselves); kind None lets choose_kind decide."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or ids.shape != (vectors.shape[0],):
            raise ValueError(f"expected vectors [N, D] and ids [N], got {vectors.shape} and {ids.shape}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids must be unique")
        if not 0 < recall <= 1:
            raise ValueError(f"recall must be in (0, 1], got {recall}")
        n, dim = vectors.shape
        kind = kind or choose_kind(n, dim, memory_budget_bytes)
        t0 = time.perf_counter()
        index = _build_faiss(kind, vectors, seed)
        built = cls(index, ids, kind, Tuning(factory_string(kind, n, dim)))
        built.retune(vectors, recall, sample, seed)
        built.tuning.build_seconds = round(time.perf_counter() - t0, 3)
        return built

    @property
    def kind(self) -> str:
        """Index family: one of KINDS."""
        return self._kind

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._index.d

    def __len__(self) -> int:
        return self._index.ntotal

    def summary(self) -> dict[str, Any]:
        """What --stats shows: kind, size, faiss string, search parameters and the measured recall@10."""
        t = self.tuning
        return {"kind": self._kind, "vectors": len(self), "index": t.index, "params": t.params,
                "recall_at_10": t.recall_at_10, "sample_queries": t.sample_queries,
                "target_recall": t.target_recall, "build_seconds": t.build_seconds}

    def retune(self, vectors: np.ndarray, recall: float, sample: int = SAMPLE_QUERIES, seed: int = 0) -> None:
        """Tune the search parameter again for another recall target, without rebuilding; `vectors` are the
        indexed vectors in the order they were built with."""
        if vectors.shape != (len(self), self.dim):
            raise ValueError(f"expected the {len(self)} indexed vectors of dim {self.dim}, got {vectors.shape}")
        t = self.tuning
        t.target_recall = recall
        if self._kind != "exact" and len(self) > 1:
            t.params, t.recall_at_10, t.sample_queries, t.sweep = tune(
                self._index, self._kind, np.ascontiguousarray(vectors, dtype=np.float32), recall, sample, seed)

    def set_search_params(self, **params: int) -> None:
        """Override the tuned search parameters (nprobe, k_factor, efSearch, as the kind has them)."""
        allowed = {"exact": set(), "ivf-flat": {"nprobe"}, "ivf-pq": {"nprobe", "k_factor"},
                   "hnsw": {"efSearch"}}[self._kind]
        if not set(params) <= allowed:
            raise ValueError(f"a {self._kind} index takes {sorted(allowed) or 'no'} search parameters, got {sorted(params)}")
        _apply(self._index, params)
        self.tuning.params = {**self.tuning.params, **params}

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores [Q, k'], ids [Q, k']) best first, k' = min(k, available); ids are store ids.

        With allowed_ids (a filter applied before ranking), only those rows are searched, exactly:
        their vectors are gathered into a temporary flat index, so the result is the true top-k among
        them whatever the kind. Unknown allowed ids are ignored. An approximate miss shows as id -1.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InputFileError(f"query dimension mismatch: expected {self.dim}, got {queries.shape[-1]}")
        if allowed_ids is None:
            index, row_ids = self._index, self._ids
        else:
            rows = self._rows_of(np.asarray(allowed_ids, dtype=np.int64))
            index = faiss.IndexFlatIP(self.dim)
            if len(rows):
                index.add(self._index.reconstruct_batch(rows))
            row_ids = self._ids[rows]
        k = min(int(k), index.ntotal)
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores, rows = index.search(queries, k)
        return scores, np.where(rows >= 0, row_ids[rows], -1)

    def _rows_of(self, wanted: np.ndarray) -> np.ndarray:
        """Row positions of the wanted ids that are in the index, in row order."""
        sorted_ids = self._sorted_ids
        pos = np.searchsorted(sorted_ids, wanted).clip(max=max(len(sorted_ids) - 1, 0))
        found = sorted_ids[pos] == wanted if len(sorted_ids) else np.zeros(len(wanted), bool)
        return np.unique(self._order[pos[found]])

    def save(self, path_prefix: str | os.PathLike) -> None:
        """Write <prefix>.faiss, <prefix>.ids.npy and <prefix>.json (the tuning record), each atomically (json last)."""
        prefix = str(path_prefix)
        atomic_write(prefix + ".faiss", lambda tmp: faiss.write_index(self._index, str(tmp)))
        atomic_write(prefix + ".ids.npy", lambda tmp: np.save(tmp, self._ids))
        meta = {"kind": self._kind, "dim": self.dim, "count": len(self), **asdict(self.tuning)}
        atomic_write(prefix + ".json", lambda tmp: tmp.write_text(json.dumps(meta) + "\n"))

    @classmethod
    def load(cls, path_prefix: str | os.PathLike) -> VectorIndex:
        """Read an index written by save; raise InputFileError naming the file if missing or corrupt."""
        prefix = str(path_prefix)
        meta_path, index_path, ids_path = prefix + ".json", prefix + ".faiss", prefix + ".ids.npy"
        try:
            meta = read_index_meta(meta_path)
            kind, dim, count = meta["kind"], int(meta["dim"]), int(meta["count"])
            tuning = Tuning(**{f: meta[f] for f in Tuning.__dataclass_fields__})
        except (ValueError, KeyError, TypeError) as e:
            raise InputFileError(f"{meta_path}: missing or corrupt index metadata ({e})") from e
        try:
            index = faiss.read_index(index_path)
        except (OSError, RuntimeError) as e:
            raise InputFileError(f"{index_path}: missing or corrupt faiss index") from e
        try:
            ids = np.load(ids_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise InputFileError(f"{ids_path}: missing or corrupt id file ({e})") from e
        expected = {"exact": faiss.IndexFlat, "ivf-flat": faiss.IndexIVFFlat, "ivf-pq": faiss.IndexRefine,
                    "hnsw": faiss.IndexHNSW}.get(kind)
        if expected is None or not isinstance(index, expected) or index.d != dim or index.ntotal != count \
                or ids.shape != (count,):
            raise InputFileError(f"{index_path}: index does not match {meta_path} (kind {kind}, "
                                 f"dim {index.d} vs {dim}, count {index.ntotal}, ids {ids.shape} vs {count})")
        return cls(index, ids, kind, tuning)


def read_index_meta(meta_path: str | os.PathLike) -> dict[str, Any]:
    """The JSON record save() writes beside an index (kind, size, tuning); InputFileError if missing or corrupt."""
    try:
        meta = json.loads(Path(meta_path).read_text())
    except (OSError, ValueError) as e:
        raise InputFileError(f"{meta_path}: missing or corrupt index metadata ({e})") from e
    if not isinstance(meta, dict):
        raise InputFileError(f"{meta_path}: index metadata is not a JSON object")
    return meta
