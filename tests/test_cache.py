"""The shared file helpers: atomic writes keep the old file on failure; the feature cache is keyed by the weights'
hash, so retrained weights saved under the same name are recomputed and identical weights are reused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipworks.cache import cached, weights_hash
from clipworks.io import atomic_write


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "x.npy"
    atomic_write(path, lambda tmp: np.save(tmp, np.arange(3)))
    assert np.load(path).tolist() == [0, 1, 2]

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert np.load(path).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]  # no temporary file left behind


def test_weights_hash_follows_the_weights_not_the_object():
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    torch.manual_seed(0)
    b = torch.nn.Linear(3, 2)
    assert weights_hash(a) == weights_hash(b)
    before = weights_hash(a)
    with torch.no_grad():
        a.weight.add_(1e-3)  # an in-place change, as an optimizer step makes
    assert weights_hash(a) != before
    b.load_state_dict(a.state_dict())
    assert weights_hash(b) == weights_hash(a)


def test_cache_round_trips_arrays_and_json_and_rebuilds_a_damaged_entry(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(4, dtype=np.float16), "names": ["a", "b"], "n": 2}

    first = cached(tmp_path, "t", {"k": 1}, build)
    again = cached(tmp_path, "t", {"k": 1}, build)
    assert len(calls) == 1 and again["names"] == first["names"] == ["a", "b"] and again["n"] == 2
    assert again["x"].dtype == np.float16 and again["x"].tolist() == [0, 1, 2, 3]
    cached(tmp_path, "t", {"k": 2}, build)
    assert len(calls) == 2
    (entry,) = [p for p in tmp_path.glob("t-*.npz") if str(np.load(p)["_key"]) == '{"k": 1}']
    entry.write_bytes(b"not a zip")
    assert cached(tmp_path, "t", {"k": 1}, build)["n"] == 2 and len(calls) == 3


def test_retrained_model_under_the_same_path_invalidates_its_cached_features(tmp_path, monkeypatch):
    """The captioner's CLIP-embedding cache: a model saved again at runs/x/model with new weights gets new
    features; the same weights, loaded again, reuse them."""
    import clipworks.evaluation.features as features
    from clipworks.captioning.train import embedding_cache
    from clipworks.model.factory import create_model

    computed = []
    embed = features.embed_images
    monkeypatch.setattr(features, "embed_images", lambda *a, **k: computed.append(1) or embed(*a, **k))
    model_dir, cache = tmp_path / "runs" / "x" / "model", tmp_path / "cache"
    torch.manual_seed(0)
    create_model("RN-Tiny-64", device="cpu")[0].save_pretrained(model_dir)

    first, captions, _ = embedding_cache(str(model_dir), "world", {"size": 6}, cache, progress=False)
    assert len(computed) == 1 and len(first) == len(captions) == 6
    reused, _, _ = embedding_cache(str(model_dir), "world", {"size": 6}, cache, progress=False)
    assert len(computed) == 1
    np.testing.assert_array_equal(reused, first)

    torch.manual_seed(1)  # "retrained": other weights, saved under the same name
    create_model("RN-Tiny-64", device="cpu")[0].save_pretrained(model_dir)
    retrained, _, _ = embedding_cache(str(model_dir), "world", {"size": 6}, cache, progress=False)
    assert len(computed) == 2
    assert not np.allclose(retrained, first)
    fresh = embedding_cache(str(model_dir), "world", {"size": 6}, None, progress=False)[0]
    np.testing.assert_array_equal(retrained, fresh)  # what the cache returns is what the new weights give
