"""The vector index: exact and approximate search against numpy brute force, recall tuning, filtering,
persistence, errors, and the tuning record shown by `clipworks search --stats`."""

from __future__ import annotations

import numpy as np
import pytest

import json

from clipworks.errors import InputFileError
from clipworks.search import ann
from clipworks.search.ann import EXACT_MAX, IVF_FLAT_MAX, VectorIndex, choose_kind


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
    hnsw = VectorIndex.build(vectors, ids, kind="hnsw", sample=200)
    assert hnsw.kind == "hnsw"
    hnsw.set_search_params(efSearch=64)
    _, want = exact.search(queries, 10)
    _, got = hnsw.search(queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall >= 0.9
    with pytest.raises(ValueError):
        exact.set_search_params(efSearch=64)


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf-flat", "ivf-pq"])
def test_allowed_ids_are_exact_top_k_of_the_subset(data, kind):
    vectors, ids, queries = data
    index = VectorIndex.build(vectors, ids, kind=kind, sample=200)
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


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf-flat", "ivf-pq"])
def test_save_load_round_trip(data, tmp_path, kind):
    vectors, ids, queries = data
    index = VectorIndex.build(vectors, ids, kind=kind, sample=200)
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx.faiss", "idx.ids.npy", "idx.json"]
    loaded = VectorIndex.load(tmp_path / "idx")
    assert (loaded.kind, loaded.dim, len(loaded)) == (kind, 32, 2000)
    assert loaded.summary() == index.summary()
    for a, b in zip(index.search(queries, 10), loaded.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(index.search(queries, 5, ids[::7]), loaded.search(queries, 5, ids[::7])):
        np.testing.assert_array_equal(a, b)


def test_choose_kind():
    assert choose_kind(1000, 512) == "exact"
    assert choose_kind(EXACT_MAX, 512) == "exact"
    assert choose_kind(EXACT_MAX + 1, 512) == "ivf-flat"
    assert choose_kind(IVF_FLAT_MAX + 1, 512) == "ivf-pq"
    assert choose_kind(IVF_FLAT_MAX + 1, 520) == "ivf-flat"  # 4-bit PQ needs dim a multiple of 16
    n, dim = 1_000_000, 512
    flat = n * dim * 4
    assert choose_kind(n, dim, memory_budget_bytes=10 * flat) == "ivf-pq"
    assert choose_kind(n, dim, memory_budget_bytes=flat) == "exact"  # codes and lists do not fit beside the floats
    assert ann.factory_string("ivf-pq", n, dim) == "IVF4096_HNSW32,PQ64x4fs,RFlat"
    assert ann.nlist_for(300_000) == 2048 and ann.nlist_for(5000) == 128  # >= 39 training points per list


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


# ------------------------------------------------------------ recall tuning


def tuner_recall(vectors: np.ndarray, ids: np.ndarray, index: VectorIndex, sample: int, seed: int = 0) -> float:
    """Recall@10 as the tuner defines it, recomputed with numpy: sample rows as queries, each one's exact top-10
    among the other rows as truth, the index's top-11 without the query's own id as the answer."""
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), sample, replace=False))
    scores = vectors[rows] @ vectors.T
    scores[np.arange(sample), rows] = -np.inf
    truth = ids[np.argsort(-scores, axis=1)[:, :10]]
    _, got = index.search(vectors[rows], 11)
    return float(np.mean([len(np.intersect1d(g[g != own][:10], t)) / 10
                          for own, g, t in zip(ids[rows], got, truth)]))


@pytest.fixture(scope="module")
def clustered():
    both = clustered_vectors(20_300, 64, centres=200, seed=4)
    return both[:20_000], both[20_000:]


@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-pq"])
def test_tuner_reaches_the_target_recall(clustered, kind):
    vectors, queries = clustered
    ids = np.arange(len(vectors), dtype=np.int64) + 100
    index = VectorIndex.build(vectors, ids, kind=kind, recall=0.95, sample=500)
    t = index.tuning
    assert t.index.startswith(("IVF512,", "IVF512_HNSW32,")) and t.target_recall == 0.95 and t.sample_queries == 500
    assert t.recall_at_10 >= 0.95
    # the recorded figure is what the chosen setting really gives on that sample (ids are rows + 100)
    assert tuner_recall(vectors, ids, index, 500) == pytest.approx(t.recall_at_10, abs=1e-6)
    # and it carries over to queries that are not in the store
    _, want = brute_force(vectors, ids, queries, 10)
    _, got = index.search(queries, 10)
    assert np.mean([len(np.intersect1d(g, w)) / 10 for g, w in zip(got, want)]) >= 0.9
    # the sweep stopped at the cheapest setting for each re-ranking depth: the one before it missed the target
    assert all(s["recall_at_10"] < 0.95 for s in t.sweep if s["params"] != t.params and
               s["params"].get("k_factor") == t.params.get("k_factor") and s["params"]["nprobe"] < t.params["nprobe"])


def test_higher_target_gives_a_setting_at_least_as_accurate(clustered):
    vectors, _ = clustered
    ids = np.arange(len(vectors))
    index = VectorIndex.build(vectors, ids, kind="ivf-flat", recall=0.8, sample=500)
    low = dict(index.tuning.params), index.tuning.recall_at_10
    index.retune(vectors, 0.99, sample=500)
    high = dict(index.tuning.params), index.tuning.recall_at_10
    assert low[1] >= 0.8 and high[1] >= 0.99 and high[1] >= low[1]
    assert high[0]["nprobe"] > low[0]["nprobe"]
    assert tuner_recall(vectors, ids, index, 500) == pytest.approx(high[1], abs=1e-6)


def test_exact_is_chosen_when_small_and_needs_no_tuning():
    vectors = random_vectors(3000, 32)
    index = VectorIndex.build(vectors, np.arange(3000), recall=0.99)
    assert index.summary() == {"kind": "exact", "vectors": 3000, "index": "Flat", "params": {}, "recall_at_10": 1.0,
                               "sample_queries": 0, "target_recall": 0.99,
                               "build_seconds": index.tuning.build_seconds}


def _synthetic_store(directory, vectors):
    from clipworks.search.store import Store

    store = Store(directory)
    store.bind_model("synthetic", vectors.shape[1])
    store.put({"path": f"/x/{i}.png", "root": "/x", "folder": "/x", "ext": "png", "size": 1, "mtime": 0.0,
               "sha256": str(i), "embedding": v} for i, v in enumerate(vectors))
    return store


def test_stats_show_the_measured_recall_and_the_target_is_kept(tmp_path, monkeypatch, capsys):
    from clipworks.cli.main import main
    from clipworks.search.engine import RECALL_META, cached_index

    monkeypatch.setattr(ann, "EXACT_MAX", 1000)  # so that 5,000 vectors get an approximate index
    vectors = clustered_vectors(5000, 32, seed=2)
    store = _synthetic_store(tmp_path / "store", vectors)
    assert main(["search", "--stats", "--store", str(tmp_path / "store")]) == 0
    assert json.loads(capsys.readouterr().out)["index"] is None  # not built yet

    built = cached_index(store)
    assert main(["search", "--stats", "--store", str(tmp_path / "store")]) == 0
    shown = json.loads(capsys.readouterr().out)["index"]
    assert shown["kind"] == "ivf-flat" and shown["index"] == "IVF128,Flat" and shown["current"] is True
    assert shown["target_recall"] == 0.95 and shown["sample_queries"] == 1000
    assert shown["recall_at_10"] == built.tuning.recall_at_10 >= 0.95 and shown["params"] == built.tuning.params
    assert tuner_recall(vectors, np.arange(1, 5001), built, 1000) == pytest.approx(shown["recall_at_10"], abs=1e-6)

    store.set_meta(RECALL_META, "0.99")  # as `clipworks index --recall 0.99` records it
    assert main(["search", "--stats", "--store", str(tmp_path / "store")]) == 0
    assert json.loads(capsys.readouterr().out)["index"]["current"] is False
    again = cached_index(store)
    assert again.tuning.target_recall == 0.99 and again.tuning.recall_at_10 >= 0.99
    assert again.tuning.params["nprobe"] >= built.tuning.params["nprobe"]
    assert ann.VectorIndex.load(tmp_path / "store" / "index").summary() == again.summary()  # saved


# ------------------------------------------------------------ calibrated CLIP-like data (benchmarks/ann_latency.py)


def _benchmark_generator():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ann_latency.py"
    spec = importlib.util.spec_from_file_location("ann_latency", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generator


@pytest.fixture(scope="module")
def calibrated():
    return _benchmark_generator()(512, seed=3)(12_000)


def test_choose_kind_boundaries_are_inclusive():
    assert choose_kind(IVF_FLAT_MAX, 512) == "ivf-flat" and choose_kind(IVF_FLAT_MAX + 1, 512) == "ivf-pq"
    fits = ann.estimated_bytes("ivf-flat", EXACT_MAX + 1, 512)
    assert choose_kind(EXACT_MAX + 1, 512, memory_budget_bytes=fits) == "ivf-flat"  # a budget of exactly the estimate
    assert choose_kind(EXACT_MAX + 1, 512, memory_budget_bytes=fits - 1) == "exact"


@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-pq"])
def test_tuner_picks_the_cheapest_setting_meeting_the_target_on_calibrated_data(calibrated, kind):
    """On the benchmark's calibrated 512-d data the tuner meets 0.95, the recorded recall is what the chosen
    setting gives (recomputed with numpy), and one nprobe step fewer misses the target."""
    vectors = calibrated
    ids = np.arange(len(vectors), dtype=np.int64)
    index = VectorIndex.build(vectors, ids, kind=kind, recall=0.95, sample=500)
    t = index.tuning
    assert t.recall_at_10 >= 0.95
    assert tuner_recall(vectors, ids, index, 500) == pytest.approx(t.recall_at_10, abs=1e-6)
    chosen = dict(t.params)
    steps = [p for p in ann.NPROBES if p < chosen["nprobe"]]
    if steps:  # nprobe 1 may already be enough; otherwise the step below, at the deepest re-ranking, misses
        index.set_search_params(nprobe=steps[-1], **({"k_factor": max(ann.K_FACTORS)} if kind == "ivf-pq" else {}))
        assert tuner_recall(vectors, ids, index, 500) < 0.95
    if kind == "ivf-pq":  # re-ranking was tried down to the shallowest depth meeting the target at that nprobe
        depths = [s["params"]["k_factor"] for s in t.sweep
                  if s["params"]["nprobe"] == chosen["nprobe"] and s["recall_at_10"] >= 0.95]
        assert chosen["k_factor"] in depths
        if min(depths) > min(ann.K_FACTORS):
            index.set_search_params(nprobe=chosen["nprobe"], k_factor=min(depths) // 2)
            assert tuner_recall(vectors, ids, index, 500) < 0.95
