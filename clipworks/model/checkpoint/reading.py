"""Read a weights file of any supported kind into a flat {name: tensor} dict, never unpickling code."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from clipworks.errors import CheckpointError
from clipworks.model.checkpoint.torchscript import is_torchscript_archive, read_torchscript_tensors

WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors, container) where container is 'safetensors', 'torchscript' or 'torch'."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), "safetensors"
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if is_torchscript_archive(path):
        return read_torchscript_tensors(path), "torchscript"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = _reason(exc)
        if "Unsupported global" in str(exc):
            raise CheckpointError(f"{path}: refused, the file pickles code or objects other than tensors") from exc
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from exc
    return _unwrap(obj, path), "torch"


def _reason(exc: Exception) -> str:
    """The informative line of torch.load's error (its weights-only errors open with a long preamble)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    for i, line in enumerate(lines):
        if line.endswith("WeightsUnpickler error:") and i + 1 < len(lines):
            return lines[i + 1]
    return lines[0][:200]


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside training checkpoints such as {'epoch': 3, 'state_dict': {...}}."""
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: holds no state dict (found {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors (keys: {sorted(map(str, obj))[:5]})")
    return tensors
