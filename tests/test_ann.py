"""The vector index: exact and HNSW search against numpy brute force, filtering, persistence, errors."""

from __future__ import annotations

import numpy as np
import pytest

from clipworks.errors import InputFileError
from clipworks.search.ann import EXACT_MAX, VectorIndex, choose_kind


def normalised(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return normalised(np.random.default_rng(seed).standard_normal((n, dim)))


def clustered_vectors(n: int, dim: int, centres: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim))
    return normalised(c[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, dim)))


def brute_force(vectors, ids, queries, k):
    scores = queries @ vectors.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), ids[top]


@pytest.fixture(scope="module")
def data():
    vectors, queries = random_vectors(2000, 32), random_vectors(20, 32, seed=1)
    return vectors, 10 * np.arange(2000, dtype=np.int64) + 7, queries


def test_exact_matches_brute_force(data):
    vectors, ids, queries = data
    index = VectorIndex.build(vectors, ids)
    assert index.kind == "exact" and index.dim == 32 and len(index) == 2000
    scores, got = index.search(queries, 10)
    want_scores, want_ids = brute_force(vectors, ids, queries, 10)
    np.testing.assert_array_equal(got, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    assert got.dtype == np.int64 and scores.shape == (20, 10)


def test_k_larger_than_index_is_clipped(data):
    vectors, ids, queries = data
    index = VectorIndex.build(vectors[:5], ids[:5])
    scores, got = index.search(queries, 10)
    assert got.shape == scores.shape == (20, 5)
    assert set(got[0]) == set(ids[:5])


def test_hnsw_recall_against_exact():
    both = clustered_vectors(5100, 32)  # queries from the same clusters as the data
    vectors, queries = both[:5000], both[5000:]
    ids = np.arange(5000, dtype=np.int64) * 3
    exact = VectorIndex.build(vectors, ids, kind="exact")
    hnsw = VectorIndex.build(vectors, ids, kind="hnsw")
    assert hnsw.kind == "hnsw"
    hnsw.set_ef_search(64)
    _, want = exact.search(queries, 10)
    _, got = hnsw.search(queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall >= 0.9
    with pytest.raises(ValueError):
        exact.set_ef_search(64)


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_allowed_ids_are_exact_top_k_of_the_subset(data, kind):
    vectors, ids, queries = data
    index = VectorIndex.build(vectors, ids, kind=kind)
    rng = np.random.default_rng(3)
    rows = np.sort(rng.choice(2000, 150, replace=False))
    allowed = np.concatenate([ids[rows][::-1], [-5, 123456789]])  # unordered, plus unknown ids
    scores, got = index.search(queries, 10, allowed_ids=allowed)
    assert np.isin(got, ids[rows]).all()
    want_scores, want_ids = brute_force(vectors[rows], ids[rows], queries, 10)
    np.testing.assert_array_equal(got, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    # fewer allowed than k, and none at all
    assert index.search(queries, 10, allowed_ids=ids[:3])[1].shape == (20, 3)
    assert index.search(queries, 10, allowed_ids=np.array([], np.int64))[1].shape == (20, 0)


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_save_load_round_trip(data, tmp_path, kind):
    vectors, ids, queries = data
    index = VectorIndex.build(vectors, ids, kind=kind)
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx.faiss", "idx.ids.npy", "idx.json"]
    loaded = VectorIndex.load(tmp_path / "idx")
    assert (loaded.kind, loaded.dim, len(loaded)) == (kind, 32, 2000)
    for a, b in zip(index.search(queries, 10), loaded.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(index.search(queries, 5, ids[::7]), loaded.search(queries, 5, ids[::7])):
        np.testing.assert_array_equal(a, b)


def test_choose_kind():
    assert choose_kind(1000, 512) == "exact"
    assert choose_kind(EXACT_MAX, 512) == "exact"
    assert choose_kind(EXACT_MAX + 1, 512) == "hnsw"
    n, dim = 1_000_000, 512
    flat = n * dim * 4
    assert choose_kind(n, dim, memory_budget_bytes=10 * flat) == "hnsw"
    assert choose_kind(n, dim, memory_budget_bytes=flat) == "exact"  # graph does not fit


def test_wrong_query_dimension(data):
    vectors, ids, _ = data
    index = VectorIndex.build(vectors, ids)
    with pytest.raises(InputFileError, match=r"expected 32, got 16"):
        index.search(random_vectors(3, 16), 5)


def test_corrupt_or_missing_index_file(data, tmp_path):
    vectors, ids, _ = data
    VectorIndex.build(vectors, ids).save(tmp_path / "idx")
    path = tmp_path / "idx.faiss"
    path.write_bytes(b"not a faiss index at all" * 10)
    with pytest.raises(InputFileError, match=str(path)):
        VectorIndex.load(tmp_path / "idx")
    path.unlink()
    with pytest.raises(InputFileError, match=str(path)):
        VectorIndex.load(tmp_path / "idx")
    with pytest.raises(InputFileError, match="nothing.json"):
        VectorIndex.load(tmp_path / "nothing")
