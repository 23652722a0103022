"""Score a ClipCap captioner's captions against references (captioning itself is in `inference.py`).

`evaluate_captioner` is `clipworks caption eval`: captions for a captioned data set (by default 1,000 held-out
generated scenes in the world's training styles, whose colour–shape pairs the default models never saw) scored by BLEU-1..4, METEOR (when
Java is present), ROUGE-L and CIDEr-D, with a few examples beside their references.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from clipworks.captioning.inference import caption_images
from clipworks.captioning.model import ClipCap, load_captioner
from clipworks.errors import InputFileError

HELDOUT = "world:split=heldout,size=1000,seed=21,styles=train"  # held-out pairs in the styles trained on
# What the shipped captioner is scored on: held-out colour-shape pairs in the training styles, and in the
# styles no model saw in training (clipworks.data.styles.HELDOUT_STYLES).
HELDOUT_SETS = {"train styles": HELDOUT, "held-out styles": "world:split=heldout,size=1000,seed=22,styles=heldout"}


def attribute_precision(captions: list[str], facts: list[dict[str, Any]]) -> dict[str, Any]:
    """For generated-world scenes: of the colour words and of the shape words the captions use, the share that
    is true of the scene (some object has that colour / shape). References score 1.0 by construction."""
    from clipworks.data.world import COLOURS, SHAPES

    counts = {"colour": [0, 0], "shape": [0, 0]}
    for caption, fact in zip(captions, facts):
        colours = {o["colour"] for o in fact["objects"]}
        shapes = {o["shape"] for o in fact["objects"]}
        for word in caption.lower().replace(",", " ").split():
            singular = word[:-2] if word.endswith("es") and word[:-2] in SHAPES else word.rstrip("s")
            if word in COLOURS:
                counts["colour"][0] += word in colours
                counts["colour"][1] += 1
            elif word in SHAPES or singular in SHAPES:
                counts["shape"][0] += (word if word in SHAPES else singular) in shapes
                counts["shape"][1] += 1
    return {f"{kind}_precision": (right / total if total else None) for kind, (right, total) in counts.items()} | {
        f"{kind}_words": total for kind, (_, total) in counts.items()}


def save_caption_figure(images: list, captions: list[str], references: list[list[str]], path: str | Path) -> Path:
    """A grid of images, each titled with its generated caption and its first reference."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(5, len(images))
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.8, rows * 3.6), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(images):
            continue
        ax.imshow(images[k])
        said = "\n".join(textwrap.wrap(captions[k], 30))
        ref = "\n".join(textwrap.wrap(references[k][0], 30))
        ax.set_title(f"{said}\n(ref: {ref})", fontsize=7, loc="left")
    fig.suptitle("generated captions, each with one of its image's reference captions", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def evaluate_captioner(captioner: ClipCap | str = "default", data: str = HELDOUT, limit: int | None = None,
                       method: str = "beam", beam_width: int = 3, max_tokens: int = 24, examples: int = 10,
                       meteor: bool = True, progress: bool = True, figure: str | Path | None = None) -> dict[str, Any]:
    """Caption every captioned image of `data` (a --data spec; `limit` keeps the first N) and score against
    its captions. Returns metrics, counts, timing, the captioner's parameter counts and random examples;
    `figure` saves those examples as an image grid."""
    from tqdm import tqdm

    from clipworks.captioning.metrics import evaluate_captions, meteor_unavailable_reason
    from clipworks.data import open_pairs
    from clipworks.data.skips import SkipReport
    from clipworks.data.types import Sample

    name = captioner if isinstance(captioner, str) else None
    if isinstance(captioner, str):
        captioner = load_captioner(captioner)
    dataset = open_pairs(data)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    report = SkipReport(total=count)
    samples = []
    for i in tqdm(range(count), desc="reading", unit="img", disable=not progress):
        item = dataset[i]
        report.add(item)
        if isinstance(item, Sample):
            samples.append(item)
    if not samples:
        raise InputFileError(f"{data}: no image with a caption to evaluate on ({report.summary()}; {report.first()})")
    start = time.perf_counter()
    hyps = caption_images([s.image for s in samples], captioner, method=method, beam_width=beam_width,
                          max_tokens=max_tokens)
    seconds = time.perf_counter() - start
    refs = {i: s.captions for i, s in enumerate(samples)}
    scores = evaluate_captions(refs, dict(enumerate(hyps)), with_meteor=meteor)
    facts = [s.facts for s in samples]
    attributes = attribute_precision(hyps, facts) if all("objects" in f for f in facts) else None
    picked = random.Random(0).sample(range(len(samples)), min(examples, len(samples)))
    if figure is not None and picked:
        save_caption_figure([samples[i].image for i in picked], [hyps[i] for i in picked],
                            [samples[i].captions for i in picked], figure)
    return {
        "captioner": name or "(in memory)", "clip_model": captioner.config.clip_model, "data": data,
        "images": len(samples), "skipped": report.summary(),
        "decoding": {"method": method, "beam_width": beam_width, "max_tokens": max_tokens},
        "metrics": scores, "attributes": attributes, "meteor_note": None if "METEOR" in scores else meteor_unavailable_reason(),
        "parameters": captioner.parameter_counts(), "caption_seconds": round(seconds, 2),
        "examples": [{"key": samples[i].key, "caption": hyps[i], "references": samples[i].captions} for i in picked],
    }
