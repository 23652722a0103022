"""The CLIPasso experiment behind the README: does a sketch become more recognisable with more strokes?

Objects of the generated world (by default 3 of each of the 8 shapes: one in the classic look, two in train
styles on plain backdrops) are sketched at 4, 8, 16 and 32 strokes from saliency starts, and the classic ones
from random starts too (a control), with the default CLIP in the losses. Two zero-shot judges name each
sketch's shape: the default CLIP, the model the sketches were optimised against, and a second judge that was
never in the loop (`--second-judge`: the first default model, stage 1 of `make_default`, trained on the classic
world without any drawing styles), so the claim is not only "the same model likes its own optimum". Per sketch also: how much
of the object's outline its ink covers, its loss and time. `--photos` adds scikit-image's sample photos.

    python -m clipworks.training.make_default --run RUN          (RUN/stage1/model-fp16 is the second judge)
    python -m clipworks.sketch.experiment --out reports/sketch --second-judge RUN/stage1/model-fp16
                                                                  (about 30 min on 2 idle CPU cores)

Writes results.json, README.md, recognisability.png, sketches_saliency.png, sketches_random.png, the
16-stroke SVGs (svg/) and strips of intermediate steps (steps/) into --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

STROKES = (4, 8, 16, 32)
INITS = ("saliency", "random")
# The second judge: the first default model (the classic world only, no drawing styles) is this run's stage 1.
MAKE_SECOND_JUDGE = "python -m clipworks.training.make_default --run RUN"
# The judges by role: the model the sketches were optimised against, and one that was never in the loop.
JUDGE_ROLES = {"default": "drew the sketches (the CLIP in the losses) and judges them",
               "second": "judges only; never in the optimisation"}
# Train styles the styled world objects are drawn in, in turn, on backdrops the automatic mask can separate.
WORLD_STYLES = ("shaded", "watercolour", "outline", "hatching", "textured")
PLAIN_BACKDROPS = ("plain", "gradient", "paper")
PHOTOS = {"astronaut": "an astronaut", "chelsea": "a cat", "coffee": "a cup of coffee", "rocket": "a rocket"}
PHOTO_PROMPTS = ("{}", "a drawing of {}", "a sketch of {}")


@dataclass(frozen=True)
class Plan:
    """What is sketched: `per_shape` world objects of each shape (the first in the classic look, the others in
    WORLD_STYLES), the first `random_per_shape` of them also from random starts; the photos (saliency starts
    only) when `photos`. `shapes` None: all 8 (the judges always choose among all 8)."""

    steps: int = 150
    seeds: int = 1
    per_shape: int = 3
    random_per_shape: int = 1
    strokes: tuple[int, ...] = STROKES
    shapes: tuple[str, ...] | None = None
    photos: bool = False


@dataclass
class Target:
    """An image to sketch: its set ("world" or "photos"), name, class, look and the inits it is sketched from."""

    set: str
    name: str
    image: Image.Image
    label: str
    style: str
    inits: tuple[str, ...]


def world_objects(per_shape: int = 3, random_per_shape: int = 1, shapes: tuple[str, ...] | None = None,
                  size: int = 128) -> list[Target]:
    """`per_shape` medium or large, non-white objects of each shape in seen colour-shape pairs, each in another
    colour: the first in the classic look (flat on a muted backdrop), the others in WORLD_STYLES in turn."""
    from clipworks.data.world import SHAPES, render, single_object_dataset

    classic = single_object_dataset(400, seed=5, split="train", image_size=size)
    styled = {s: single_object_dataset(400, seed=6 + k, split="train", image_size=size, styles=(s,))
              for k, s in enumerate(WORLD_STYLES)}
    in_turn = cycle(WORLD_STYLES)
    found = []
    for shape in shapes or SHAPES:
        colours: set[str] = set()
        for k in range(per_shape):
            style = "classic" if k == 0 else next(in_turn)
            scene = _first(classic if k == 0 else styled[style], shape, colours)
            obj = scene.objects[0]
            colours.add(obj.colour)
            name = f"{obj.colour} {shape}" if k == 0 else f"{style} {obj.colour} {shape}"
            inits = INITS if k < random_per_shape else ("saliency",)
            found.append(Target("world", name, render(scene, size), shape, style, inits))
    return found


def _first(data, shape: str, colours: set[str]):
    """The first scene of `data` whose object is a `shape`, medium or large, not white nor in `colours`, on a
    backdrop the automatic mask separates (styled scenes: PLAIN_BACKDROPS)."""
    for i in range(len(data)):
        scene = data.scene(i)
        obj = scene.objects[0]
        plain = scene.style is None or scene.background.kind in PLAIN_BACKDROPS
        if obj.shape == shape and obj.size != "small" and obj.colour != "white" and obj.colour not in colours and plain:
            return scene
    raise RuntimeError(f"no fitting {shape} in {len(data)} world scenes: search more")


def sample_photos() -> list[Target]:
    import skimage.data

    return [Target("photos", name, Image.fromarray(getattr(skimage.data, name)()), label, "photo", ("saliency",))
            for name, label in PHOTOS.items()]


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
    """A CLIP as a zero-shot classifier over a class set, with a prompt ensemble."""

    def __init__(self, clip, preprocess, classes: list[str], templates) -> None:
        from clipworks.evaluation.zeroshot import build_classifier
        from clipworks.model.factory import get_tokenizer

        self.clip, self.preprocess, self.classes = clip, preprocess, classes
        self.weights = build_classifier(clip, get_tokenizer(clip), classes, templates)  # [D, C]

    def __call__(self, image: Image.Image) -> str:
        from clipworks.evaluation.features import embed_images

        return self.classes[int((embed_images(self.clip, self.preprocess, [image.convert("RGB")]) @ self.weights).argmax())]


def judge_card(spec: str) -> dict[str, Any]:
    """Which weights a judge is and what they were trained on: the weights' sha256, and the data of each
    training stage from recipe.json beside them (shipped models) or the run's train_config.json
    (RUN/stageN/model-fp16); `styles_seen` is the world's drawing styles in that data."""
    from clipworks.model.factory import shipped_model_path

    path = shipped_model_path(spec) or Path(spec).expanduser()
    weights = path / "model.safetensors" if path.is_dir() else path
    card: dict[str, Any] = {"model": spec, "weights_sha256": None, "training_data": None, "styles_seen": None,
                            "training_data_from": None}
    if weights.is_file():
        card["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    folder = path if path.is_dir() else path.parent
    source = next((f for f in (folder / "recipe.json", folder.parent / "train_config.json") if f.is_file()), None)
    if source is not None:
        recipe = json.loads(source.read_text())
        stages = recipe.get("stages") or [recipe.get("recipe", recipe)]
        card["training_data"] = [_data_spec(stage) for stage in stages]
        card["styles_seen"] = _styles_seen(card["training_data"])
        card["training_data_from"] = str(source)
    return card


def _data_spec(stage: dict[str, Any]) -> str:
    """A stage's data as one --data spec ("world:size=400000,grayscale=0.5")."""
    data = str(stage.get("data", "?"))
    options = ",".join(f"{k}={v}" for k, v in (stage.get("data_options") or {}).items())
    return data if not options else f"{data}{',' if ':' in data else ':'}{options}"


def _styles_seen(specs: list[str]) -> list[str] | None:
    """The world styles named by data specs (no styles= option: the classic world, flat shapes only); None when a
    spec is not the world."""
    from clipworks.data.styles import STYLE_SETS

    seen: set[str] = set()
    for spec in specs:
        source, _, options = spec.partition(":")
        if source != "world":
            return None
        value = dict(o.split("=", 1) for o in options.split(",") if "=" in o).get("styles", "classic")
        seen.update(STYLE_SETS.get(value) or value.split("+"))
    return sorted(seen)


def recogniser_control(classify: ZeroShot, size: int = 256) -> dict[str, float]:
    """Can a judge read drawings at all? Zero-shot shape accuracy on perfect drawings of the 8 shapes: black
    outlines on white (2, 4, 8 px wide), the same filled in grey, and the shapes as the classic world draws
    them (filled colour on a muted background)."""
    from PIL import ImageDraw

    from clipworks.data.world import SHAPE_OUTLINES, SHAPES

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


def run(out: Path, plan: Plan, second_judge: str, command: str = "",
        progress: bool = True) -> dict[str, Any]:
    """Sketch every target of `plan` at every stroke count and init, judge each sketch with both judges, and
    write the results, figures and report into `out`."""
    from clipworks.data.world import SHAPES
    from clipworks.evaluation.zeroshot import load_templates
    from clipworks.io import atomic_write
    from clipworks.model.factory import create_model
    from clipworks.sketch.clipasso import SketchConfig, prepare_target, save_strip, sketch_image
    from clipworks.sketch.svg import to_svg

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    specs = {"default": "default", "second": second_judge}
    models = {role: create_model(spec, device="cpu") for role, spec in specs.items()}
    clip = models["default"][0]
    classifiers = {role: {"world": ZeroShot(m, p, list(SHAPES), load_templates("world_shape")),
                          "photos": ZeroShot(m, p, list(PHOTOS.values()), PHOTO_PROMPTS)} for role, (m, p) in models.items()}
    targets = world_objects(plan.per_shape, plan.random_per_shape, plan.shapes)
    targets += sample_photos() if plan.photos else []
    results: dict[str, Any] = {
        "command": command, "plan": asdict(plan), "load_average_at_start": round(os.getloadavg()[0], 2),
        "judges": {role: {"role": JUDGE_ROLES[role], **judge_card(spec)} for role, spec in specs.items()},
        "classes": {"world": list(SHAPES), "photos": list(PHOTOS.values())},
        "prompts": {"world": "world_shape", "photos": list(PHOTO_PROMPTS)}, "targets": [], "sketches": []}
    canvas = SketchConfig().canvas
    papers: dict[tuple[str, str, int], np.ndarray] = {}
    for target in targets:
        def judge(image: Image.Image) -> dict[str, str]:
            return {role: c[target.set](image) for role, c in classifiers.items()}

        about = {"set": target.set, "name": target.name, "label": target.label, "style": target.style}
        results["targets"].append({**about, "predicted": judge(target.image)})
        _, mask = prepare_target(target.image, canvas)
        for init in target.inits:
            for n in plan.strokes:
                cfg = SketchConfig(strokes=n, steps=plan.steps, seeds=plan.seeds, init=init)
                result = sketch_image(target.image, cfg, clip=clip, progress=False)
                paper = result.snapshots[-1][1]
                sketch = Image.fromarray((paper * 255).round().astype(np.uint8)).convert("RGB")
                record = {**about, "init": init, "strokes": n, "predicted": judge(sketch), "loss": result.loss,
                          "seconds": round(result.seconds, 2), "steps_run": result.steps_run, **outline_scores(paper, mask)}
                results["sketches"].append(record)
                papers[(target.name, init, n)] = paper
                if init == "saliency" and n == 16:
                    stem = target.name.replace(" ", "_")
                    (out / "svg").mkdir(exist_ok=True)
                    (out / "svg" / f"{stem}_16.svg").write_text(to_svg(result.strokes))
                    if target.style in ("classic", "photo"):
                        save_strip(result, out / "steps" / f"{stem}_16.png", f"{target.name}: 16 strokes")
                if progress:
                    said = "  ".join(f"{role} {p:10}" for role, p in record["predicted"].items())
                    print(f"{target.name:26} {init:8} {n:2} strokes  {said}  recall {record['outline_recall']:.2f}  "
                          f"on-object {record['ink_on_object']:.2f}  {record['seconds']:.1f} s", flush=True)
        atomic_write(out / "results.json", lambda tmp: tmp.write_text(json.dumps(results, indent=2) + "\n"))
    results["summary"] = summarise(results["sketches"], results["targets"])
    results["recognisability"] = recognisability(results["sketches"], plan.strokes)
    results["recogniser_control"] = {role: recogniser_control(c["world"]) for role, c in classifiers.items()}
    drawn = {t.name: prepare_target(t.image, canvas)[0] for t in targets}
    for init in INITS:
        rows = [(t, drawn[t.name]) for t in targets if init in t.inits]
        if rows:
            save_grid(rows, papers, results["sketches"], init, plan.strokes, out / f"sketches_{init}.png",
                      per_row=plan.per_shape if init == "saliency" else max(plan.random_per_shape, 1))
    save_curve(results, out / "recognisability.png")
    results["seconds_total"] = round(time.perf_counter() - start, 1)
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(json.dumps(results, indent=2) + "\n"))
    write_report(results, out)
    return results


def _accuracy(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per judge, the share of rows whose predicted class is the label."""
    return {role: float(np.mean([r["predicted"][role] == r["label"] for r in rows])) for role in rows[0]["predicted"]}


def summarise(sketches: list[dict[str, Any]], targets: list[dict[str, Any]]) -> dict[str, Any]:
    """Per set: each judge's accuracy on the target images; per set, init and stroke count: each judge's sketch
    accuracy, and the mean outline recall, ink on object, loss and time."""
    summary: dict[str, Any] = {}
    for set_name in dict.fromkeys(t["set"] for t in targets):
        summary[f"{set_name}/target_accuracy"] = _accuracy([t for t in targets if t["set"] == set_name])
        for init in INITS:
            for n in sorted({r["strokes"] for r in sketches}):
                rows = [r for r in sketches if r["set"] == set_name and r["init"] == init and r["strokes"] == n]
                if rows:
                    summary[f"{set_name}/{init}/{n}"] = {
                        "sketches": len(rows), "sketch_accuracy": _accuracy(rows),
                        **{key: float(np.mean([r[key] for r in rows]))
                           for key in ("outline_recall", "ink_on_object", "loss", "seconds")}}
    return summary


def recognisability(sketches: list[dict[str, Any]], strokes: tuple[int, ...] = STROKES) -> dict[str, Any]:
    """The curve the paper's claim is about, per judge: world-sketch accuracy at each stroke count, from saliency
    starts (and random ones where sketched), and whether it rises with the number of strokes."""
    world = [r for r in sketches if r["set"] == "world"]
    curves: dict[str, Any] = {}
    for role in world[0]["predicted"]:
        curve: dict[str, Any] = {"strokes": list(strokes)}
        for init in INITS:
            per_count = [[r for r in world if r["init"] == init and r["strokes"] == n] for n in strokes]
            if all(per_count):
                curve[init] = [_accuracy(rows)[role] for rows in per_count]
                curve[f"{init}_sketches"] = len(per_count[0])
        curve["claim"] = claim_verdict(curve["saliency"], list(strokes))
        curves[role] = curve
    return curves


def claim_verdict(accuracy: list[float], strokes: list[int]) -> dict[str, str]:
    """Does accuracy rise with the number of strokes? "yes": higher at the most strokes than at the fewest and
    never lower from one count to the next; "overall": higher at the end but not at every step; "no" otherwise."""
    first, last = accuracy[0], accuracy[-1]
    falls = [f"{a} to {b}" for a, b, x, y in zip(strokes, strokes[1:], accuracy, accuracy[1:]) if y < x]
    span = f"{100 * first:.1f}% at {strokes[0]} strokes, {100 * last:.1f}% at {strokes[-1]}"
    if last > first and not falls:
        return {"holds": "yes", "text": f"holds: {span}, never lower with more strokes"}
    if last > first:
        return {"holds": "overall", "text": f"holds overall: {span}, but lower from {', '.join(falls)} strokes"}
    return {"holds": "no", "text": f"does not hold: {span}"}


def save_grid(rows: list[tuple[Target, np.ndarray]], papers: dict, records: list[dict[str, Any]], init: str,
              strokes: tuple[int, ...], path: Path, per_row: int = 1) -> Path:
    """Targets and their sketches, `per_row` targets side by side; under each sketch the judges' answers
    (default above, second below; green when right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    said = {(r["name"], r["strokes"]): r for r in records if r["init"] == init}
    block = len(strokes) + 1
    lines = -(-len(rows) // per_row)
    fig, axes = plt.subplots(lines, block * per_row, figsize=(1.3 * block * per_row, 1.75 * lines + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (target, drawn) in enumerate(rows):
        line, col = divmod(k, per_row)
        ax = axes[line, col * block]
        ax.imshow(drawn)
        ax.set_title(target.name, fontsize=6)
        for j, n in enumerate(strokes):
            ax = axes[line, col * block + j + 1]
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("lightgrey")
            ax.imshow(papers[(target.name, init, n)], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{n} strokes", fontsize=6)
            record = said[(target.name, n)]
            for y, role in zip((-0.08, -0.22), record["predicted"]):
                answer = record["predicted"][role]
                ax.text(0.5, y, answer, transform=ax.transAxes, ha="center", fontsize=5.5,
                        color="green" if answer == record["label"] else "red")
    fig.suptitle(f"CLIPasso with the default CLIP, {init} starts; under each sketch the default judge's answer, "
                 "then the second judge's (green: right)", fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.3 / (1.75 * lines + 0.4), top=1 - 0.45 / (1.75 * lines + 0.4),
                        wspace=0.08, hspace=0.5)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_curve(results: dict[str, Any], path: Path) -> Path:
    """Recognisability against strokes: one line per judge (solid: saliency starts, dashed: random starts),
    each judge's accuracy on the target images dotted, and chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = results["recognisability"]
    targets = results["summary"]["world/target_accuracy"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (role, curve), colour in zip(curves.items(), ("tab:blue", "tab:orange")):
        who = f"{role} judge ({results['judges'][role]['model']})"
        ax.plot(curve["strokes"], [100 * a for a in curve["saliency"]], "o-", color=colour,
                label=f"{who}, saliency starts (n={curve['saliency_sketches']})")
        if "random" in curve:
            ax.plot(curve["strokes"], [100 * a for a in curve["random"]], "s--", color=colour, alpha=0.6,
                    label=f"{who}, random starts (n={curve['random_sketches']})")
        ax.axhline(100 * targets[role], color=colour, lw=0.8, ls=":", label=f"{who} on the target images")
    ax.axhline(100 / len(results["classes"]["world"]), color="grey", lw=1, ls="-.", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(curves["default"]["strokes"], [str(n) for n in curves["default"]["strokes"]])
    ax.set_xlabel("strokes")
    ax.set_ylabel("sketches named right, zero-shot (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Recognisability of CLIPasso sketches of world shapes", fontsize=10)
    ax.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def write_report(results: dict[str, Any], out: Path) -> Path:
    """README.md: the judges, the recognisability curve per judge and whether the claim holds, outline scores,
    the recogniser control; every figure read from `results`."""
    plan, summary, curves, judges = results["plan"], results["summary"], results["recognisability"], results["judges"]
    strokes = plan["strokes"]
    world = [t for t in results["targets"] if t["set"] == "world"]
    styles = sorted({t["style"] for t in world}, key=lambda s: (s != "classic", s))
    default_plan = json.loads(json.dumps(asdict(Plan())))
    changed = {k: v for k, v in json.loads(json.dumps(plan)).items() if default_plan[k] != v}
    full = f"python -m clipworks.sketch.experiment --out {out} --second-judge {judges['second']['model']}"
    lines = ["# CLIPasso: recognisability against the number of strokes, two judges", "",
             "Written by `python -m clipworks.sketch.experiment` from `results.json`; do not edit by hand.", "",
             f"Command: `{results['command']}`, {results['seconds_total'] / 60:.1f} min wall clock (load average "
             f"{results['load_average_at_start']} at the start on this machine's CPUs).",
             ("Plan: the default." if not changed else
              "**Not the default plan** (" + ", ".join(f"{k}={v}" for k, v in changed.items())
              + f"): the full run is `{full}`."),
             "",
             f"{len(world)} world objects ({plan['per_shape']} per shape where all 8 are used; styles: "
             f"{', '.join(styles)}), medium or large, seen colour-shape pairs, each sketched at "
             f"{', '.join(map(str, strokes))} strokes with up to {plan['steps']} steps and {plan['seeds']} seed(s). "
             f"The judges classify each sketch zero-shot among the 8 shapes (chance "
             f"{_pct(1 / len(results['classes']['world']))}%) with the `world_shape` prompts.", "",
             "## Judges", "", "| judge | model | weights sha256 | trained on | drawing styles seen | accuracy on the target images |",
             "|---|---|---|---|---|---|"]
    for role, card in judges.items():
        data = "; ".join(f"`{d}`" for d in card["training_data"]) if card["training_data"] else "not recorded beside the weights"
        seen = ", ".join(card["styles_seen"]) if card["styles_seen"] else "unknown"
        lines.append(f"| {role}: {card['role']} | `{card['model']}` | {(card['weights_sha256'] or '?')[:12]} | {data} "
                     f"| {seen} | {_pct(summary['world/target_accuracy'][role])}% |")
    lines += ["", "## Recognisability (world sketches named right, %)", "",
              "| judge, starts | " + " | ".join(f"{n} strokes" for n in strokes) + " | sketches per count |",
              "|---|" + "---|" * (len(strokes) + 1)]
    for role, curve in curves.items():
        for init in INITS:
            if init in curve:
                lines.append(f"| {role}, {init} | " + " | ".join(_pct(a) for a in curve[init])
                             + f" | {curve[f'{init}_sketches']} |")
    lines += ["", "**The claim (recognisability rises with the number of strokes, saliency starts):**", ""]
    lines += [f"- {role} judge (`{judges[role]['model']}`): {curve['claim']['text']}." for role, curve in curves.items()]
    lines += ["", "![recognisability against strokes](recognisability.png)", "",
              "## Outline scores (mean over sketches)", "",
              "Outline recall: the share of the object's boundary within 3 px of ink; ink on object: the share of "
              "ink on the object or within 3 px of it.", "",
              "| set/starts/strokes | sketches | outline recall | ink on object | final loss | seconds per sketch |",
              "|---|---|---|---|---|---|"]
    for key, row in summary.items():
        if key.count("/") == 2:
            lines.append(f"| {key} | {row['sketches']} | {_pct(row['outline_recall'])} | {_pct(row['ink_on_object'])} "
                         f"| {row['loss']:.3f} | {row['seconds']:.1f} |")
    control = results["recogniser_control"]
    lines += ["", "## Recogniser control (perfect drawings of the 8 shapes, % named right)", "",
              "| drawing | " + " | ".join(f"{role} judge" for role in control) + " |", "|---|" + "---|" * len(control)]
    for key in next(iter(control.values())):
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(_pct(c[key]) for c in control.values()) + " |")
    sheets = [f"`{name}`" for name in ("sketches_saliency.png", "sketches_random.png") if (out / name).is_file()]
    lines += ["", f"Figures: {', '.join(sheets) or 'no sketch sheets'} (each sketch with both judges' answers), "
              "`steps/` (strips of intermediate steps), `svg/` (the 16-stroke sketches).", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reports/sketch"))
    parser.add_argument("--steps", type=int, default=Plan.steps, help="optimisation steps per sketch (early stop)")
    parser.add_argument("--seeds", type=int, default=Plan.seeds, help="runs per sketch; the lowest-loss one is kept")
    parser.add_argument("--per-shape", type=int, default=Plan.per_shape, help="world objects per shape")
    parser.add_argument("--random-per-shape", type=int, default=Plan.random_per_shape,
                        help="of those, how many are also sketched from random starts (the control)")
    parser.add_argument("--photos", action="store_true", help="also sketch 4 sample photos (saliency starts)")
    parser.add_argument("--second-judge", metavar="MODEL", required=True,
                        help="a model name or checkpoint path that judges the sketches too, one that never saw a "
                             f"drawing style: stage 1 of `{MAKE_SECOND_JUDGE}`, RUN/stage1/model-fp16")
    args = parser.parse_args(argv)

    from clipworks.errors import report_errors

    def go(args: argparse.Namespace) -> int:
        plan = Plan(steps=args.steps, seeds=args.seeds, per_shape=args.per_shape,
                    random_per_shape=args.random_per_shape, photos=args.photos)
        command = "python -m clipworks.sketch.experiment " + " ".join(sys.argv[1:] if argv is None else argv)
        results = run(args.out, plan, args.second_judge, command.strip())
        print((args.out / "README.md").read_text())
        print(f"total {results['seconds_total']:.0f} s")
        return 0

    return report_errors(go, args)


if __name__ == "__main__":
    sys.exit(main())
