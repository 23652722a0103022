"""The training recipe of a VQA model, importable without torch (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VQATrainConfig:
    """A VQA training run. `encoder_lr` is the image tower's learning rate when it is trained (None: `lr`
    for a scratch encoder, `lr / 10` for a CLIP one being fine-tuned). `styles`: the world the questions are
    about ("classic", the first world's look, or the styled world's "train" styles). `token_adapter`,
    `cell_coordinates`, `grid_blocks`, `glimpses` and `classifier_hidden` are `VQAConfig`'s. The defaults are
    the shipped recipe: the first design (no token adapter, no cell coordinates, one glimpse, a linear
    classifier), which scored higher on styled questions than the relation design (README, "Visual question
    answering"), with the grid taken before the image tower's last block at 64 px (for the default ResNet:
    stage 3, 4 x 4 cells, which place objects better than stage 4 at 128 px and cost a quarter of the
    rendering)."""

    out: str
    encoder: str = "clip"
    freeze_encoder: bool = True
    clip_model: str = "default"
    image_size: int = 64
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
    styles: str = "train"
    token_adapter: bool = False
    cell_coordinates: bool = False
    grid_blocks: int | None = -1
    glimpses: int = 1
    classifier_hidden: int = 0
