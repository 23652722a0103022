"""clipworks: train, load, evaluate and apply CLIP models.

The layers, lowest first (tests/test_layering.py holds the package to them):
- shared modules: errors, io (atomic writes), cache (the feature cache), weights (small models' directories);
- the core: model, data, training, evaluation, search; its packages import each other and the shared modules;
- applications: captioning, vqa, video, sketch; each imports the core, never another application;
- entry points: cli, demo, experiments; they may import anything, and nothing below imports them.

The public API is imported lazily so that `import clipworks` stays fast (torch loads on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "clipworks.model.factory",
    "get_tokenizer": "clipworks.model.factory",
    "list_models": "clipworks.model.config",
    "get_model_config": "clipworks.model.config",
    "ModelConfig": "clipworks.model.config",
    "tokenize": "clipworks.model.tokenizer",
    "Tokenizer": "clipworks.model.tokenizer",
    "CLIP": "clipworks.model.clip",
    "read_checkpoint": "clipworks.model.checkpoint.loading",
    "image_transform": "clipworks.model.transforms",
    "load_image": "clipworks.model.transforms",
}

__all__ = [
    "CLIP", "ModelConfig", "Tokenizer", "__version__", "create_model", "get_model_config", "get_tokenizer",
    "image_transform", "list_models", "load_image", "read_checkpoint", "tokenize",
]

if TYPE_CHECKING:
    from clipworks.model.checkpoint.loading import read_checkpoint
    from clipworks.model.clip import CLIP
    from clipworks.model.config import ModelConfig, get_model_config, list_models
    from clipworks.model.factory import create_model, get_tokenizer
    from clipworks.model.tokenizer import Tokenizer, tokenize
    from clipworks.model.transforms import image_transform, load_image


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clipworks' has no attribute '{name}'")
