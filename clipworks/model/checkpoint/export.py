"""Write a clipworks model in the formats other libraries load: an open_clip directory
(`open_clip.create_model_and_transforms('local-dir:DIR')`) or a Hugging Face `CLIPModel` directory
(`transformers.CLIPModel.from_pretrained(DIR)`). The inverse of loading.py, from the same layout and config tables."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from clipworks.errors import ConfigError, InputFileError
from clipworks.model.checkpoint.configs import config_to_huggingface, config_to_openclip
from clipworks.model.checkpoint.layouts import to_huggingface_layout, to_openai_layout
from clipworks.model.clip import CLIP, CONFIG_FILE
from clipworks.model.tokenizer import END_OF_TEXT, START_OF_TEXT, Tokenizer

FORMATS = ("open_clip", "hf")
OPENCLIP_CONFIG = "open_clip_config.json"
# open_clip's own name for safetensors weights (HF_SAFE_WEIGHTS_NAME), first in its search order and in clipworks'.
OPENCLIP_WEIGHTS = "open_clip_model.safetensors"
# A directory holding one of these is a model directory, which `force` may replace; any other is left alone.
_MODEL_MARKERS = (CONFIG_FILE, OPENCLIP_CONFIG, "config.json")

Writer = Callable[[Path], None]


def load_for_export(name: str | os.PathLike, quick_gelu: bool | None = None) -> CLIP:
    """A trained model to export: a shipped name ('default') or a checkpoint path. A bare state dict needs
    `quick_gelu`, since the exported config records the activation and the weights cannot tell it."""
    from clipworks.model.config import is_model_name
    from clipworks.model.factory import checkpoint_for_name, create_model

    if isinstance(name, str) and is_model_name(name):
        raise ConfigError(f"'{name}' is an architecture without trained weights; export a checkpoint file or "
                          "directory, or a shipped model such as 'default'")
    checkpoint = checkpoint_for_name(name)
    if checkpoint.config is None and checkpoint.format == "state_dict" and quick_gelu is None:
        raise ConfigError(f"{checkpoint.path}: a bare state dict cannot tell GELU from QuickGELU, and the exported "
                          "config must say which; pass quick_gelu=True or False (CLI: --quick-gelu or --gelu)")
    model, _ = create_model(checkpoint, quick_gelu=quick_gelu, device="cpu")
    return model


def check_destination(directory: str | os.PathLike, force: bool = False) -> Path:
    """Refuse a destination that is a file, or a non-empty directory unless `force` (and then only a model directory)."""
    out = Path(directory).expanduser()
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise InputFileError(f"{out}: exists and is not empty; choose another directory, or pass force=True "
                                 "(CLI: --force) to replace it")
        if not any((out / marker).is_file() for marker in _MODEL_MARKERS):
            raise InputFileError(f"{out}: not a model directory (no {', '.join(_MODEL_MARKERS)}); force only "
                                 "replaces model directories, so move or delete it yourself")
    return out


def export_model(model: CLIP, directory: str | os.PathLike, format: str, force: bool = False) -> list[Path]:
    """Write `model` to `directory` as `format` ('open_clip' or 'hf'); returns the files written.

    The files are made in a hidden directory beside `directory` and moved into place whole, so an export that
    fails (an architecture the format cannot represent, a full disk) leaves `directory` as it was."""
    if format not in FORMATS:
        raise ConfigError(f"export format '{format}' is not one of {', '.join(FORMATS)}")
    out = check_destination(directory, force)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    files = _openclip_files(model, state) if format == "open_clip" else _huggingface_files(model, state)
    where = out.absolute()  # `.` has no name to hide a sibling under
    tmp = where.with_name(f".{where.name}.{os.getpid()}.export")
    old = where.with_name(f".{where.name}.{os.getpid()}.old")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, write in files.items():
            write(tmp / name)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return [out / name for name in files]


def _openclip_files(model: CLIP, state: dict[str, torch.Tensor]) -> dict[str, Writer]:
    return {
        OPENCLIP_CONFIG: _json(config_to_openclip(model.config)),
        OPENCLIP_WEIGHTS: _safetensors(to_openai_layout(state)),
    }


def _huggingface_files(model: CLIP, state: dict[str, torch.Tensor]) -> dict[str, Writer]:
    config, preprocessor = config_to_huggingface(model.config)
    tokenizer = Tokenizer(context_length=model.config.text.context_length)
    merges = "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in tokenizer.merges)
    special = {"bos_token": START_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT, "pad_token": END_OF_TEXT}
    tokenizer_config = {"tokenizer_class": "CLIPTokenizer", "processor_class": "CLIPProcessor",
                        "model_max_length": tokenizer.context_length, "do_lower_case": True, "errors": "replace",
                        **special}
    return {
        "config.json": _json(config),
        "model.safetensors": _safetensors(to_huggingface_layout(state), {"format": "pt"}),  # transformers checks it
        "preprocessor_config.json": _json({**preprocessor, "processor_class": "CLIPProcessor"}),
        "vocab.json": _json(tokenizer.vocabulary),
        "merges.txt": lambda path: path.write_text(merges, encoding="utf-8"),
        "tokenizer_config.json": _json(tokenizer_config),
        "special_tokens_map.json": _json(special),
    }


def _json(data: Any) -> Writer:
    return lambda path: path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Writer:
    from safetensors.torch import save_file

    return lambda path: save_file(tensors, str(path), metadata=metadata)
