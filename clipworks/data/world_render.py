"""Rendering a scene of the generated world: shape outlines, warped, rotated and placed, drawn in the scene's
style (`clipworks.data.styles`) over its backdrop."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from clipworks.data import styles as style_lib
from clipworks.data.world_scenes import COLOURS, Scene, SceneObject

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
