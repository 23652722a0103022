"""The CLIPasso experiment behind the README: generated-world objects and scikit-image's sample photos sketched
at 4, 8, 16 and 32 strokes, from saliency and from random starts; figures, and per sketch its zero-shot class
under the default CLIP (against the photo's own), how much of the object's outline its ink covers, and its
loss and time.

    python -m clipworks.sketch.experiment --out reports/sketch
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

STROKES = (4, 8, 16, 32)
PHOTOS = {"astronaut": "an astronaut", "chelsea": "a cat", "coffee": "a cup of coffee", "rocket": "a rocket"}
PROMPTS = ("a {}", "a drawing of a {}", "a sketch of a {}")


def world_objects(size: int = 128) -> list[tuple[str, Image.Image, str]]:
    """One medium or large, non-white object of each shape (seen colour-shape pairs): (name, image, class)."""
    from clipworks.data.world import SHAPES, render, single_object_dataset

    data = single_object_dataset(400, seed=5, split="train", image_size=size)
    found: dict[str, tuple[str, Image.Image, str]] = {}
    for i in range(400):
        obj = data.scene(i).objects[0]
        if obj.colour != "white" and obj.size != "small" and obj.shape not in found:
            found[obj.shape] = (f"{obj.colour} {obj.shape}", render(data.scene(i), size), obj.shape)
    return [found[s] for s in SHAPES]


def sample_photos() -> list[tuple[str, Image.Image, str]]:
    import skimage.data

    return [(name, Image.fromarray(getattr(skimage.data, name)()), label) for name, label in PHOTOS.items()]


def outline_scores(paper: np.ndarray, mask: np.ndarray, tolerance: int = 3) -> dict[str, float]:
    """How well the ink follows the object: the share of the mask's boundary within `tolerance` px of ink
    (outline recall), and the share of ink on the object or within `tolerance` px of it (ink on object)."""
    from scipy import ndimage

    ink = paper < 0.5
    boundary = mask & ~ndimage.binary_erosion(mask)
    near_ink = ndimage.binary_dilation(ink, iterations=tolerance)
    near_object = ndimage.binary_dilation(mask, iterations=tolerance)
    return {"outline_recall": float((boundary & near_ink).sum() / max(boundary.sum(), 1)),
            "ink_on_object": float((ink & near_object).sum() / max(ink.sum(), 1))}


class ZeroShot:
    """The default CLIP as a zero-shot classifier over a class set, with a prompt ensemble."""

    def __init__(self, clip, preprocess, classes: list[str]) -> None:
        from clipworks.evaluation.zeroshot import build_classifier
        from clipworks.model.factory import get_tokenizer

        self.clip, self.preprocess, self.classes = clip, preprocess, classes
        self.weights = build_classifier(clip, get_tokenizer(clip), classes, PROMPTS)  # [D, C]

    def __call__(self, image: Image.Image) -> str:
        from clipworks.evaluation.features import embed_images

        return self.classes[int((embed_images(self.clip, self.preprocess, [image.convert("RGB")]) @ self.weights).argmax())]


def recogniser_control(size: int = 256) -> dict[str, float]:
    """Can the default CLIP read drawings at all? Zero-shot shape accuracy on perfect drawings of the 8
    shapes: black outlines on white (2, 4, 8 px wide), the same filled in grey, and the shapes as the world
    draws them (filled colour on a muted background)."""
    from PIL import ImageDraw

    from clipworks.data.world import SHAPE_OUTLINES, SHAPES
    from clipworks.model.factory import create_model

    clip, preprocess = create_model("default", device="cpu")
    classify = ZeroShot(clip, preprocess, list(SHAPES))
    out: dict[str, float] = {}

    def accuracy(draw) -> float:
        hits = 0
        for shape in SHAPES:
            image = Image.new("RGB", (size, size), "white")
            draw(ImageDraw.Draw(image), image, [tuple(p) for p in SHAPE_OUTLINES[shape] * size * 0.32 + size / 2])
            hits += classify(image) == shape
        return hits / len(SHAPES)

    for width in (2, 4, 8):
        out[f"outline_{width}px_on_white"] = accuracy(lambda d, im, pts, w=width: d.line(pts + pts[:1], fill="black", width=w))
    out["filled_grey_on_white"] = accuracy(lambda d, im, pts: d.polygon(pts, fill=(90, 90, 90)))

    def world_style(d, im, pts):
        d.rectangle([0, 0, size, size], fill=(100, 96, 90))
        d.polygon(pts, fill=(220, 30, 30))

    out["filled_red_on_muted_background"] = accuracy(world_style)
    return out


def run(out: Path, steps: int = 200, seeds: int = 1, progress: bool = True) -> dict[str, Any]:
    from clipworks.data.world import SHAPES
    from clipworks.model.factory import create_model
    from clipworks.sketch.clipasso import SketchConfig, prepare_target, save_strip, sketch_image
    from clipworks.sketch.svg import to_svg

    out.mkdir(parents=True, exist_ok=True)
    clip, preprocess = create_model("default", device="cpu")
    sets = {"world": (world_objects(), ZeroShot(clip, preprocess, list(SHAPES))),
            "photos": (sample_photos(), ZeroShot(clip, preprocess, list(PHOTOS.values())))}
    results: dict[str, Any] = {"steps": steps, "seeds": seeds, "sketches": [], "photos": []}
    grids: dict[str, dict] = {"saliency": {}, "random": {}}
    for set_name, (items, classify) in sets.items():
        for name, image, label in items:
            results["photos"].append({"set": set_name, "name": name, "label": label, "predicted": classify(image)})
            _, mask = prepare_target(image, SketchConfig().canvas)
            for init in ("saliency", "random"):
                for n in STROKES:
                    cfg = SketchConfig(strokes=n, steps=steps, seeds=seeds, init=init)
                    result = sketch_image(image, cfg, clip=clip, progress=False)
                    paper = result.snapshots[-1][1]
                    sketch = Image.fromarray((paper * 255).round().astype(np.uint8)).convert("RGB")
                    record = {"set": set_name, "name": name, "label": label, "init": init, "strokes": n,
                              "predicted": classify(sketch), "loss": result.loss, "seconds": round(result.seconds, 2),
                              "steps_run": result.steps_run, **outline_scores(paper, mask)}
                    results["sketches"].append(record)
                    grids[init][(name, n)] = paper
                    if init == "saliency" and n == 16:
                        stem = name.replace(" ", "_")
                        (out / "svg").mkdir(exist_ok=True)
                        (out / "svg" / f"{stem}_16.svg").write_text(to_svg(result.strokes))
                        save_strip(result, out / "steps" / f"{stem}_16.png", f"{name}: 16 strokes")
                    if progress:
                        print(f"{set_name:6} {name:16} {init:8} {n:2} strokes  predicted {record['predicted']:14} "
                              f"recall {record['outline_recall']:.2f}  on-object {record['ink_on_object']:.2f}  "
                              f"{record['seconds']:.1f} s", flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    targets = {name: prepare_target(image, SketchConfig().canvas)[0] for items, _ in sets.values() for name, image, _ in items}
    for init, grid in grids.items():
        save_grid(targets, grid, out / f"sketches_{init}.png", f"CLIPasso with the default CLIP, {init} init")
    results["summary"] = summarise(results)
    results["recogniser_control"] = recogniser_control()
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Accuracy and outline scores per set, init and stroke count; photo accuracy per set."""
    summary: dict[str, Any] = {}
    for set_name in ("world", "photos"):
        photos = [p for p in results["photos"] if p["set"] == set_name]
        summary[f"{set_name}/photo_accuracy"] = float(np.mean([p["predicted"] == p["label"] for p in photos]))
        for init in ("saliency", "random"):
            for n in STROKES:
                rows = [r for r in results["sketches"] if r["set"] == set_name and r["init"] == init and r["strokes"] == n]
                if rows:
                    summary[f"{set_name}/{init}/{n}"] = {
                        "sketch_accuracy": float(np.mean([r["predicted"] == r["label"] for r in rows])),
                        "outline_recall": float(np.mean([r["outline_recall"] for r in rows])),
                        "ink_on_object": float(np.mean([r["ink_on_object"] for r in rows])),
                        "loss": float(np.mean([r["loss"] for r in rows])),
                        "seconds": float(np.mean([r["seconds"] for r in rows]))}
    return summary


def save_grid(targets: dict[str, np.ndarray], grid: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(targets)
    fig, axes = plt.subplots(len(names), len(STROKES) + 1, figsize=(1.6 * (len(STROKES) + 1), 1.6 * len(names)))
    for i, name in enumerate(names):
        axes[i, 0].imshow(targets[name])
        axes[i, 0].set_ylabel(name, fontsize=7)
        for j, n in enumerate(STROKES):
            axes[i, j + 1].imshow(grid[(name, n)], cmap="gray", vmin=0, vmax=1)
            if i == 0:
                axes[i, j + 1].set_title(f"{n} strokes", fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("target", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="reports/sketch")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results = run(Path(args.out), args.steps, args.seeds)
    print(json.dumps(results["summary"], indent=2))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
