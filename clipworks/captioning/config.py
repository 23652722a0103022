"""The training recipe of a captioner, importable without torch (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_LM = dict(n_layer=3, n_head=4, n_embd=128, n_positions=64)  # GPT2Config fields of a new LM


@dataclass
class CaptionTrainConfig:
    """A captioner training run; the defaults are the shipped default captioner's recipe (make_default.py)."""

    out: str
    clip_model: str = "default"
    data: str = "world"
    data_options: dict[str, Any] = field(default_factory=lambda: {"size": 40000, "styles": "train"})
    mapper: str = "mlp"
    prefix_length: int = 10
    freeze_lm: bool = False
    lm: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LM))
    lm_path: str | None = None
    compact_vocab: bool = True  # an LM over the GPT-2 tokens the training captions use (see model.Vocabulary)
    # Text-only pre-training of the LM on the training captions before the captioner is trained (our stand-in
    # for a pretrained GPT-2, which cannot be downloaded here); cached and shared by runs with the same LM.
    lm_pretrain_steps: int = 1000
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    max_tokens: int = 24
    seed: int = 0
    checkpoint_every: int = 500
