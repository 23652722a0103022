"""Find, read and check a checkpoint: a file (OpenAI TorchScript or state dict, open_clip, safetensors)
or a directory (clipworks' `save_pretrained`, open_clip's `open_clip_config.json`, Hugging Face `CLIPModel`)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipworks.errors import CheckpointError
from clipworks.model.checkpoint.configs import config_from_huggingface, config_from_openclip, infer_config
from clipworks.model.checkpoint.layouts import to_clipworks_layout
from clipworks.model.checkpoint.reading import read_weights
from clipworks.model.clip import CONFIG_FILE, WEIGHTS_FILE
from clipworks.model.config import ModelConfig, config_from_dict

# Weight files looked for in a directory, in order of preference (safetensors first).
_DIR_WEIGHTS = {
    "clipworks": (WEIGHTS_FILE,),
    "open_clip": ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                  "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin"),
    "huggingface": ("model.safetensors", "pytorch_model.bin"),
}


@dataclass
class Checkpoint:
    """Weights in clipworks' layout, with the config the checkpoint carries (None for bare weights)."""

    path: Path
    format: str  # clipworks | open_clip | huggingface | openai-torchscript | state_dict
    state_dict: dict[str, torch.Tensor]
    config: ModelConfig | None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from exc


def _weights_in(directory: Path, kind: str) -> Path:
    for name in _DIR_WEIGHTS[kind]:
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(f"{directory}: no weights file; expected one of {', '.join(_DIR_WEIGHTS[kind])}")


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read any supported checkpoint, detecting its format from the files present."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        return _read_directory(path)
    tensors, container = read_weights(path)
    state, _ = to_clipworks_layout(tensors, path)
    return Checkpoint(path, "openai-torchscript" if container == "torchscript" else "state_dict", state, None)


def _read_directory(path: Path) -> Checkpoint:
    if (path / CONFIG_FILE).is_file():
        meta = _read_json(path / CONFIG_FILE)
        if not isinstance(meta, dict) or "model" not in meta:
            raise CheckpointError(f"{path / CONFIG_FILE}: missing field 'model'")
        config = config_from_dict(meta["model"], str(path / CONFIG_FILE))
        kind = "clipworks"
    elif (path / "open_clip_config.json").is_file():
        config = config_from_openclip(_read_json(path / "open_clip_config.json"), path / "open_clip_config.json")
        kind = "open_clip"
    elif (path / "config.json").is_file():
        pre_file = path / "preprocessor_config.json"
        preprocessor = _read_json(pre_file) if pre_file.is_file() else None
        config = config_from_huggingface(_read_json(path / "config.json"), preprocessor, path / "config.json")
        kind = "huggingface"
    else:
        raise CheckpointError(
            f"{path}: not a model directory (expected {CONFIG_FILE}, open_clip_config.json or a Hugging Face config.json)"
        )
    weights = _weights_in(path, kind)
    tensors, _ = read_weights(weights)
    state, _ = to_clipworks_layout(tensors, weights)
    return Checkpoint(path, kind, state, config)


def config_for(checkpoint: Checkpoint, quick_gelu: bool | None) -> ModelConfig:
    """The checkpoint's own config, or one inferred from its shapes; `quick_gelu` overrides the activation."""
    if checkpoint.config is not None:
        return checkpoint.config if quick_gelu is None else checkpoint.config.with_quick_gelu(quick_gelu)
    if quick_gelu is None:
        # Weights alone cannot tell QuickGELU from GELU; OpenAI's layout implies OpenAI's activation.
        quick_gelu = True
        if checkpoint.format != "openai-torchscript":
            warnings.warn(
                f"{checkpoint.path}: bare state dict, assuming QuickGELU (OpenAI's activation); "
                "pass quick_gelu=False (CLI: --gelu) for GELU-trained weights such as most open_clip ones",
                stacklevel=3,
            )
    return infer_config(checkpoint.state_dict, quick_gelu, checkpoint.path)


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(map(str, t.shape)) + "]"


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: Path, architecture: str) -> None:
    """Strictly load `state` into `model`; a misfit lists the first mismatching keys and shapes."""
    expected = model.state_dict()
    state = dict(state)
    for key, value in expected.items():
        # BatchNorm step counters do not affect inference; some exporters omit them.
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    mismatched = [
        f"{k}: checkpoint {_shape(state[k])} vs model {_shape(v)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if mismatched or missing or unexpected:
        parts = mismatched[:3]
        if missing:
            parts.append(f"missing {len(missing)} key(s), e.g. {', '.join(missing[:2])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s), e.g. {', '.join(unexpected[:2])}")
        more = f" (+{len(mismatched) - 3} more shape mismatches)" if len(mismatched) > 3 else ""
        raise CheckpointError(f"{source}: does not fit architecture {architecture}: " + "; ".join(parts) + more)
    model.load_state_dict(state, strict=True)
