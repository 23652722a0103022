"""A registry of small evaluation data sets: classification sets (images, labels, class names, prompt templates)
and retrieval sets (images and their captions).

Names: the generated world's tasks (`world-shape`, `world-colour`, `world-size`, `world-count`,
`world-relation`), scikit-learn's `digits`, a folder with one sub-folder per class (`PATH` or `folder:PATH`),
and for retrieval `world-captions` or any captioned collection `open_pairs` reads (folder, CSV/JSONL, shards).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipworks.errors import InputFileError

SPLITS = ("train", "test", "eval")  # "eval": the test split where one exists, else every image


@dataclass
class ClassificationSet:
    """Images with integer labels over `classnames`; `templates` names the default prompt set.

    Where each image has its own candidate texts (`prompts[i]`, the true one at `labels[i]`), zero-shot scores
    those instead of class names x templates (the world's relation task)."""

    name: str
    classnames: list[str]
    templates: str
    images: list[Image.Image]
    labels: np.ndarray
    prompts: list[list[str]] | None = None
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class RetrievalSet:
    """Images and captions; `text_to_image[t]` is the image caption t describes (several captions per image)."""

    name: str
    images: list[Image.Image]
    captions: list[str]
    text_to_image: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- the world


def _world_samples(n: int, seed: int, split: str, n_objects: tuple[int, int]) -> list:
    from clipworks.data.world import WorldDataset

    data = WorldDataset(n, seed=seed, split=split, n_objects=n_objects)
    return [data[i] for i in range(n)]


def _world_split(split: str) -> str:
    """Evaluation uses held-out colour-shape pairs; probes train on scenes made of seen pairs only."""
    return "train" if split == "train" else "heldout"


def _world_attribute(attribute: str, names: Sequence[str], templates: str) -> Callable[..., ClassificationSet]:
    def load(split: str = "eval", n: int = 1000, seed: int = 1) -> ClassificationSet:
        samples = _world_samples(n, seed + (100 if split == "train" else 0), _world_split(split), (1, 1))
        labels = np.array([names.index(s.facts["objects"][0][attribute]) for s in samples])
        return ClassificationSet(f"world-{attribute}", list(names), templates, [s.image for s in samples], labels)

    return load


COUNT_NAMES = ("one shape", "two shapes", "three shapes")


def _world_count(split: str = "eval", n: int = 1000, seed: int = 1) -> ClassificationSet:
    samples = _world_samples(n, seed + (100 if split == "train" else 0), _world_split(split), (1, 3))
    labels = np.array([len(s.facts["objects"]) - 1 for s in samples])
    return ClassificationSet("world-count", list(COUNT_NAMES), "world_count", [s.image for s in samples], labels)


SPATIAL = ("left of", "right of", "above", "below")
_SPATIAL_PHRASE = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


def _world_relation(split: str = "eval", n: int = 1000, seed: int = 1) -> ClassificationSet:
    """Two-object scenes whose objects differ along one axis only; each image's candidates name both objects
    and one of the four spatial relations ('a red star to the left of a blue circle')."""
    from clipworks.data.world import WorldDataset

    data = WorldDataset(20 * n, seed=seed + (100 if split == "train" else 0), split=_world_split(split), n_objects=(2, 2))
    images, labels, prompts = [], [], []
    for i in range(len(data)):
        if len(images) == n:
            break
        scene = data.scene(i)
        if len(scene.objects) != 2:
            continue
        held = [r for s, r, o in scene.relations() if s == 0 and o == 1 and r in SPATIAL]
        if len(held) != 1:
            continue
        a, b = scene.objects
        name_a, name_b = f"{a.colour} {a.shape}", f"{b.colour} {b.shape}"
        images.append(data[i].image)
        labels.append(SPATIAL.index(held[0]))
        prompts.append([f"a {name_a} {_SPATIAL_PHRASE[r]} a {name_b}." for r in SPATIAL])
    return ClassificationSet("world-relation", list(SPATIAL), "plain", images, np.array(labels), prompts=prompts)


# ---------------------------------------------------------------- digits and folders


def _digits(split: str = "eval", n: int | None = None, seed: int = 0) -> ClassificationSet:
    from clipworks.data.digits import CLASS_NAMES, DigitsDataset

    data = DigitsDataset(split="train" if split == "train" else "test")
    count = len(data) if n is None else min(n, len(data))
    return ClassificationSet("digits", list(CLASS_NAMES), "digits", [data.image(i) for i in range(count)],
                             np.asarray(data.labels[:count]))


TEST_EVERY = 5  # without train/ and test/ sub-folders, every 5th image of each class is the test split


def _class_dirs(root: Path) -> list[Path]:
    from clipworks.data.folders import is_hidden

    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))
    if not dirs:
        raise InputFileError(f"{root}: no class sub-folders (expected one folder of images per class)")
    return dirs


def image_folder(path: str | os.PathLike, split: str = "eval", n: int | None = None, seed: int = 0) -> ClassificationSet:
    """A folder with one sub-folder of images per class (or train/ and test/ folders that each have them).
    Unreadable images are skipped and counted; a class folder without images is an error naming it."""
    from clipworks.data.folders import list_files
    from clipworks.data.images import IMAGE_EXTENSIONS
    from clipworks.data.skips import SkipReport
    from clipworks.model.transforms import load_image

    root = Path(os.path.expanduser(os.fspath(path)))
    if not root.is_dir():
        raise InputFileError(f"{root}: no such folder")
    explicit = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / ("train" if split == "train" else "test") if explicit else root
    dirs = _class_dirs(base)
    report = SkipReport()
    images, labels = [], []
    for label, folder in enumerate(dirs):
        files = sorted(list_files(folder, IMAGE_EXTENSIONS))
        if not files:
            raise InputFileError(f"{folder}: class folder has no images ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)})")
        if not explicit and split != "eval":
            files = [f for k, f in enumerate(files) if (k % TEST_EVERY == TEST_EVERY - 1) == (split == "test")]
        for f in files:
            try:
                images.append(load_image(f))
            except InputFileError as exc:
                from clipworks.data.types import Skipped

                report.add(Skipped(str(f), str(exc)))
                continue
            labels.append(label)
            report.add_kept()
    if not images:
        raise InputFileError(f"{base}: no readable images")
    classnames = [d.name.replace("_", " ") for d in dirs]
    if n is not None:
        images, labels = images[:n], labels[:n]
    return ClassificationSet(f"folder:{root}", classnames, "ensemble", images, np.array(labels),
                             skipped=report.by_reason())


CLASSIFICATION: dict[str, Callable[..., ClassificationSet]] = {}


def _register() -> None:
    from clipworks.data.world import COLOURS, SHAPES, SIZES

    CLASSIFICATION.update({
        "world-shape": _world_attribute("shape", SHAPES, "world_shape"),
        "world-colour": _world_attribute("colour", tuple(COLOURS), "world_colour"),
        "world-size": _world_attribute("size", tuple(SIZES), "world_size"),
        "world-count": _world_count,
        "world-relation": _world_relation,
        "digits": _digits,
    })


def classification_names() -> list[str]:
    """Registered classification data sets (a folder path is accepted besides these)."""
    if not CLASSIFICATION:
        _register()
    return sorted(CLASSIFICATION)


def load_classification(name: str, split: str = "eval", n: int | None = None, seed: int = 1) -> ClassificationSet:
    """A classification set by registered name, or a class-per-folder directory (`PATH` or `folder:PATH`)."""
    if split not in SPLITS:
        raise InputFileError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    names = classification_names()
    if name in CLASSIFICATION:
        kwargs: dict[str, Any] = {"split": split, "seed": seed}
        if n is not None:
            kwargs["n"] = n
        return CLASSIFICATION[name](**kwargs)
    path = name.removeprefix("folder:")
    if name.startswith("folder:") or os.path.isdir(os.path.expanduser(path)):
        return image_folder(path, split=split, n=n)
    raise InputFileError(f"unknown classification data {name!r}: choose one of {', '.join(names)}, "
                         "or give a folder with one sub-folder per class")


# ---------------------------------------------------------------- retrieval


def _world_captions(n: int = 1000, seed: int = 2) -> RetrievalSet:
    """Held-out scenes, each with all of its captions."""
    samples = _world_samples(n, seed, "heldout", (1, 3))
    captions = [c for s in samples for c in s.captions]
    owner = np.array([i for i, s in enumerate(samples) for _ in s.captions])
    return RetrievalSet("world-captions", [s.image for s in samples], captions, owner)


RETRIEVAL = ("world-captions",)


def load_retrieval(name: str, n: int | None = None, seed: int = 2) -> RetrievalSet:
    """A retrieval set: 'world-captions', or a captioned folder / CSV / JSONL / WebDataset shards.
    Unreadable items of a user's collection are skipped and counted in `skipped`."""
    if name == "world-captions":
        return _world_captions(**({"n": n} if n is not None else {}), seed=seed)
    from clipworks.data import open_pairs
    from clipworks.data.skips import SkipReport
    from clipworks.data.types import Sample

    try:
        data = open_pairs(name)
    except InputFileError as exc:
        raise InputFileError(f"{exc} (retrieval data: {', '.join(RETRIEVAL)} or a captioned collection)") from None
    report = SkipReport()
    images, captions, owner = [], [], []
    items = data if not hasattr(data, "__len__") else (data[i] for i in range(len(data)))
    for item in items:
        report.add(item)
        if not isinstance(item, Sample):
            continue
        for c in item.captions:
            captions.append(c)
            owner.append(len(images))
        images.append(item.image)
        if n is not None and len(images) == n:
            break
    if not images:
        raise InputFileError(f"{name}: no readable image-caption pairs")
    return RetrievalSet(name, images, captions, np.array(owner), skipped=report.by_reason())
