"""Real handwritten digits (scikit-learn's 1,797 8x8 scans), as dark ink on light paper with captions."""

from __future__ import annotations

import functools

import numpy as np
import torch.utils.data
from PIL import Image

from clipworks.data.types import Sample

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPLITS = ("train", "test")
TEST_EVERY = 5  # items 4, 9, 14, ... of load_digits() are the test split (20 %)

PAPER, INK = 245, 20  # grey levels of a blank and a fully inked pixel


@functools.cache
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)


def digit_captions(label: int) -> list[str]:
    """Every caption of a digit: its name in words and as a numeral."""
    name = CLASS_NAMES[label]
    return [
        f"a handwritten {name}",
        f"the digit {label}",
        f"a handwritten number {name}",
        f"a photo of the number {name}",
        f"a handwritten digit {label}",
    ]


class DigitsDataset(torch.utils.data.Dataset):
    """The train (80 %) or test (every 5th item) part of scikit-learn's digits, upsampled to `image_size`."""

    def __init__(self, split: str = "train", image_size: int = 64) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        images, labels = _load()
        in_test = np.arange(len(labels)) % TEST_EVERY == TEST_EVERY - 1
        self.indices = np.flatnonzero(in_test if split == "test" else ~in_test)
        self.images = images[self.indices]
        self.labels = labels[self.indices]
        self.split, self.image_size = split, image_size

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, i: int) -> Image.Image:
        """Item i as an RGB image: values 0..16 become ink on paper, then bicubic upsampling."""
        grey = PAPER - self.images[i] / 16.0 * (PAPER - INK)
        small = Image.fromarray(grey.round().astype(np.uint8), mode="L")
        return small.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC).convert("RGB")

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} is outside the digits {self.split} split of {len(self)} items")
        label = int(self.labels[i])
        return Sample(
            image=self.image(i),
            captions=digit_captions(label),
            key=f"digits/{int(self.indices[i])}",
            facts={"label": label, "name": CLASS_NAMES[label]},
        )
