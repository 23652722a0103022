"""One entry point: `create_model(name_or_path, pretrained=...)` -> (model, preprocess)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from clipworks.errors import CheckpointError, ConfigError
from clipworks.model.checkpoint.loading import Checkpoint, config_for, load_weights, read_checkpoint
from clipworks.model.clip import CLIP
from clipworks.model.config import get_model_config, is_model_name
from clipworks.model.modified_resnet import ModifiedResNet
from clipworks.model.tokenizer import Tokenizer
from clipworks.model.transforms import image_transform


# Trained weights that ship inside the package, by name.
# "default-v1" is the first default model (classic world only): the shipped VQA head reads its features, and the
# sketching experiment uses it as a judge that never saw a drawing style.
SHIPPED = {"default": "pretrained/default", "default-v1": "pretrained/default-v1"}


def shipped_model_path(name: str) -> Path | None:
    """The packaged directory of a shipped model ('default', 'default-v1'), or None when the name is not one."""
    if name not in SHIPPED:
        return None
    from importlib import resources

    return Path(str(resources.files("clipworks.model").joinpath(SHIPPED[name])))


def default_device() -> torch.device:
    """CUDA when present, else CPU: where `create_model`, training and every command put a model unless told."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _checkpoint_for_name(name: str | os.PathLike) -> Checkpoint:
    shipped = shipped_model_path(name) if isinstance(name, str) else None
    if shipped is not None:
        if not (shipped / "model.safetensors").is_file():
            raise ConfigError(f"the shipped model '{name}' is missing from {shipped}: reinstall clipworks")
        return read_checkpoint(shipped)
    path = Path(name).expanduser()
    if not path.exists():
        raise ConfigError(f"'{name}' is neither a known model name nor an existing path (see `clipworks models`)")
    return read_checkpoint(path)


def create_model(
    name: str | os.PathLike,
    pretrained: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    quick_gelu: bool | None = None,
) -> tuple[CLIP, Callable]:
    """Build a model by architecture name (random init, or weights from `pretrained`) or from a checkpoint path.

    `name` is an architecture (`clipworks.list_models()`), a shipped trained model ("default": the small
    model clipworks trains on its generated world), or a checkpoint file/directory in any supported format.
    `quick_gelu` overrides the activation where the checkpoint cannot say (bare state dicts).
    Returns the model in eval mode and its preprocessing transform (PIL image -> tensor).
    """
    checkpoint: Checkpoint | None = None
    if isinstance(name, str) and is_model_name(name):
        config = get_model_config(name)
        if pretrained is not None:
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
        checkpoint = _checkpoint_for_name(name)
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
        checkpoint = _checkpoint_for_name(name_or_model)
        config = config_for(checkpoint, quick_gelu=True)  # the activation is irrelevant here
    return Tokenizer(context_length=config.text.context_length)
