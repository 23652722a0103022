"""The generated world's scenes: its vocabulary (shapes, colours, sizes, relations, held-out colour-shape pairs)
and `sample_scene`, which draws objects, a drawing style and a backdrop. Everything later derives from a
scene's facts (`Scene.facts()`), never from its pixels or captions."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipworks.data import styles as style_lib
from clipworks.data.styles import STYLE_SETS, Background

# ---------------------------------------------------------------- vocabulary

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross", "diamond", "hexagon")

# Saturated, well-separated hues plus white; backgrounds stay below 0.25 saturation and 0.7 value.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 90, 240),
    "yellow": (250, 230, 40),
    "purple": (150, 40, 190),
    "orange": (255, 130, 0),
    "pink": (255, 110, 190),
    "white": (245, 245, 245),
}

# Circumradius as a fraction of the image side; each object jitters its radius by up to ±6 %.
SIZES: dict[str, float] = {"small": 0.12, "medium": 0.17, "large": 0.23}
RADIUS_JITTER = 0.06
# Size classes are >= 1.2x apart after jitter and one class varies < 1.13x, so "bigger than" holds
# exactly when two objects' size classes differ.
BIGGER_RATIO = 1.15

POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
RELATIONS = ("left of", "right of", "above", "below", "bigger than", "smaller than")
# Centres this far apart (fraction of the image) along an axis make left/right or above/below true.
RELATION_MARGIN = 0.1

SPLITS = ("train", "heldout", "all")
# Colour i with shape (i + 3) % 8: every colour and every shape is held out exactly once.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (colour, SHAPES[(i + 3) % len(SHAPES)]) for i, colour in enumerate(COLOURS)
)
TRAIN_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (colour, shape) for colour in COLOURS for shape in SHAPES if (colour, shape) not in HELDOUT_PAIRS
)
ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((colour, shape) for colour in COLOURS for shape in SHAPES)

MAX_ROTATION = 25.0  # degrees; more would turn a square into a diamond


# ---------------------------------------------------------------- scenes


@dataclass
class SceneObject:
    """One shape; x, y are its centre in [0, 1] image coordinates (y down), radius its circumradius."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    radius: float
    rotation: float  # degrees, counter-clockwise
    # (x scale, shear, x perspective, y perspective) applied to the outline before rotation; identity in "classic"
    warp: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)

    @property
    def position(self) -> str:
        """Name of the 3x3 grid cell holding the centre."""
        row = ("top", "", "bottom")[min(int(self.y * 3), 2)]
        col = ("left", "", "right")[min(int(self.x * 3), 2)]
        return f"{row} {col}".strip() or "center"


@dataclass
class Scene:
    """Objects (the first is the main one), a background, the seed of the rendering noise and a drawing style
    (`clipworks.data.styles`); style None is the first world's look, rendered exactly as it always was."""

    objects: list[SceneObject]
    background: Background
    seed: int
    style: str | None = None
    # Rendered at this multiple of the output size, then resized (several resolutions); 1.0 in "classic"
    render_scale: float = 1.0
    inks: list[tuple[int, int, int]] | None = None  # per object: the drawn colour where it is not the named one

    @property
    def has_colour(self) -> bool:
        """False for styles whose images say nothing of colour (silhouettes): their captions name none."""
        return self.style not in style_lib.COLOURLESS_STYLES

    def relations(self) -> list[tuple[int, str, int]]:
        """(subject index, relation, object index) for every relation that holds, both directions."""
        found = []
        for i, a in enumerate(self.objects):
            for j, b in enumerate(self.objects):
                if i == j:
                    continue
                if b.x - a.x >= RELATION_MARGIN:
                    found.append((i, "left of", j))
                if a.x - b.x >= RELATION_MARGIN:
                    found.append((i, "right of", j))
                if b.y - a.y >= RELATION_MARGIN:
                    found.append((i, "above", j))
                if a.y - b.y >= RELATION_MARGIN:
                    found.append((i, "below", j))
                if a.radius >= BIGGER_RATIO * b.radius:
                    found.append((i, "bigger than", j))
                if b.radius >= BIGGER_RATIO * a.radius:
                    found.append((i, "smaller than", j))
        return found

    def facts(self) -> dict:
        """JSON-able ground truth: objects, the relations that hold, and the background kind."""
        return {
            "objects": [
                {
                    "shape": o.shape,
                    "colour": o.colour,
                    "size": o.size,
                    "position": o.position,
                    "x": round(o.x, 4),
                    "y": round(o.y, 4),
                    "radius": round(o.radius, 4),
                    "rotation": round(o.rotation, 2),
                }
                for o in self.objects
            ],
            "relations": [{"subject": i, "relation": r, "object": j} for i, r, j in self.relations()],
            "background": self.background.kind,
            "style": self.style or "classic",
        }


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")


def _as_random(rng: random.Random | np.random.Generator) -> random.Random:
    if isinstance(rng, np.random.Generator):
        return random.Random(int(rng.integers(0, 2**63)))
    return rng


def _sample_background(rng: random.Random) -> Background:
    """The first world's muted backdrop (kept under this name for the video world)."""
    return style_lib.sample_classic_background(rng)


def _style_set(styles: str | Sequence[str]) -> tuple[str, ...]:
    chosen = STYLE_SETS.get(styles) if isinstance(styles, str) else tuple(styles)
    if not chosen or any(s not in style_lib.STYLES for s in chosen):
        raise ValueError(f"styles must be one of {', '.join(STYLE_SETS)} or names from {', '.join(style_lib.STYLES)}; "
                         f"got {styles!r}")
    return chosen


def _place(rng: random.Random, placed: list[SceneObject], size: str, tries: int = 60, apart: float = 0.95,
           radius: float | None = None) -> tuple[float, float, float] | None:
    radius = radius or SIZES[size] * rng.uniform(1 - RADIUS_JITTER, 1 + RADIUS_JITTER)
    lo, hi = radius + 0.02, 1 - radius - 0.02  # keep the whole shape inside the frame
    for _ in range(tries):
        x, y = rng.uniform(lo, hi), rng.uniform(lo, hi)
        if all(math.hypot(x - o.x, y - o.y) >= apart * (radius + o.radius) for o in placed):
            return x, y, radius
    return None


def sample_scene(
    rng: random.Random | np.random.Generator, split: str = "train", n_objects: tuple[int, int] = (1, 3),
    styles: str | Sequence[str] = "classic", photos: Sequence[str] = style_lib.TRAIN_PHOTOS,
) -> Scene:
    """A random scene; in "train" no object is a held-out pair, in "heldout" the main object is one.

    `styles` "classic" is the first world (flat shapes on muted backdrops); any other set ("train", "heldout",
    "all" or a list of style names) draws a style, a backdrop of any brightness (or a crop of one of `photos`),
    frame-filling single objects, warps, slight overlaps and a render resolution."""
    _check_split(split)
    rng = _as_random(rng)
    classic = styles == "classic"
    style_names = _style_set(styles)
    n = rng.randint(n_objects[0], n_objects[1])
    pairs_for_main = {"train": TRAIN_PAIRS, "heldout": HELDOUT_PAIRS, "all": ALL_PAIRS}[split]
    pairs_for_rest = ALL_PAIRS if split == "all" else TRAIN_PAIRS

    objects: list[SceneObject] = []
    for k in range(n):
        colour, shape = rng.choice(pairs_for_main if k == 0 else pairs_for_rest)
        size = rng.choice(tuple(SIZES))
        radius = None
        if not classic and n == 1 and rng.random() < 0.3:  # frame-filling
            size, radius = "large", rng.uniform(0.26, 0.44)
        apart = 0.95 if classic else 0.8  # the new world lets objects overlap a little (partial occlusion)
        where = _place(rng, objects, size, apart=apart, radius=radius)
        if where is None and size != "small":  # crowded: a small one may still fit
            size = "small"
            where = _place(rng, objects, size, apart=apart)
        if where is None:
            continue  # never for the main object: an empty scene always has room
        x, y, radius = where
        rotation = 0.0 if shape == "circle" else rng.uniform(-MAX_ROTATION, MAX_ROTATION)
        warp = (1.0, 0.0, 0.0, 0.0) if classic else (
            math.exp(rng.uniform(-0.15, 0.15)), rng.uniform(-0.15, 0.15), rng.uniform(-0.12, 0.12), rng.uniform(-0.12, 0.12))
        objects.append(SceneObject(shape, colour, size, x, y, radius, rotation, warp))
    if classic:
        return Scene(objects, _sample_background(rng), rng.getrandbits(32))
    style = rng.choice(style_names)
    inks = [style_lib.ink(style, COLOURS[o.colour], rng) for o in objects]
    background = style_lib.sample_background(rng, inks, tuple(photos))
    scale = rng.choice((0.75, 1.0, 1.0, 1.5))
    return Scene(objects, background, rng.getrandbits(32), style, scale, inks)
