"""A generated world of coloured shapes: explicit scenes, their renderings and captions.

No pretrained weights exist here, so clipworks trains its own small CLIP on this world. Everything a
later feature needs (class labels, VQA answers, video frames) derives from `Scene.facts()`, never
from the pixels or the captions. Some (colour, shape) pairs are held out of training so zero-shot
accuracy and retrieval can be measured on combinations the model never saw.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.utils.data
from PIL import Image, ImageDraw

from clipworks.data import styles as style_lib
from clipworks.data.styles import BACKGROUND_WORDS, BACKGROUNDS, STYLE_SETS, Background  # noqa: F401 (re-exported)
from clipworks.data.types import Sample

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


# ---------------------------------------------------------------- rendering


def _regular(n: int, start_deg: float, radii: tuple[float, ...] = (1.0,)) -> np.ndarray:
    angles = np.radians(start_deg + np.arange(n * len(radii)) * 360.0 / (n * len(radii)))
    r = np.resize(np.array(radii), len(angles))
    return np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))  # y down
    pts = np.stack([x, y], axis=1)
    return pts - (pts.max(0) + pts.min(0)) / 2


def _cross(half_width: float = 0.32) -> np.ndarray:
    w = half_width
    return np.array([(w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1)], float)


def _normalised(points: np.ndarray) -> np.ndarray:
    return points / np.linalg.norm(points, axis=1).max()


# Outlines at unit circumradius, image axes (y down); upright shapes point to -y.
SHAPE_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular(64, 0),
    "square": _normalised(np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], float)),
    "triangle": _regular(3, -90),
    "star": _regular(5, -90, (1.0, 0.45)),
    "heart": _normalised(_heart()),
    "cross": _normalised(_cross()),
    "diamond": np.array([(0, -1), (0.62, 0), (0, 1), (-0.62, 0)], float),  # taller than wide, never a square
    "hexagon": _regular(6, 0),
}


def _outline(obj: SceneObject, big: int) -> np.ndarray:
    """The object's outline in pixels of a `big`-pixel canvas: warped, rotated, scaled and placed."""
    pts = SHAPE_OUTLINES[obj.shape]
    if obj.warp != (1.0, 0.0, 0.0, 0.0):
        sx, shear, px, py = obj.warp
        pts = np.stack([pts[:, 0] * sx + shear * pts[:, 1], pts[:, 1] / sx], axis=1)
        pts = pts / (1.0 + px * pts[:, :1] + py * pts[:, 1:2])
        pts = pts / np.linalg.norm(pts, axis=1).max()  # keep the circumradius, so sizes stay comparable
    a = math.radians(-obj.rotation)  # counter-clockwise on screen, where y points down
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return pts @ rot.T * (obj.radius * big) + (obj.x * big, obj.y * big)


def render(scene: Scene, image_size: int = 64, greys: Sequence[int] | None = None,
           opacity: Sequence[float] | None = None) -> Image.Image:
    """The scene as an RGB image in its style (`clipworks.data.styles`) over its background.

    `greys` (one level per object) renders it in grayscale with those object brightnesses instead of the
    objects' colours, so brightness says nothing about which colour, and hence which shape, it was.
    `opacity` (one in [0, 1] per object) fades objects in and out, as video frames need."""
    rng = np.random.default_rng(scene.seed)
    style = scene.style or "flat"
    n = image_size
    if style == "pixel":  # drawn small, then blown up without smoothing
        n = max(8, round(image_size / (1.5 + 3.0 * rng.random())))
    elif scene.render_scale != 1.0:
        n = max(8, round(image_size * scene.render_scale))
    pixels = style_lib.background_array(scene.background, n, rng)
    if greys is not None:
        pixels = np.repeat(pixels.mean(axis=2, keepdims=True), 3, axis=2)
    inks = scene.inks or [COLOURS[o.colour] for o in scene.objects]
    if scene.style is None:
        pixels = _draw_flat(scene, pixels, n, rng, greys, opacity, inks)
    else:
        canvas = style_lib.Canvas(n, 4 if n <= 64 else 2, rng)
        for k, obj in enumerate(scene.objects):
            jitter = rng.integers(-10, 11, size=3)
            base = np.array((greys[k],) * 3, np.float32) if greys is not None else np.array(inks[k], np.float32)
            colour = np.clip(base + jitter * (greys is None), 0, 255).astype(np.float32)
            rgb, alpha = style_lib.draw_object(style, _outline(obj, canvas.big), colour, obj.radius * canvas.big, canvas)
            if opacity is not None:
                alpha = alpha * min(max(opacity[k], 0.0), 1.0)
            alpha = alpha[..., None]
            pixels = pixels * (1 - alpha) + np.asarray(rgb, np.float32) * alpha
    pixels = style_lib.finish(style, pixels, rng)
    pixels += rng.normal(0.0, 3.0, size=pixels.shape).astype(np.float32)
    image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    if n != image_size:
        resample = Image.Resampling.NEAREST if style == "pixel" else Image.Resampling.BICUBIC
        image = image.resize((image_size, image_size), resample)
    return image


def _draw_flat(scene: Scene, pixels: np.ndarray, n: int, rng: np.random.Generator, greys, opacity, inks) -> np.ndarray:
    """Filled shapes drawn at 4x and downsampled (the first world's renderer, unchanged for style None)."""
    big = 4 * n
    layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for k, obj in enumerate(scene.objects):
        jitter = rng.integers(-10, 11, size=3)
        base = np.array((greys[k],) * 3) if greys is not None else np.array(inks[k])
        fill = tuple(int(c) for c in np.clip(base + jitter * (greys is None), 0, 255))
        alpha = 255 if opacity is None else round(255 * min(max(opacity[k], 0.0), 1.0))
        if alpha:  # an invisible object is not drawn, but takes its jitter so the others' colours stay put
            draw.polygon([tuple(p) for p in _outline(obj, big)], fill=(*fill, alpha))
    shapes = np.asarray(layer.resize((n, n), Image.Resampling.LANCZOS), dtype=np.float32)
    alpha = shapes[..., 3:] / 255.0
    return pixels * (1 - alpha) + shapes[..., :3] * alpha


# ---------------------------------------------------------------- captions


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _name(obj: SceneObject, size: bool = False) -> str:
    """'a red star', or with size 'a small red star'; colour always directly precedes shape."""
    words = f"{'large' if obj.size == 'large' else obj.size} {obj.colour} {obj.shape}" if size else f"{obj.colour} {obj.shape}"
    return _a(words)


_WHERE = {
    "top left": "in the top left", "top": "at the top", "top right": "in the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "in the bottom left", "bottom": "at the bottom", "bottom right": "in the bottom right",
}
_RELATION_PHRASES = {
    "left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below",
    "bigger than": "that is bigger than", "smaller than": "that is smaller than",
}
_COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _shape_only(obj: SceneObject, size: bool = False) -> str:
    """'a star' or 'a small star': the shape without its colour."""
    return _a(f"{'large' if obj.size == 'large' else obj.size} {obj.shape}" if size else obj.shape)


def _colour_only(obj: SceneObject) -> str:
    return f"{_a(obj.colour)} shape"


def _full_pool(scene: Scene, where: str, bg: str) -> list[str]:
    main = scene.objects[0]
    if len(scene.objects) == 1:
        return [
            f"a photo of {_name(main)}", f"a picture of {_name(main)}", f"a drawing of {_name(main)}",
            f"{_name(main)} shape", _name(main, size=True), f"{_name(main)} {where}",
            f"{_name(main, size=True)} {where}", f"{_name(main)} on {_a(bg)} background",
            f"{_name(main, size=True)} on {_a(bg)} background", f"an image of {_name(main, size=True)}",
        ]
    others = scene.objects[1:]
    everything = _listing([_name(o) for o in scene.objects])
    pool = [
        everything, f"{_COUNT_WORDS[len(scene.objects)]} shapes: {everything}", f"a photo of {everything}",
        f"{everything} on {_a(bg)} background", f"{_name(main, size=True)} {where}",
        f"{_name(main)} with {_listing([_name(o) for o in others])}",
    ]
    if len(scene.objects) == 2:
        other = scene.objects[1]
        pool.append(f"{_name(main, size=True)} {where} and {_name(other, size=True)} {_WHERE[other.position]}")
    for subject, phrase, obj, spatial in _main_relations(scene):
        pool.append(f"{_name(subject)} {phrase} {_name(obj)}")
        if spatial:
            pool.append(f"there is {_name(subject)} {phrase} {_name(obj)}")
            pool.append(f"{_name(subject, size=True)} {phrase} {_name(obj, size=True)}")
    return pool


def _main_relations(scene: Scene) -> list[tuple[SceneObject, str, SceneObject, bool]]:
    """Relations between the main object and the others, in either direction, between distinguishable objects."""
    out = []
    for i, relation, j in scene.relations():
        if 0 not in (i, j):
            continue
        subject, obj = scene.objects[i], scene.objects[j]
        if (subject.colour, subject.shape) == (obj.colour, obj.shape):
            continue  # "a red star above a red star" says nothing about which is which
        out.append((subject, _RELATION_PHRASES[relation], obj, relation not in ("bigger than", "smaller than")))
    return out


def _shape_pool(scene: Scene, where: str) -> list[str]:
    """Captions that name shapes but not colours: matching them needs shape, not just colour."""
    main = scene.objects[0]
    pool = [_shape_only(main), f"a photo of {_shape_only(main)}", f"{_shape_only(main, size=True)} {where}"]
    if len(scene.objects) > 1:
        shapes = _listing([_shape_only(o) for o in scene.objects])
        pool += [shapes, f"{_COUNT_WORDS[len(scene.objects)]} shapes: {shapes}"]
        for subject, phrase, obj, spatial in _main_relations(scene):
            if subject.shape != obj.shape and spatial:
                pool.append(f"there is {_shape_only(subject)} {phrase} {_shape_only(obj)}")
    return pool


def _colour_pool(scene: Scene) -> list[str]:
    """Captions that name colours but not shapes."""
    main = scene.objects[0]
    pool = [_colour_only(main), f"something {main.colour}"]
    if len(scene.objects) > 1:
        pool.append(_listing([_colour_only(o) for o in scene.objects]))
    return pool


def grayscale_captions(scene: Scene, rng: random.Random | np.random.Generator) -> list[str]:
    """Captions for a grayscale rendering: shapes, sizes, positions and relations, never a colour."""
    rng = _as_random(rng)
    main = scene.objects[0]
    pool = list(dict.fromkeys(_shape_pool(scene, _WHERE[main.position]) + [
        f"a grayscale picture of {_shape_only(main)}", f"a grey {main.shape}", f"{_shape_only(main, size=True)}",
    ]))
    rng.shuffle(pool)
    return pool[: rng.randint(3, 5)]


def scene_captions(scene: Scene, rng: random.Random | np.random.Generator, grey: bool = False) -> list[str]:
    """Captions for any scene: `captions` (or colourless ones for grey or colourless renderings), and in the
    styled world, half the time, one that names the style ("a sketch of a red star"), as real alt-text does."""
    rng = _as_random(rng)
    colourless = grey or not scene.has_colour
    chosen = grayscale_captions(scene, rng) if colourless else captions(scene, rng)
    if scene.style is not None and rng.random() < 0.5:
        main = scene.objects[0]
        words = main.shape if colourless else f"{main.colour} {main.shape}"
        styled = rng.choice(style_lib.STYLE_WORDS[scene.style]).format(a=_a(words), n=words)
        chosen[rng.randrange(len(chosen))] = styled
    return chosen


def captions(scene: Scene, rng: random.Random | np.random.Generator) -> list[str]:
    """4-6 distinct captions, all mentioning the main object: mostly by colour and shape, and (so that shape
    has to be learned, not inferred from colour alone) usually one naming shapes only and sometimes one
    naming colours only. Single-object scenes always include "a {colour} {shape}"."""
    rng = _as_random(rng)
    main = scene.objects[0]
    where = _WHERE[main.position]
    bg = BACKGROUND_WORDS[scene.background.kind]
    required = [_name(main)] if len(scene.objects) == 1 else []
    full = [c for c in dict.fromkeys(_full_pool(scene, where, bg)) if c not in required]
    shape_only = list(dict.fromkeys(_shape_pool(scene, where)))
    colour_only = list(dict.fromkeys(_colour_pool(scene)))
    for pool in (full, shape_only, colour_only):
        rng.shuffle(pool)
    total = rng.randint(4, 6)
    n_shape = 2 if rng.random() < 0.5 else 1
    n_colour = 1 if rng.random() < 0.4 else 0
    partial = shape_only[:n_shape] + colour_only[:n_colour]
    chosen = required + partial + full[: max(0, total - len(required) - len(partial))]
    rng.shuffle(chosen)
    return chosen


def _swap_word(caption: str, old: str, new: str, phrase: str) -> str | None:
    """The caption with `old` replaced by `new` inside the first `phrase` (which contains `old`), else in the
    first whole-word `old`; None when neither occurs. The phrase pins the main object's own mention."""
    for pattern in (phrase, old):
        found = re.search(rf"\b{re.escape(pattern)}\b", caption)
        if found is not None:
            start = found.start() + pattern.index(old)
            return caption[:start] + new + caption[start + len(old):]
    return None


def _word_swap(caption: str, scene: Scene, rng: random.Random, grayscale: bool = False) -> str:
    """A false caption one word away from `caption`: the main object's shape (else its colour) swapped for one
    that no object in the scene has. For a coloured scene the new colour-shape pair is a training pair, so a
    negative never names a held-out combination and never teaches "colour c is not shape s" for one.
    Returns "" when the caption names neither."""
    main = scene.objects[0]
    phrase = f"{main.colour} {main.shape}"
    shapes_present = {o.shape for o in scene.objects}
    shapes = [s for s in SHAPES if s not in shapes_present and (grayscale or (main.colour, s) in TRAIN_PAIRS)]
    if shapes and (swapped := _swap_word(caption, main.shape, rng.choice(shapes), phrase)) is not None:
        return swapped
    if grayscale:
        return ""
    colours_present = {o.colour for o in scene.objects}
    colours = [c for c in COLOURS if c not in colours_present and (c, main.shape) in TRAIN_PAIRS]
    if colours and (swapped := _swap_word(caption, main.colour, rng.choice(colours), phrase)) is not None:
        return swapped
    return ""


# NegCLIP-style negatives (for the ARO benchmark's failure modes): the same words in another order.
_NAME = re.compile(r"\b(an?) (?:(small|medium|large) )?(?:(" + "|".join(COLOURS) + r") )?(" + "|".join(SHAPES) + r")\b")
_PHRASE_RELATION = {phrase: relation for relation, phrase in _RELATION_PHRASES.items()}


def _names(caption: str) -> list[re.Match]:
    return list(_NAME.finditer(caption))


def _matches(obj: SceneObject, name: re.Match) -> bool:
    _, size, colour, shape = name.groups()
    return obj.shape == shape and colour in (None, obj.colour) and size in (None, obj.size)


def _true_of(scene: Scene, first: re.Match, relation: str, second: re.Match) -> bool:
    """Whether some object described by `first` stands in `relation` to one described by `second`."""
    return any(_matches(scene.objects[i], first) and _matches(scene.objects[j], second)
               for i, r, j in scene.relations() if r == relation)


def relation_swap(caption: str, scene: Scene) -> str:
    """"A to the left of B" -> "B to the left of A" when that is false of the scene; else ""."""
    for phrase in sorted(_PHRASE_RELATION, key=len, reverse=True):
        at = caption.find(f" {phrase} ")
        if at < 0:
            continue
        before = [m for m in _names(caption) if m.end() <= at]
        after = [m for m in _names(caption) if m.start() >= at + len(phrase) + 2]
        if not before or not after:
            return ""
        a, b = before[-1], after[0]
        swapped = caption[:a.start()] + b.group(0) + caption[a.end():b.start()] + a.group(0) + caption[b.end():]
        names = _names(swapped)
        new_a = next(m for m in names if m.start() == a.start())
        new_b = names[names.index(new_a) + 1]
        return "" if _true_of(scene, new_a, _PHRASE_RELATION[phrase], new_b) else swapped
    return ""


def attribute_swap(caption: str, scene: Scene, rng: random.Random) -> str:
    """Two named objects of different colours and shapes trade colours ("a red circle and a blue square" ->
    "a blue circle and a red square"), when some object so named is absent from the scene; else ""."""
    names = [m for m in _names(caption) if m.group(3)]
    pairs = [(a, b) for k, a in enumerate(names) for b in names[k + 1:]
             if a.group(3) != b.group(3) and a.group(4) != b.group(4)]
    if not pairs:
        return ""
    a, b = rng.choice(pairs)
    swapped = (caption[:a.start(3)] + b.group(3) + caption[a.end(3):b.start(3)] + a.group(3) + caption[b.end(3):])
    swapped = re.sub(r"\ban ([^aeiou])", r"a \1", re.sub(r"\ba ([aeiou])", r"an \1", swapped))
    named = _names(swapped)
    if all(any(_matches(o, m) for o in scene.objects) for m in named):
        return ""  # every object it names is there: not a negative
    if any(m.group(3) and (m.group(3), m.group(4)) not in TRAIN_PAIRS for m in named):
        return ""  # a negative never names a held-out pair, so it never teaches "c is not s" for one
    return swapped


_OPPOSITE = {"to the left of": "to the right of", "above": "below", "that is bigger than": "that is smaller than"}
_OPPOSITE.update({b: a for a, b in _OPPOSITE.items()})


def relation_flip(caption: str, scene: Scene) -> str:
    """"A to the left of B" -> "A to the right of B" (likewise above/below, bigger/smaller) when that is false."""
    for phrase in sorted(_OPPOSITE, key=len, reverse=True):
        at = caption.find(f" {phrase} ")
        if at < 0:
            continue
        flipped = caption[:at] + f" {_OPPOSITE[phrase]} " + caption[at + len(phrase) + 2:]
        before = [m for m in _names(flipped) if m.end() <= at]
        after = [m for m in _names(flipped) if m.start() >= at + len(_OPPOSITE[phrase]) + 2]
        if not before or not after:
            return ""
        return "" if _true_of(scene, before[-1], _PHRASE_RELATION[_OPPOSITE[phrase]], after[0]) else flipped
    return ""


def order_captions(scene: Scene, rng: random.Random) -> list[str]:
    """Up to 4 captions of a styled multi-object scene whose truth depends on word order: relations between
    named objects and listings of them ("a red circle to the left of a blue square", "a red circle and a blue
    square"); empty when the scene has none."""
    main = scene.objects[0]
    pool = [c for c in dict.fromkeys(_full_pool(scene, _WHERE[main.position], BACKGROUND_WORDS[scene.background.kind]))
            if len(_names(c)) >= 2 and all(m.group(3) for m in _names(c))]
    rng.shuffle(pool)
    return pool[:4]


def hard_negative(caption: str, scene: Scene, rng: random.Random, grayscale: bool = False,
                  flips: bool = False) -> str:
    """A false caption close to `caption`. In the first world: one word swapped (`_word_swap`). In the styled
    world, NegCLIP's swaps too: a relation's arguments (`relation_swap`) or two objects' colours
    (`attribute_swap`), preferred when possible so word order and binding must be read; with `flips`, also
    the relation's direction (`relation_flip`). "" when none applies."""
    if scene.style is None:
        return _word_swap(caption, scene, rng, grayscale)
    options = [relation_swap(caption, scene)] + ([relation_flip(caption, scene)] if flips else [])
    if not grayscale:
        options.append(attribute_swap(caption, scene, rng))
    options = [o for o in options if o]
    if options and rng.random() < 0.8:
        return rng.choice(options)
    return _word_swap(caption, scene, rng, grayscale) or (options[0] if options else "")


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
