"""The training recipe of a VQA model, importable without torch (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VQATrainConfig:
    """A VQA training run. `encoder_lr` is the image tower's learning rate when it is trained (None: `lr`
    for a scratch encoder, `lr / 10` for a CLIP one being fine-tuned)."""

    out: str
    encoder: str = "clip"
    freeze_encoder: bool = True
    clip_model: str = "default"
    image_size: int = 128
    width: int = 128
    layers: int = 2
    heads: int = 4
    train_size: int = 20000
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr: float | None = None
    warmup: int = 100
    seed: int = 0
    checkpoint_every: int = 500
