"""A generated world of coloured shapes: explicit scenes, their renderings and captions, as a data set.

No pretrained weights exist here, so clipworks trains its own small CLIP on this world. Everything a
later feature needs (class labels, VQA answers, video frames) derives from `Scene.facts()`, never
from the pixels or the captions. Some (colour, shape) pairs are held out of training so zero-shot
accuracy and retrieval can be measured on combinations the model never saw.

The pieces: `world_scenes` (vocabulary and scene sampling), `world_render` (drawing a scene) and
`world_captions` (true captions and hard negatives); this module makes data sets of them and re-exports
their names, so `clipworks.data.world` stays the one import.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch.utils.data

from clipworks.data import styles as style_lib
from clipworks.data.styles import BACKGROUND_WORDS, BACKGROUNDS, STYLE_SETS, Background  # noqa: F401 (re-exported)
from clipworks.data.types import Sample
from clipworks.data.world_captions import (  # noqa: F401 (re-exported; _a, _name and _RELATION_PHRASES too)
    _RELATION_PHRASES,
    _a,
    _name,
    attribute_swap,
    captions,
    grayscale_captions,
    hard_negative,
    order_captions,
    relation_flip,
    relation_swap,
    scene_captions,
)
from clipworks.data.world_render import SHAPE_OUTLINES, render  # noqa: F401 (re-exported)
from clipworks.data.world_scenes import (  # noqa: F401 (re-exported; _sample_background too)
    ALL_PAIRS,
    BIGGER_RATIO,
    COLOURS,
    HELDOUT_PAIRS,
    MAX_ROTATION,
    POSITIONS,
    RADIUS_JITTER,
    RELATION_MARGIN,
    RELATIONS,
    SHAPES,
    SIZES,
    SPLITS,
    TRAIN_PAIRS,
    Scene,
    SceneObject,
    _check_split,
    _sample_background,
    _style_set,
    sample_scene,
)

# ---------------------------------------------------------------- datasets

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def item_seed(seed: int, split: str, index: int) -> int:
    """A 64-bit seed from (seed, split, index), the same in every process (no salted str hash)."""
    h = 0
    for value in (seed, SPLITS.index(split), index):
        h = _splitmix64(h ^ (value & _MASK64))
    return h


class WorldDataset(torch.utils.data.Dataset):
    """`size` generated scenes; item i depends only on (seed, split, i)."""

    def __init__(
        self, size: int, seed: int = 0, split: str = "train", image_size: int = 64, n_objects: tuple[int, int] = (1, 3),
        grayscale: float = 0.0, hard_negatives: bool = False, styles: str | Sequence[str] = "classic",
        photos: Sequence[str] = style_lib.TRAIN_PHOTOS, order_focus: float = 0.0,
    ) -> None:
        """`grayscale`: the fraction of items rendered in black and white with colourless captions, which
        grounds shape words apart from colour (like CLIP training's random-grayscale augmentation).
        `hard_negatives`: each sample also carries one false caption per caption (`hard_negative`).
        `styles`: "classic" (the first world's look), a style set ("train", "heldout", "all") or style names;
        `photos`: the scikit-image photos that photo backdrops are cropped from.
        `order_focus` (styled world): the fraction of coloured multi-object items captioned only by word-order-
        sensitive captions (`order_captions`), whose negatives then also flip relations (`relation_flip`)."""
        _check_split(split)
        if not 1 <= n_objects[0] <= n_objects[1]:
            raise ValueError(f"n_objects must be (low, high) with 1 <= low <= high; got {n_objects!r}")
        if not 0.0 <= grayscale <= 1.0:
            raise ValueError(f"grayscale must be a fraction in [0, 1]; got {grayscale!r}")
        self.size, self.seed, self.split, self.image_size = size, seed, split, image_size
        self.n_objects = tuple(n_objects)
        self.grayscale = grayscale
        self.hard_negatives = hard_negatives
        if isinstance(styles, str) and "+" in styles:  # "sketch+mosaic", as a --data spec can write it
            styles = tuple(styles.split("+"))
        _style_set(styles)
        self.styles = styles if isinstance(styles, str) else tuple(styles)
        self.photos = tuple(photos.split("+")) if isinstance(photos, str) else tuple(photos)
        if not 0.0 <= order_focus <= 1.0:
            raise ValueError(f"order_focus must be a fraction in [0, 1]; got {order_focus!r}")
        self.order_focus = order_focus

    def __len__(self) -> int:
        return self.size

    def _rng(self, i: int) -> random.Random:
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} is outside the world dataset of {self.size} items")
        return random.Random(item_seed(self.seed, self.split, i))

    def scene(self, i: int) -> Scene:
        return sample_scene(self._rng(i), self.split, self.n_objects, self.styles, self.photos)

    def __getitem__(self, i: int) -> Sample:
        rng = self._rng(i)
        scene = sample_scene(rng, self.split, self.n_objects, self.styles, self.photos)
        facts = scene.facts()
        key = f"world/{self.split}/{self.seed}/{i}"
        grey = bool(self.grayscale) and rng.random() < self.grayscale
        if grey:
            image = render(scene, self.image_size, greys=_grey_levels(scene, rng))
            facts["grayscale"] = True
        else:
            image = render(scene, self.image_size)
        if scene.style is None:  # the first world's captions, drawn exactly as before
            sample = Sample(image, grayscale_captions(scene, rng) if grey else captions(scene, rng), key, facts)
        else:
            sample = Sample(image, scene_captions(scene, rng, grey=grey), key, facts)
        if self.order_focus and scene.style is not None and not grey and len(scene.objects) > 1 \
                and rng.random() < self.order_focus:
            sample.captions = order_captions(scene, rng) or sample.captions
        if self.hard_negatives:
            flips = bool(self.order_focus)
            sample.negatives = [hard_negative(c, scene, rng, grayscale=grey, flips=flips) for c in sample.captions]
        return sample


def _grey_levels(scene: Scene, rng: random.Random) -> list[int]:
    """Random grey levels for the objects, independent of their colours and far from the backdrop's brightness."""
    if scene.style is None:  # the first world's backdrops are dark to mid grey
        return [rng.randint(150, 255) for _ in scene.objects]
    bg = scene.background
    level = 128 if bg.kind == "photo" else (sum(bg.colour) + sum(bg.colour2)) / 6
    low, high = (0, max(0, int(level) - 80)) if level > 128 else (min(255, int(level) + 80), 255)
    return [rng.randint(low, high) for _ in scene.objects]


def single_object_dataset(size: int, seed: int = 0, split: str = "heldout", image_size: int = 64,
                          styles: str | Sequence[str] = "classic", photos: Sequence[str] = style_lib.TRAIN_PHOTOS
                          ) -> WorldDataset:
    """One object per image, for zero-shot classification: labels are facts["objects"][0]["shape"|"colour"]."""
    return WorldDataset(size, seed=seed, split=split, image_size=image_size, n_objects=(1, 1), styles=styles,
                        photos=photos)


def write_world(
    out_dir: str | Path, size: int, seed: int = 0, split: str = "train", image_size: int = 64,
    styles: str | Sequence[str] = "classic",
) -> Path:
    """Write images/NNNNNN.png, a same-name .txt (one caption a line) and facts.jsonl; returns out_dir."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(size - 1)))
    dataset = WorldDataset(size, seed=seed, split=split, image_size=image_size, styles=styles)
    with open(out_dir / "facts.jsonl", "w", encoding="utf-8") as facts_file:
        for i in tqdm(range(size), desc=f"world {split}", unit="img"):
            sample = dataset[i]
            stem = f"{i:0{width}d}"
            sample.image.save(images / f"{stem}.png")
            (images / f"{stem}.txt").write_text("\n".join(sample.captions) + "\n", encoding="utf-8")
            record = {"image": f"images/{stem}.png", "key": sample.key, "captions": sample.captions, "facts": sample.facts}
            facts_file.write(json.dumps(record) + "\n")
    return out_dir


def save_preview(path: str | Path, seed: int = 0, split: str = "train", rows: int = 6, cols: int = 6,
                 styles: str | Sequence[str] = "classic") -> Path:
    """A grid of rendered scenes, each with its style and first caption underneath."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dataset = WorldDataset(rows * cols, seed=seed, split=split, styles=styles)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.6 * rows))
    for i, ax in enumerate(np.ravel(axes)):
        sample = dataset[i]
        ax.imshow(sample.image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        label = sample.captions[0] if styles == "classic" else f"[{sample.facts['style']}] {sample.captions[0]}"
        ax.set_xlabel(textwrap.fill(label, 30), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Preview or write the generated shape world.")
    parser.add_argument("--preview", metavar="PNG", help="save a 6x6 grid of scenes with their first caption")
    parser.add_argument("--write", metavar="DIR", help="write a folder dataset (images, captions, facts.jsonl)")
    parser.add_argument("--size", type=int, default=1000, help="number of scenes for --write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--styles", default="classic",
                        help="classic, train, heldout, all, or style names joined by '+' (e.g. sketch+mosaic)")
    args = parser.parse_args(argv)
    if not (args.preview or args.write):
        parser.error("give --preview PNG or --write DIR")
    if args.preview:
        print(save_preview(args.preview, seed=args.seed, split=args.split, styles=args.styles))
    if args.write:
        print(write_world(args.write, args.size, seed=args.seed, split=args.split, image_size=args.image_size,
                          styles=args.styles))


if __name__ == "__main__":
    main()
