"""Drawing styles and backgrounds of the generated world: each style is a small renderer of one object.

A scene's look is data (`Scene.style`, `Background`), drawn deterministically from the scene's seed, so a
model can be trained on some styles and tested on others it never saw (`HELDOUT_STYLES`): the world's
version of the CLIP paper's distribution shift (sketches, renditions, new backgrounds).
"""

from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Object styles: how one shape is drawn. `has_colour` false means its captions never name a colour.
STYLES = ("flat", "outline", "hatching", "shaded", "textured", "watercolour", "neon", "silhouette",
          "pixel", "blur", "noisy", "sketch", "mosaic")
# Never in the train split: a hand-drawn pen sketch (a drawing-like shift) and a tiled mosaic (a rendition).
HELDOUT_STYLES = ("sketch", "mosaic")
TRAIN_STYLES = tuple(s for s in STYLES if s not in HELDOUT_STYLES)
COLOURLESS_STYLES = ("silhouette",)
# Named style sets for `WorldDataset(styles=...)`; "classic" is the first world's look (flat on muted backdrops).
STYLE_SETS: dict[str, tuple[str, ...]] = {
    "classic": ("flat",), "train": TRAIN_STYLES, "heldout": HELDOUT_STYLES, "all": STYLES,
}

# Caption templates naming a style ({a}: "a red star", {n}: "red star"); held-out styles' never reach training.
STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "flat": ("a flat drawing of {a}", "a clip art of {a}", "an icon of {a}"),
    "outline": ("an outline of {a}", "a line drawing of {a}"),
    "hatching": ("a pencil drawing of {a}", "a hatched drawing of {a}"),
    "shaded": ("a shaded drawing of {a}", "a 3d rendering of {a}"),
    "textured": ("a patterned {n}", "a textured {n}"),
    "watercolour": ("a watercolour of {a}", "a painting of {a}"),
    "neon": ("a neon sign of {a}", "a glowing {n}"),
    "silhouette": ("a silhouette of {a}", "a dark silhouette of {a}"),
    "pixel": ("pixel art of {a}", "a pixelated {n}"),
    "blur": ("a blurry photo of {a}", "an out of focus photo of {a}"),
    "noisy": ("a grainy photo of {a}", "a noisy photo of {a}"),
    "sketch": ("a sketch of {a}", "a doodle of {a}"),
    "mosaic": ("a mosaic of {a}", "a tiled mosaic of {a}"),
}

# Backgrounds: patterns over two colours spanning the whole brightness range, paper, and photo crops.
BACKGROUNDS = ("plain", "gradient", "noise", "stripes", "checker", "paper", "photo")
CLASSIC_BACKGROUNDS = ("plain", "gradient", "noise", "stripes", "checker")
BACKGROUND_WORDS = {"plain": "plain", "gradient": "gradient", "noise": "noisy", "stripes": "striped",
                    "checker": "checkered", "paper": "paper", "photo": "photo"}
# scikit-image's sample photos used as backdrops; the held-out ones are only for testing new backgrounds.
TRAIN_PHOTOS = ("brick", "grass", "gravel", "coffee", "rocket", "camera", "coins", "moon", "page", "text",
                "motorcycle_left", "hubble_deep_field", "clock_motion", "cell")
HELDOUT_PHOTOS = ("astronaut", "chelsea")
# Two colours closer than this (RGB distance) would hide an object drawn in one over the other.
MIN_CONTRAST = 90.0


@dataclass
class Background:
    """A backdrop: `kind` blends `colour` into `colour2` along a pattern, or crops the photo `photo`."""

    kind: str
    colour: tuple[int, int, int]
    colour2: tuple[int, int, int]
    angle: float  # degrees; direction of gradient and stripes
    period: float  # fraction of the image; stripe period, checker cell or noise cell
    photo: str | None = None  # scikit-image sample name, for kind "photo"
    crop: tuple[float, float, float] = (0.0, 0.0, 1.0)  # left, top (fractions) and side (fraction of the short side)


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


def sample_classic_background(rng) -> Background:
    """The first world's muted, mostly dark backdrops (saturation < 0.22, value 0.15-0.68)."""
    hue = rng.random()
    sat = rng.uniform(0.0, 0.22)
    val = rng.uniform(0.22, 0.6)
    val2 = min(max(val + rng.choice((-1, 1)) * rng.uniform(0.08, 0.18), 0.15), 0.68)
    hue2 = (hue + rng.uniform(-0.08, 0.08)) % 1.0
    sat2 = min(max(sat + rng.uniform(-0.05, 0.05), 0.0), 0.22)
    kind = rng.choice(CLASSIC_BACKGROUNDS)
    period = {"stripes": rng.uniform(0.08, 0.2), "checker": rng.uniform(0.08, 0.2), "noise": rng.uniform(0.12, 0.3)}
    return Background(kind, _rgb(hue, sat, val), _rgb(hue2, sat2, val2), rng.uniform(0, 360), period.get(kind, 1.0))


def sample_background(rng, inks: list[tuple[int, int, int]], photos: tuple[str, ...] = TRAIN_PHOTOS) -> Background:
    """A backdrop of any brightness (white paper to black), never too close in colour to any of `inks`."""
    kind = rng.choice(BACKGROUNDS)
    if kind == "photo":
        side = rng.uniform(0.25, 1.0)
        return Background("photo", (128, 128, 128), (128, 128, 128), 0.0, 1.0, rng.choice(photos),
                          (rng.uniform(0, 1 - side), rng.uniform(0, 1 - side), side))
    for _ in range(30):
        val = rng.choice((rng.uniform(0.85, 1.0), rng.uniform(0.02, 0.25), rng.uniform(0.02, 1.0)))
        sat = rng.uniform(0.0, 0.12) if kind == "paper" or rng.random() < 0.5 else rng.uniform(0.1, 0.5)
        hue = rng.random()
        spread = rng.uniform(0.05, 0.25) if kind != "plain" else 0.0
        val2 = min(max(val + rng.choice((-1, 1)) * spread, 0.0), 1.0)
        c1, c2 = _rgb(hue, sat, val), _rgb((hue + rng.uniform(-0.06, 0.06)) % 1.0, sat, val2)
        if all(math.dist(c, ink) >= MIN_CONTRAST for c in (c1, c2) for ink in inks):
            break
    period = {"stripes": rng.uniform(0.06, 0.25), "checker": rng.uniform(0.06, 0.25), "noise": rng.uniform(0.1, 0.35),
              "paper": rng.uniform(0.02, 0.06)}
    return Background(kind, c1, c2, rng.uniform(0, 360), period.get(kind, 1.0))


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A sample photo read straight from scikit-image's package folder (no fetching)."""
    from importlib import resources

    folder = resources.files("skimage") / "data"
    file = next((folder / f"{name}{ext}" for ext in (".png", ".jpg") if (folder / f"{name}{ext}").is_file()), None)
    if file is None:
        raise FileNotFoundError(f"scikit-image ships no sample photo named {name!r}")
    with Image.open(str(file)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def background_array(bg: Background, n: int, rng: np.random.Generator) -> np.ndarray:
    """The backdrop as float32 RGB [n, n, 3] in 0-255."""
    if bg.kind == "photo":
        photo = _photo(bg.photo)
        h, w = photo.shape[:2]
        side = max(8, int(bg.crop[2] * min(h, w)))
        left, top = int(bg.crop[0] * (w - side)), int(bg.crop[1] * (h - side))
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        return np.asarray(crop.resize((n, n), Image.Resampling.BILINEAR), dtype=np.float32)
    coords = (np.arange(n, dtype=np.float32) + 0.5) / n
    xx, yy = np.meshgrid(coords, coords)
    a = math.radians(bg.angle)
    along = xx * math.cos(a) + yy * math.sin(a)
    if bg.kind == "plain":
        t = np.zeros((n, n), np.float32)
    elif bg.kind == "gradient":
        t = (along - along.min()) / max(float(along.max() - along.min()), 1e-6)
    elif bg.kind == "stripes":
        t = 0.5 + 0.5 * np.tanh(3 * np.sin(2 * np.pi * along / bg.period))
    elif bg.kind == "checker":
        t = ((np.floor(xx / bg.period) + np.floor(yy / bg.period)) % 2).astype(np.float32)
    elif bg.kind in ("noise", "paper"):
        cells = max(2, round(1 / bg.period))
        coarse = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
        t = np.asarray(coarse.resize((n, n), Image.Resampling.BICUBIC)).clip(0, 1)
        if bg.kind == "paper":  # fine grain, mostly the first colour
            t = 0.3 * t
    else:
        raise ValueError(f"background kind must be one of {', '.join(BACKGROUNDS)}; got {bg.kind!r}")
    c1 = np.array(bg.colour, np.float32)
    c2 = np.array(bg.colour2, np.float32)
    return c1 + t[..., None] * (c2 - c1)


# ---------------------------------------------------------------- drawing one object


@dataclass
class Canvas:
    """Where objects are drawn: n x n output pixels, each object supersampled `factor` times."""

    n: int
    factor: int
    rng: np.random.Generator

    @property
    def big(self) -> int:
        return self.n * self.factor

    def down(self, mask: np.ndarray) -> np.ndarray:
        """A supersampled [big, big] array box-filtered to [n, n]."""
        f = self.factor
        return mask.reshape(self.n, f, self.n, f).mean(axis=(1, 3))

    def polygon_mask(self, points: np.ndarray) -> np.ndarray:
        """Coverage of a filled polygon (points in big-pixel units) at the big resolution, as float32 0/1."""
        image = Image.new("L", (self.big, self.big), 0)
        ImageDraw.Draw(image).polygon([tuple(p) for p in points], fill=255)
        return np.asarray(image, dtype=np.float32) / 255.0

    def line_mask(self, paths: list[np.ndarray], width: float, closed: bool = True) -> np.ndarray:
        image = Image.new("L", (self.big, self.big), 0)
        draw = ImageDraw.Draw(image)
        w = max(1, round(width))
        for path in paths:
            pts = [tuple(p) for p in path] + ([tuple(path[0])] if closed else [])
            draw.line(pts, fill=255, width=w, joint="curve")
            for p in (pts[0], pts[-1]):  # round caps
                draw.ellipse((p[0] - w / 2, p[1] - w / 2, p[0] + w / 2, p[1] + w / 2), fill=255)
        return np.asarray(image, dtype=np.float32) / 255.0


def _resample(points: np.ndarray, count: int) -> np.ndarray:
    """`count` points evenly spaced along the closed outline `points`."""
    closed = np.vstack([points, points[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0, cum[-1], count, endpoint=False)
    return np.stack([np.interp(t, cum, closed[:, 0]), np.interp(t, cum, closed[:, 1])], axis=1)


@lru_cache(maxsize=8)
def _grid(big: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a supersampled canvas, in output-pixel units (rows, columns)."""
    ys, xs = (np.mgrid[0:big, 0:big].astype(np.float32) + 0.5) / factor
    return ys, xs


def _blur(mask: np.ndarray, radius: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(mask.astype(np.float32), radius, mode="constant")


def _mix(colour: np.ndarray, other, amount: float) -> np.ndarray:
    return colour * (1 - amount) + np.asarray(other, np.float32) * amount


def draw_object(style: str, points: np.ndarray, colour: np.ndarray, radius: float, canvas: Canvas
                ) -> tuple[np.ndarray, np.ndarray]:
    """One object: (rgb [n, n, 3] or [3], alpha [n, n]) for `points` (its outline in big pixels) in `style`.

    `radius` is the object's circumradius in big pixels; `colour` its ink (RGB 0-255)."""
    rng, n, f = canvas.rng, canvas.n, canvas.factor
    if style in ("flat", "pixel", "blur", "noisy", "silhouette"):  # whole-image effects come later
        return colour, canvas.down(canvas.polygon_mask(points))
    if style == "outline":
        width = f * n * rng.uniform(0.012, 0.045)
        return colour, canvas.down(canvas.line_mask([points], width))
    if style == "neon":
        line = canvas.down(canvas.line_mask([points], f * n * rng.uniform(0.015, 0.03)))
        glow = _blur(line, n * rng.uniform(0.02, 0.05))
        glow = glow / max(float(glow.max()), 1e-6)
        return colour, np.clip(line + 0.7 * glow, 0, 1)
    if style == "sketch":
        paths = []
        for _ in range(rng.integers(1, 4)):  # one to three passes of a wobbly, overshooting pen
            outline = _resample(points, 80)
            k = np.arange(len(outline)) / len(outline)
            normal = outline - outline.mean(axis=0)
            normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-6
            wobble = sum(rng.uniform(-1, 1) * np.sin(2 * np.pi * (rng.integers(1, 5) * k + rng.random())) for _ in range(3))
            path = outline + normal * (wobble[:, None] * radius * 0.06) + rng.normal(0, radius * 0.012, outline.shape)
            path += rng.normal(0, radius * 0.05, 2)  # each pass a little off the last
            start = rng.integers(len(path))
            path = np.roll(path, -start, axis=0)
            extra = int(len(path) * rng.uniform(0.03, 0.15))  # overshoot past the start
            paths.append(np.vstack([path, path[:extra]]))
        width = f * n * rng.uniform(0.01, 0.03)
        return colour, canvas.down(canvas.line_mask(paths, width, closed=False))
    mask_big = canvas.polygon_mask(points)
    ys, xs = _grid(canvas.big, f)
    if style == "hatching":
        angle = rng.uniform(0, math.pi)
        spacing = rng.uniform(2.0, 4.0)
        along = xs * math.cos(angle) + ys * math.sin(angle)
        lines = (np.abs((along / spacing) % 1.0 - 0.5) < 0.2).astype(np.float32)
        inside = canvas.down(mask_big * lines)
        edge = canvas.down(canvas.line_mask([points], f * n * 0.012))
        return colour, np.clip(inside * rng.uniform(0.7, 1.0) + edge, 0, 1)
    if style == "shaded":
        mask = canvas.down(mask_big)
        light = rng.uniform(0, 2 * math.pi)
        yy, xx = (np.mgrid[0:n, 0:n] + 0.5)
        cy, cx = np.average(yy, weights=mask + 1e-9), np.average(xx, weights=mask + 1e-9)
        proj = ((xx - cx) * math.cos(light) + (yy - cy) * math.sin(light)) / (radius / f + 1e-6)
        shade = np.clip(1.0 + 0.35 * proj, 0.55, 1.35)[..., None]
        rgb = np.clip(colour[None, None, :] * shade, 0, 255)
        return rgb, mask
    if style == "textured":
        mask = canvas.down(mask_big)
        yy, xx = (np.mgrid[0:n, 0:n] + 0.5)
        period = rng.uniform(3.0, 6.0)
        kind = rng.integers(3)
        if kind == 0:  # stripes
            a = rng.uniform(0, math.pi)
            t = (np.sin(2 * np.pi * (xx * math.cos(a) + yy * math.sin(a)) / period) > 0).astype(np.float32)
        elif kind == 1:  # dots
            t = (np.hypot((xx % period) - period / 2, (yy % period) - period / 2) < period * 0.3).astype(np.float32)
        else:  # noise
            t = rng.random((n, n)).astype(np.float32)
        other = _mix(colour, (255, 255, 255) if colour.mean() < 128 else (0, 0, 0), 0.45)
        rgb = colour[None, None, :] + t[..., None] * (other - colour)[None, None, :]
        return rgb, mask
    if style == "watercolour":  # a ragged, pooled wash: pale inside, darker where the paint dried at the edge
        mask = canvas.down(mask_big)
        cells = max(2, n // 5)
        coarse = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
        noise = np.asarray(coarse.resize((n, n), Image.Resampling.BICUBIC), np.float32) - 0.5
        wet = np.clip((_blur(mask, n * 0.02) + 0.3 * noise - 0.5) * 4 + 0.5, 0, 1)
        edge = np.clip(wet - _blur(wet, n * 0.02), 0, 1) * 2.5
        return colour, np.clip(rng.uniform(0.55, 0.75) * wet + edge, 0, 1)
    if style == "mosaic":
        cell = rng.uniform(2.5, 4.5)
        centres = (np.floor(xs / cell) + 0.5) * cell, (np.floor(ys / cell) + 0.5) * cell
        cx = np.clip((centres[0] * f).astype(int), 0, canvas.big - 1)
        cy = np.clip((centres[1] * f).astype(int), 0, canvas.big - 1)
        inside = mask_big[cy, cx]
        grout = ((xs % cell) < 0.6) | ((ys % cell) < 0.6)
        tiles = canvas.down(inside * (~grout))
        shade = 1 + rng.uniform(-0.12, 0.12, size=(int(n / cell) + 2, int(n / cell) + 2))
        idx = ((np.arange(n) + 0.5) / cell).astype(int)
        rgb = np.clip(colour[None, None, :] * shade[np.ix_(idx, idx)][..., None], 0, 255)
        return rgb, tiles
    raise ValueError(f"style must be one of {', '.join(STYLES)}; got {style!r}")


def finish(style: str, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whole-image effects of a style (blur, sensor noise and JPEG) on float RGB pixels; others unchanged."""
    if style == "blur":
        n = pixels.shape[0]
        image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
        return np.asarray(image.filter(ImageFilter.GaussianBlur(n * rng.uniform(0.015, 0.035))), np.float32)
    if style == "noisy":
        pixels = pixels + rng.normal(0.0, rng.uniform(8, 22), size=pixels.shape).astype(np.float32)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(15, 45)))
        return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), np.float32)
    return pixels


def ink(style: str, colour: tuple[int, int, int], rng) -> tuple[int, int, int]:
    """The colour an object of `colour` is drawn in: its own, or for silhouettes a near-black or dark grey."""
    if style in COLOURLESS_STYLES:
        grey = rng.randint(0, 60)
        return (grey, grey, grey)
    return colour
