"""Vector index for semantic search: a rebuildable cache over embeddings kept elsewhere.

Built on faiss-cpu, chosen from measurements on this machine (100k x 512-d float32, 1000 queries):
exact inner-product search took 0.69 s with faiss IndexFlatIP against 11.8 s (usearch), 9.15 s
(hnswlib brute force) and 10.2 s (LanceDB flat, batched); an HNSW graph (M=32, efConstruction=40)
built in 11.2 s against 62.6 s (usearch) and 27.4 s (hnswlib), with recall@10 0.984 at efSearch 64.
It installs as a wheel (+66 MB) and needs no compiler.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np

from clipworks.errors import InputFileError
from clipworks.io import atomic_write

EXACT_MAX = 50_000  # at or below this many vectors, exact search is fast enough and never misses
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 64
KINDS = ("exact", "hnsw")


def choose_kind(n_vectors: int, dim: int, memory_budget_bytes: int | None = None) -> str:
    """Pick "exact" (IndexFlatIP) or "hnsw" (IndexHNSWFlat, inner product) for an index of this size.

    Rule: exact when n_vectors <= EXACT_MAX; otherwise hnsw, unless its estimated size
    n * (dim*4 + M*2*4*1.1) bytes exceeds memory_budget_bytes, in which case exact (n * dim*4 bytes)
    is used, being the smaller of the two. No budget means no memory limit.
    """
    if n_vectors <= EXACT_MAX:
        return "exact"
    hnsw_bytes = n_vectors * (dim * 4 + HNSW_M * 2 * 4 * 1.1)
    if memory_budget_bytes is not None and hnsw_bytes > memory_budget_bytes:
        return "exact"
    return "hnsw"


class VectorIndex:
    """Inner-product index over L2-normalised float32 vectors, answering with store ids."""

    def __init__(self, index: faiss.Index, ids: np.ndarray, kind: str):
        self._index = index
        self._ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._kind = kind
        self._order = np.argsort(self._ids, kind="stable")  # rows sorted by id, for id -> row lookup
        self._sorted_ids = self._ids[self._order]

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, kind: str | None = None,
              memory_budget_bytes: int | None = None) -> VectorIndex:
        """Index vectors [N, D] (float32, L2-normalised) under ids [N]; kind None lets choose_kind decide."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or ids.shape != (vectors.shape[0],):
            raise ValueError(f"expected vectors [N, D] and ids [N], got {vectors.shape} and {ids.shape}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids must be unique")
        n, dim = vectors.shape
        kind = kind or choose_kind(n, dim, memory_budget_bytes)
        if kind == "exact":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.hnsw.efSearch = HNSW_EF_SEARCH
        else:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        index.add(vectors)
        return cls(index, ids, kind)

    @property
    def kind(self) -> str:
        """Index kind: "exact" or "hnsw"."""
        return self._kind

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._index.d

    def __len__(self) -> int:
        return self._index.ntotal

    def set_ef_search(self, ef: int) -> None:
        """Set HNSW's efSearch (larger: better recall, slower queries)."""
        if self._kind != "hnsw":
            raise ValueError(f"efSearch applies to hnsw indexes, this one is {self._kind}")
        self._index.hnsw.efSearch = int(ef)

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores [Q, k'], ids [Q, k']) best first, k' = min(k, available); ids are store ids.

        With allowed_ids (a filter applied before ranking), only those rows are searched, exactly:
        their vectors are gathered into a temporary flat index, so the result is the true top-k among
        them whatever the kind. Unknown allowed ids are ignored. An HNSW miss shows as id -1.
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
        """Write <prefix>.faiss, <prefix>.ids.npy and <prefix>.json, each atomically (json last)."""
        prefix = str(path_prefix)
        atomic_write(prefix + ".faiss", lambda tmp: faiss.write_index(self._index, str(tmp)))
        atomic_write(prefix + ".ids.npy", lambda tmp: np.save(tmp, self._ids))
        meta = {"kind": self._kind, "dim": self.dim, "count": len(self)}
        atomic_write(prefix + ".json", lambda tmp: tmp.write_text(json.dumps(meta) + "\n"))

    @classmethod
    def load(cls, path_prefix: str | os.PathLike) -> VectorIndex:
        """Read an index written by save; raise InputFileError naming the file if missing or corrupt."""
        prefix = str(path_prefix)
        meta_path, index_path, ids_path = prefix + ".json", prefix + ".faiss", prefix + ".ids.npy"
        try:
            meta = json.loads(Path(meta_path).read_text())
            kind, dim, count = meta["kind"], int(meta["dim"]), int(meta["count"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputFileError(f"{meta_path}: missing or corrupt index metadata ({e})") from e
        try:
            index = faiss.read_index(index_path)
        except (OSError, RuntimeError) as e:
            raise InputFileError(f"{index_path}: missing or corrupt faiss index") from e
        try:
            ids = np.load(ids_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise InputFileError(f"{ids_path}: missing or corrupt id file ({e})") from e
        hnsw = isinstance(index, faiss.IndexHNSW)
        if kind not in KINDS or (kind == "hnsw") != hnsw or index.d != dim or index.ntotal != count \
                or ids.shape != (count,):
            raise InputFileError(f"{index_path}: index does not match {meta_path} (kind {kind}, "
                                 f"dim {index.d} vs {dim}, count {index.ntotal}, ids {ids.shape} vs {count})")
        return cls(index, ids, kind)
