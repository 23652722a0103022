"""Sketches as files: SVG (one cubic Bézier <path> per stroke) written and parsed back, and PNG renderings."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipworks.errors import InputFileError

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclass
class Strokes:
    """Control points [n, 4, 2] in pixels of a `width` x `height` canvas, drawn `stroke_width` wide."""

    control: np.ndarray
    width: int
    height: int
    stroke_width: float


def to_svg(strokes: Strokes) -> str:
    """An SVG document: a white background and one black cubic Bézier path per stroke."""
    lines = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{strokes.width}" height="{strokes.height}" '
             f'viewBox="0 0 {strokes.width} {strokes.height}">',
             f'  <rect width="{strokes.width}" height="{strokes.height}" fill="white"/>']
    for c in np.asarray(strokes.control, dtype=float):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = c
        lines.append(f'  <path d="M {x0:.3f} {y0:.3f} C {x1:.3f} {y1:.3f} {x2:.3f} {y2:.3f} {x3:.3f} {y3:.3f}" '
                     f'fill="none" stroke="black" stroke-width="{strokes.stroke_width:g}" stroke-linecap="round"/>')
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def _curves(d: str, where: str) -> list[np.ndarray]:
    """Cubic segments of a path's `d`: M/m then C/c (several curves may follow one another)."""
    tokens = re.findall(rf"[MmCcLlHhVvSsQqTtAaZz]|{_NUMBER}", d)
    curves, pos, command, k = [], np.zeros(2), None, 0
    while k < len(tokens):
        if tokens[k].isalpha():
            command = tokens[k]
            k += 1
            if command not in "MmCc":
                raise InputFileError(f"{where}: path command {command!r} is not supported (only M and C, as clipworks writes)")
            continue
        if command in ("M", "m"):
            xy = np.array([float(tokens[k]), float(tokens[k + 1])])
            pos = xy if command == "M" else pos + xy
            k += 2
        elif command in ("C", "c"):
            pts = np.array([float(v) for v in tokens[k:k + 6]]).reshape(3, 2)
            if pts.shape != (3, 2):
                raise InputFileError(f"{where}: a C command needs 6 numbers")
            if command == "c":
                pts = pts + pos
            curves.append(np.vstack([pos, pts]))
            pos = pts[-1]
            k += 6
        else:
            raise InputFileError(f"{where}: path data must start with M")
    return curves


def parse_svg(source: str | Path) -> Strokes:
    """Read back the strokes of an SVG of cubic Bézier paths (such as `to_svg` writes)."""
    path = Path(source)
    try:
        root = ET.fromstring(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ET.ParseError as exc:
        raise InputFileError(f"{path}: not an SVG file ({exc})") from None
    view = [float(v) for v in re.findall(_NUMBER, root.get("viewBox", ""))]
    width = int(round(view[2])) if len(view) == 4 else int(float(re.findall(_NUMBER, root.get("width", "0"))[0]))
    height = int(round(view[3])) if len(view) == 4 else int(float(re.findall(_NUMBER, root.get("height", "0"))[0]))
    curves, widths = [], []
    for k, element in enumerate(root.iter("{http://www.w3.org/2000/svg}path")):
        curves += _curves(element.get("d", ""), f"{path}: path {k}")
        widths.append(float(element.get("stroke-width", "1")))
    if not curves:
        raise InputFileError(f"{path}: no <path> strokes")
    return Strokes(np.stack(curves), width, height, float(np.median(widths)))


def render_strokes(strokes: Strokes, size: int | None = None) -> np.ndarray:
    """A grey rendering [H, W] in [0, 1] (scaled to `size` pixels on the long side, if given)."""
    from clipworks.sketch.raster import render

    scale = 1.0 if size is None else size / max(strokes.width, strokes.height)
    control = torch.as_tensor(strokes.control, dtype=torch.float32)[None] * scale
    hw = (round(strokes.height * scale), round(strokes.width * scale))
    with torch.no_grad():
        return render(control, hw, stroke_width=strokes.stroke_width * scale)[0, 0].numpy()


def save_png(strokes: Strokes, path: str | Path, size: int | None = None) -> Path:
    from PIL import Image

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((render_strokes(strokes, size) * 255).round().astype(np.uint8), mode="L").save(out)
    return out
