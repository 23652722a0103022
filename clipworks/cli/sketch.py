"""`clipworks sketch IMAGE --strokes 16 --out sketch.svg`: CLIPasso, an object drawn in a few Bézier strokes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipworks.cli.common import positive_float, positive_int
from clipworks.errors import InputFileError


def register(sub: argparse._SubParsersAction) -> None:
    from clipworks.sketch.clipasso import SketchConfig as D

    p = sub.add_parser("sketch", help="draw an image's object in a few Bézier strokes (CLIPasso)",
                       description="Writes the sketch as SVG and PNG, and a strip of intermediate steps.")
    p.add_argument("image", help="the image to sketch")
    p.add_argument("--out", default="sketch.svg", help="the SVG to write (a .png and a _steps.png go beside it)")
    p.add_argument("--strokes", type=int, default=D.strokes, help="number of strokes: the abstraction level")
    p.add_argument("--steps", type=int, default=D.steps, help="at most this many optimisation steps per seed")
    p.add_argument("--seeds", type=int, default=D.seeds, help="independent runs; the lowest-loss sketch is kept")
    p.add_argument("--init", default=D.init, choices=("saliency", "random"), help="where strokes start")
    p.add_argument("--mask", default=D.mask, help="'auto' (object vs border colour), 'none', or a mask image (white = object)")
    p.add_argument("--stroke-width", type=positive_float, default=D.stroke_width, help=f"in pixels of the {D.canvas}-px canvas")
    p.add_argument("--semantic-weight", type=float, default=D.semantic_weight)
    p.add_argument("--model", default=D.clip_model, help="the CLIP model whose losses guide the strokes")
    p.add_argument("--png-size", type=positive_int, default=512, help="side of the PNG rendering")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from clipworks.model.transforms import load_image
    from clipworks.sketch.clipasso import SketchConfig, save_strip, sketch_image
    from clipworks.sketch.svg import save_png, to_svg

    image = load_image(Path(args.image))  # a bad image fails here, before the model loads
    if args.mask not in ("auto", "none") and not Path(args.mask).is_file():
        raise InputFileError(f"{args.mask}: no such mask file")
    out = Path(args.out)
    if out.suffix.lower() != ".svg":
        raise InputFileError(f"{out}: --out must end in .svg")
    source = Path(args.image).resolve()
    for written in (out.with_suffix(".png"), out.with_name(out.stem + "_steps.png")):
        if written.resolve() == source:
            raise InputFileError(f"{written}: --out {out} would overwrite the input image; choose another name")
    cfg = SketchConfig(strokes=args.strokes, steps=args.steps, seeds=args.seeds, init=args.init, mask=args.mask,
                       stroke_width=args.stroke_width, semantic_weight=args.semantic_weight, clip_model=args.model)
    result = sketch_image(image, cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_svg(result.strokes), encoding="utf-8")
    png = save_png(result.strokes, out.with_suffix(".png"), size=args.png_size)
    strip = save_strip(result, out.with_name(out.stem + "_steps.png"), f"{args.strokes} strokes")
    print(json.dumps({"svg": str(out), "png": str(png), "steps": str(strip), "loss": round(result.loss, 5),
                      "seed": result.seed, "seed_losses": [round(v, 5) for v in result.seed_losses],
                      "steps_run": result.steps_run, "seconds": round(result.seconds, 1)}, indent=2))
    return 0
