"""CLIP-ViL's two claims, measured on the generated world (the one command that makes the report):

    python -m clipworks.vqa.experiment --out runs/vqa

trains the same VQA model with three visual encoders on the same questions and budget: the default CLIP
model's image tower frozen, the same tower fine-tuned, and the same architecture trained from scratch on
the VQA data only. It scores them and zero-shot CLIP ("question: Q answer: A" prompts) per question type,
on held-out scenes (unseen colour-shape pairs) drawn in the training styles and in the held-out styles, and
on new scenes of seen pairs in the training styles. It writes report.md,
results.json and accuracy.png to --out. Finished runs are reused, so an interrupted experiment resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VARIANTS = {  # name: (encoder, freeze_encoder)
    "clip-frozen": ("clip", True),
    "clip-finetuned": ("clip", False),
    "scratch": ("scratch", False),
}
EVALUATIONS = {  # table name: (split, styles)
    "heldout": ("heldout", "train"),
    "heldout-styles": ("heldout", "heldout"),
    "train": ("train", "train"),
}
TITLES = {
    "heldout": "Held-out scenes (the main object is a colour-shape pair never seen in training), training styles",
    "heldout-styles": "Held-out scenes in the held-out styles (sketch, mosaic: never seen in training)",
    "train": "New scenes of seen pairs, training styles",
}


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from clipworks.vqa.questions import TYPES

    kinds = [*TYPES, "overall"]
    names = list(results["heldout"])
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / (len(names) + 1)
    for k, name in enumerate(names):
        ax.bar(np.arange(len(kinds)) + k * width, [100 * results["heldout"][name]["accuracy"][t] for t in kinds], width,
               label=name)
    chance = next(iter(results["heldout"].values()))["chance"]
    ax.bar(np.arange(len(kinds)) + len(names) * width, [100 * chance[t] for t in kinds], width, label="chance", color="#bbb")
    ax.set_xticks(np.arange(len(kinds)) + 0.4 - width / 2, kinds)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("VQA on held-out scenes (unseen colour-shape pairs, training styles), by question type")
    ax.legend(fontsize=8, ncol=len(names) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _table(results: dict, split: str) -> list[str]:
    from clipworks.vqa.questions import TYPES

    kinds = [*TYPES, "overall"]
    lines = ["| model | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    rows = dict(results[split])
    rows["chance"] = {"accuracy": next(iter(results[split].values()))["chance"]}
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r['accuracy'][t]:.1f}" for t in kinds) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/vqa"))
    parser.add_argument("--steps", type=int, default=None, help="training steps per variant (default: the recipe's)")
    parser.add_argument("--test-size", type=int, default=2000, help="questions per test split")
    args = parser.parse_args(argv)

    from clipworks.model.factory import create_model
    from clipworks.vqa.config import VQATrainConfig
    from clipworks.vqa.evaluate import evaluate_vqa, zero_shot_vqa
    from clipworks.vqa.model import load_vqa
    from clipworks.vqa.train import train_vqa

    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / ".vqa-cache"
    results: dict = {name: {} for name in EVALUATIONS}
    training: dict = {}
    for name, (encoder, freeze) in VARIANTS.items():
        run = args.out / name
        cfg = VQATrainConfig(out=str(run), encoder=encoder, freeze_encoder=freeze)
        if args.steps is not None:
            cfg.steps = args.steps
        if not (run / "summary.json").exists():
            train_vqa(cfg, resume=(run / "checkpoint.pt").exists())
        training[name] = json.loads((run / "summary.json").read_text())
        model = load_vqa(run / "model")
        for table, (split, styles) in EVALUATIONS.items():
            results[table][name] = evaluate_vqa(model, split=split, size=args.test_size, cache_dir=cache, styles=styles)
    clip, _ = create_model(VQATrainConfig.clip_model, device="cpu")
    for table, (split, styles) in EVALUATIONS.items():
        results[table]["zero-shot CLIP"] = zero_shot_vqa(clip, split=split, size=args.test_size, cache_dir=cache,
                                                         styles=styles)
    (args.out / "results.json").write_text(json.dumps({"results": results, "training": training}, indent=2) + "\n")
    _plot(results, args.out / "accuracy.png")
    lines = ["# CLIP-ViL on the generated world", "",
             "Accuracy (%) per question type; the same VQA model and budget with three visual encoders, and "
             "zero-shot CLIP.", ""]
    for table, title in TITLES.items():
        lines += [f"## {title}", "", *_table(results, table), ""]
    lines += ["## Training", "",
             "| model | trainable / total parameters | seconds |", "|---|---|---|"]
    for name, s in training.items():
        lines.append(f"| {name} | {s['parameters']['trainable']:,} / {s['parameters']['total']:,} | {s['seconds']:.0f} |")
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
