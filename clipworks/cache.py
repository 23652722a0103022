"""The one on-disk cache for what is costly to recompute (a frozen model's features, rendered or decoded data).

An entry is keyed by everything its content depends on: the weights' hash (`weights_hash`, never a model's
name, which can point at retrained weights), the data's identity and the settings. Entries are .npz files
read without unpickling: numpy arrays by name, and JSON for everything else."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clipworks.io import atomic_write

_JSON = "_json"  # the entry's non-array values, as one JSON string
_KEY = "_key"  # the full key, checked on reading


def weights_hash(model) -> str:
    """sha256 of a torch module's state dict (names, dtypes, shapes and bytes); computed once per loaded model
    and again only after its weights change in place (a training step, `load_state_dict`)."""
    import torch

    state = model.state_dict()
    # A tensor's version counter moves on every in-place change, so (storage, version) tells if the hash is stale.
    stamp = tuple((t.data_ptr(), t._version) for t in state.values())
    known = getattr(model, "_clipworks_weights_hash", None)
    if known is not None and known[0] == stamp:
        return known[1]
    digest = hashlib.sha256()
    for name, tensor in state.items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{list(tensor.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    model._clipworks_weights_hash = (stamp, digest.hexdigest())
    return model._clipworks_weights_hash[1]


def cached(directory: str | Path | None, kind: str, key: dict[str, Any],
           build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`build()`'s result (a dict of numpy arrays and JSON values), kept in `directory/<kind>-<hash of key>.npz`
    and read from there while `key` is the same. No `directory`: computed every time. A damaged entry is rebuilt."""
    key_json = json.dumps(key, sort_keys=True)
    path = None
    if directory is not None:
        path = Path(directory) / f"{kind}-{hashlib.sha256(key_json.encode()).hexdigest()[:24]}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z[_KEY]) == key_json:
                        values = {k: z[k] for k in z.files if k not in (_JSON, _KEY)}
                        return {**values, **json.loads(str(z[_JSON]))}
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
                pass  # a damaged entry is built again
    result = build()
    arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
    rest = json.dumps({k: v for k, v in result.items() if not isinstance(v, np.ndarray)})
    if path is not None:
        atomic_write(path, lambda tmp: np.savez(tmp, **arrays, **{_JSON: rest, _KEY: key_json}))
    return {**arrays, **json.loads(rest)}  # as a read from the cache gives it (tuples come back as lists)


def data_identity(source: str) -> dict[str, Any]:
    """What identifies a data source in a cache key: its name, and if it names a file or folder, every file's
    relative path, size and modification time (so an edited folder is not served stale features)."""
    path = Path(source).expanduser()
    if not path.exists():
        return {"source": source}  # a generated or registered source, determined by its name and options
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    listing = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return {"source": str(path.resolve()), "files": hashlib.sha256(json.dumps(listing).encode()).hexdigest()}
