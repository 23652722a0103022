"""One entry point: `create_model(name_or_path, pretrained=...)` -> (model, preprocess)."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from clipworks.errors import CheckpointError, ConfigError
from clipworks.model.checkpoint.loading import Checkpoint, config_for, load_weights, read_checkpoint
from clipworks.model.clip import CLIP
from clipworks.model.config import ModelConfig, get_model_config, is_model_name
from clipworks.model.modified_resnet import ModifiedResNet
from clipworks.model.pretrained_tags import PretrainedTag, fetch_pretrained, find_pretrained, list_pretrained
from clipworks.model.tokenizer import Tokenizer
from clipworks.model.transforms import image_transform


# Trained weights that ship inside the package, by name.
SHIPPED = {"default": "pretrained/default"}


def shipped_model_path(name: str) -> Path | None:
    """The packaged directory of a shipped model ('default'), or None when the name is not one."""
    if name not in SHIPPED:
        return None
    from importlib import resources

    return Path(str(resources.files("clipworks.model").joinpath(SHIPPED[name])))


def default_device() -> torch.device:
    """CUDA when present, else CPU: where `create_model`, training and every command put a model unless told."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def checkpoint_for_name(name: str | os.PathLike | Checkpoint) -> Checkpoint:
    """The checkpoint of a shipped model name ('default') or of a file/directory path (a Checkpoint passes through)."""
    if isinstance(name, Checkpoint):
        return name
    shipped = shipped_model_path(name) if isinstance(name, str) else None
    if shipped is not None:
        if not (shipped / "model.safetensors").is_file():
            raise ConfigError(f"the shipped model '{name}' is missing from {shipped}: reinstall clipworks")
        return read_checkpoint(shipped)
    path = Path(name).expanduser()
    if not path.exists():
        raise ConfigError(f"'{name}' is neither a known model name nor an existing path (see `clipworks models`)")
    return read_checkpoint(path)


def _pretrained_tag(config: ModelConfig, pretrained: str | os.PathLike | PretrainedTag) -> PretrainedTag | None:
    """The registered tag `pretrained` names for this architecture, or None when it is a path."""
    if isinstance(pretrained, PretrainedTag):
        if pretrained.architecture != config.name:
            raise ConfigError(f"pretrained weights {pretrained.name} are for {pretrained.architecture}, "
                              f"not {config.name}")
        return pretrained
    if not isinstance(pretrained, str):
        return None
    entry = find_pretrained(config.name, pretrained)
    if entry is None and not Path(pretrained).expanduser().exists() and re.fullmatch(r"[\w-]+", pretrained):
        tags = ", ".join(e.tag for e in list_pretrained(config.name)) or "none registered"
        raise ConfigError(f"'{pretrained}' is neither a pretrained tag of {config.name} (known: {tags}; "
                          "see `clipworks models --pretrained`) nor an existing file")
    return entry


def create_model(
    name: str | os.PathLike | Checkpoint,
    pretrained: str | os.PathLike | PretrainedTag | None = None,
    device: str | torch.device | None = None,
    quick_gelu: bool | None = None,
    download: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[CLIP, Callable]:
    """Build a model by architecture name (random init, or weights from `pretrained`) or from a checkpoint path.

    `name` is an architecture (`clipworks.list_models()`), a shipped trained model ("default": the small
    model clipworks trains on its generated world), or a checkpoint file/directory in any supported format
    (or one already read: a `Checkpoint`).
    `pretrained` is a file or directory in any supported format, or a published tag of the architecture
    ("openai", "laion2b_s34b_b79k": `clipworks models --pretrained`), found in a cache (`cache_dir`, default
    ~/.cache/clipworks/pretrained) or downloaded when `download` (default: $CLIPWORKS_ALLOW_DOWNLOAD=1) allows.
    `quick_gelu` overrides the activation where the checkpoint cannot say (bare state dicts).
    Returns the model in eval mode and its preprocessing transform (PIL image -> tensor).
    """
    checkpoint: Checkpoint | None = None
    if isinstance(name, str) and is_model_name(name):
        config = get_model_config(name)
        tag = _pretrained_tag(config, pretrained) if pretrained is not None else None
        if tag is not None:
            checkpoint = read_checkpoint(fetch_pretrained(tag, cache_dir=cache_dir, download=download))
            config = tag.apply(config)  # the activation and preprocessing the weights were trained with
        elif pretrained is not None:
            checkpoint = read_checkpoint(pretrained)
            if checkpoint.config is not None:
                if quick_gelu is None and checkpoint.config.quick_gelu != config.quick_gelu:
                    act = "QuickGELU" if checkpoint.config.quick_gelu else "GELU"
                    raise CheckpointError(
                        f"{checkpoint.path}: was trained with {act} but architecture {config.name} uses the other; "
                        f"pass quick_gelu={checkpoint.config.quick_gelu}, or load the path without a model name"
                    )
                config = replace(config, preprocess=checkpoint.config.preprocess)
        if quick_gelu is not None:
            config = config.with_quick_gelu(quick_gelu)
    else:
        if pretrained is not None:
            raise ConfigError(f"'{name}' is a checkpoint path: pass it alone, or pass an architecture name with pretrained=")
        checkpoint = checkpoint_for_name(name)
        config = config_for(checkpoint, quick_gelu)

    model = CLIP(config)
    if checkpoint is not None:
        load_weights(model, checkpoint.state_dict, checkpoint.path, config.name or "inferred from the checkpoint")
    model = model.to(device or default_device()).eval()
    if model.device.type == "cuda" and isinstance(model.image_tower, ModifiedResNet):
        model.image_tower.to(memory_format=torch.channels_last)  # cuDNN's faster layout; the stem converts inputs
    return model, image_transform(config.preprocess, train=False)


def resize_image_input(model: CLIP, image_size: int) -> CLIP:
    """A copy of `model` built for `image_size`-pixel inputs (config and preprocessing), its image position
    embedding resized to the new grid as open_clip's resize_pos_embed does; for fine-tuning at another resolution."""
    from clipworks.model.layers import resize_position_embedding

    config = model.config
    config = replace(config, vision=replace(config.vision, image_size=image_size),
                     preprocess=replace(config.preprocess, image_size=image_size))
    resized = CLIP(config).to(model.device)
    state = model.state_dict()
    for key, target in resized.state_dict().items():
        if key.startswith("image_tower.") and key.endswith("positional_embedding") and state[key].shape != target.shape:
            grid = int(round((target.shape[0] - 1) ** 0.5))
            state[key] = resize_position_embedding(state[key], (grid, grid))
    resized.load_state_dict(state)
    return resized.eval()


def get_tokenizer(name_or_model: str | os.PathLike | CLIP) -> Tokenizer:
    """The tokenizer for a model, architecture name or checkpoint path, bound to its context length."""
    if isinstance(name_or_model, CLIP):
        config = name_or_model.config
    elif isinstance(name_or_model, str) and is_model_name(name_or_model):
        config = get_model_config(name_or_model)
    else:
        checkpoint = checkpoint_for_name(name_or_model)
        config = config_for(checkpoint, quick_gelu=True)  # the activation is irrelevant here
    return Tokenizer(context_length=config.text.context_length)
