"""What every image-text data source yields: a Sample, or a Skipped record for an unusable item."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass
class Sample:
    """One image with one or more captions (training picks one per epoch)."""

    image: Image.Image
    captions: list[str]
    key: str  # a stable identifier: a path, a tar member key, or a generated index
    facts: dict[str, Any] = field(default_factory=dict)  # structured ground truth where the source has it
    # Optional hard negatives, aligned with `captions`: negatives[k] is a false caption close to captions[k]
    # (one word changed), or "" where there is none. Training adds them to the text side (NegCLIP-style).
    negatives: list[str] = field(default_factory=list)


@dataclass
class Skipped:
    """An item that could not be used; counted and reported, never fatal."""

    key: str
    reason: str
