"""Weights and config of small trained models, saved as a directory (a config JSON + model.safetensors): the
ones shipped inside a package by name, and reading one back into a model with clear errors. Used by the
captioning, VQA and video models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from clipworks.errors import CheckpointError

WEIGHTS_FILE = "model.safetensors"
SHIPPED_NAMES = ("default",)


def resolve(directory: str | Path, package: str) -> Path:
    """A shipped model's packaged directory for a name ('default' -> <package>/pretrained/default), else the path."""
    if isinstance(directory, str) and directory in SHIPPED_NAMES:
        from importlib import resources

        return Path(str(resources.files(package).joinpath("pretrained", directory)))
    return Path(directory).expanduser()


def read_config(path: Path, config_file: str, what: str) -> dict[str, Any]:
    """The JSON config of a model directory; a missing or unreadable one names the file."""
    config_path = path / config_file
    if not config_path.is_file():
        raise CheckpointError(f"{path}: no {config_file} (not a clipworks {what} directory)")
    try:
        return json.loads(config_path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{config_path}: unreadable {what} config ({exc})") from None


def load_weights(model: torch.nn.Module, path: Path, not_stored: Callable[[str], bool],
                 mismatch: Callable[[str, tuple, tuple], str]) -> None:
    """Load `path`/model.safetensors into `model` (float16 files upcast to float32). Keys for which
    `not_stored(key)` is true may be absent; a tensor of the wrong shape is an error worded by `mismatch`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = path / WEIGHTS_FILE
    try:
        state = load_file(str(file))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{file}: unreadable weights ({exc})") from None
    expected = model.state_dict()
    for key, value in state.items():
        if key in expected and expected[key].shape != value.shape:
            raise CheckpointError(f"{file}: {mismatch(key, tuple(value.shape), tuple(expected[key].shape))}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not not_stored(k)]
    if missing or unexpected:
        raise CheckpointError(f"{file}: missing {missing[:3]} unexpected {unexpected[:3]}")


def save_weights(state: dict[str, torch.Tensor], directory: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write `state` to `directory`/model.safetensors (floating tensors in `dtype` if given); returns the directory."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cast = {k: v.detach().to(dtype if dtype is not None and v.is_floating_point() else v.dtype).contiguous()
            for k, v in state.items()}
    save_file(cast, str(out / WEIGHTS_FILE))
    return out


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """{"total": all parameters, "trainable": those with requires_grad}."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
