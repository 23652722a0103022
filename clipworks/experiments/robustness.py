"""Effective robustness on the styled world (the CLIP paper's section 3.3 and figure 13, on our data).

    python -m clipworks.experiments.robustness --out reports/robustness [--model default] [--compare DIR]

Zero-shot CLIP is measured on single-object images of every drawing style, the train styles and the two
held-out ones (`clipworks.data.styles.HELDOUT_STYLES`), beside two supervised baselines trained on the train
styles' shape labels and measured the same way: a linear probe on the same image tower, and a small CNN
trained from scratch. Each model's effective robustness is the gap between its in-distribution accuracy (mean
over train styles) and its accuracy under shift (each held-out style). Also measured for the CLIP models: shape
on held-out colour-shape pairs, text->image retrieval on held-out-pair scenes, and ARO-style swapped captions.
Writes results.json, README.md (the tables) and robustness.png into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clipworks.data.styles import COLOURLESS_STYLES, HELDOUT_STYLES, STYLES, TRAIN_STYLES
from clipworks.data.world import COLOURS, SHAPES, single_object_dataset
from clipworks.evaluation.features import embed_images
from clipworks.evaluation.probe import probe_scores
from clipworks.evaluation.world_tasks import aro_world, retrieval_world
from clipworks.evaluation.zeroshot import accuracy, build_classifier, classification_metrics, load_templates


def style_sets(n: int, seed: int = 40) -> dict[str, dict[str, Any]]:
    """Per style: n single-object images of seen colour-shape pairs with their shape and colour labels."""
    from tqdm import tqdm

    sets = {}
    for k, style in enumerate(tqdm(STYLES, desc="rendering styles", unit="style")):
        data = single_object_dataset(n, seed=seed + k, split="train", styles=(style,))
        samples = [data[i] for i in range(n)]
        sets[style] = {
            "images": [s.image for s in samples],
            "shape": torch.tensor([SHAPES.index(s.facts["objects"][0]["shape"]) for s in samples]),
            "colour": torch.tensor([list(COLOURS).index(s.facts["objects"][0]["colour"]) for s in samples]),
        }
    return sets


def zero_shot_by_style(model, preprocess, tokenizer, sets: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Top-1 zero-shot shape (and colour, where the style has colour) per style, with the world's templates."""
    shape_head = build_classifier(model, tokenizer, SHAPES, load_templates("world_shape"))
    colour_head = build_classifier(model, tokenizer, tuple(COLOURS), load_templates("world_colour"))
    out = {}
    for style, s in sets.items():
        features = embed_images(model, preprocess, s["images"])
        row = {"shape": accuracy(features, shape_head, s["shape"], topk=(1,))["top1"]}
        if style not in COLOURLESS_STYLES:
            row["colour"] = accuracy(features, colour_head, s["colour"], topk=(1,))["top1"]
        out[style] = row
    return out


def probe_by_style(model, preprocess, train: dict[str, Any], sets: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """A linear probe (L2 logistic regression, C swept) on the image tower's features, fit on train styles."""
    from clipworks.evaluation.probe import fit_probe

    x = embed_images(model, preprocess, train["images"]).numpy()
    probe = fit_probe(x, train["shape"].numpy())  # C chosen once on a validation split of the train styles
    out = {}
    for style, s in sets.items():
        scores = probe_scores(probe, embed_images(model, preprocess, s["images"]).numpy(), len(SHAPES))
        out[style] = {"shape": classification_metrics(scores, s["shape"], topk=(1,))["top1"]}
    return out


class SmallCNN(nn.Module):
    """The from-scratch supervised baseline: four conv blocks, global pooling, a linear classifier."""

    def __init__(self, classes: int = len(SHAPES), width: int = 16) -> None:
        super().__init__()
        layers, channels = [], 3
        for out in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _pixels(images, train: bool, seed: int = 0) -> torch.Tensor:
    """CLIP-normalised [N, 3, 64, 64]; in training, the CLIP paper's random square crop, resized back."""
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    x = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB").resize((64, 64)), np.float32) / 255.0).permute(2, 0, 1)
                     for im in images])
    if train:
        g = torch.Generator().manual_seed(seed)
        side = int(torch.randint(48, 65, (1,), generator=g))
        top, left = (int(v) for v in torch.randint(0, 64 - side + 1, (2,), generator=g))
        x = F.interpolate(x[:, :, top:top + side, left:left + side], size=64, mode="bilinear", align_corners=False)
    return (x - mean) / std


def train_cnn(train: dict[str, Any], steps: int, batch_size: int = 64, seed: int = 0) -> SmallCNN:
    """Cross-entropy on the train styles' shape labels, Adam with cosine decay."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    n = len(train["images"])
    rng = np.random.default_rng(seed)
    for step in tqdm(range(steps), desc="supervised CNN", unit="step"):
        idx = rng.choice(n, min(batch_size, n), replace=False)
        x = _pixels([train["images"][i] for i in idx], train=True, seed=seed * 100003 + step)
        loss = F.cross_entropy(model(x), train["shape"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.inference_mode()
def cnn_by_style(model: SmallCNN, sets: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for style, s in sets.items():
        logits = torch.cat([model(_pixels(s["images"][i:i + 256], train=False)) for i in range(0, len(s["images"]), 256)])
        out[style] = {"shape": classification_metrics(logits, s["shape"], topk=(1,))["top1"]}
    return out


def summarise(per_style: dict[str, dict[str, float]]) -> dict[str, float]:
    """In-distribution (mean over train styles), each held-out style, their mean, and the gap."""
    ind = float(np.mean([per_style[s]["shape"] for s in TRAIN_STYLES]))
    shifted = {s: per_style[s]["shape"] for s in HELDOUT_STYLES}
    ood = float(np.mean(list(shifted.values())))
    return {"in_distribution": ind, **{f"shifted_{s}": v for s, v in shifted.items()}, "shifted_mean": ood,
            "gap": ind - ood}


def clip_extras(model, preprocess, tokenizer, n: int) -> dict[str, Any]:
    """Held-out pairs (shape zero-shot, retrieval) on train styles, and ARO on train and held-out styles."""
    from clipworks.evaluation.world_tasks import zero_shot_world

    pairs = zero_shot_world(model, preprocess, tokenizer, n=n, split="heldout", styles="train")
    retrieval, *_ = retrieval_world(model, preprocess, tokenizer, n=n, split="heldout", styles="train")
    return {
        "heldout_pairs_shape": pairs["shape"]["top1"], "heldout_pairs_colour": pairs["colour"]["top1"],
        "heldout_pairs_text_to_image_R@5": retrieval["text_to_image_R@5"],
        "heldout_pairs_text_to_image_R@1": retrieval["text_to_image_R@1"],
        "aro_train_styles": aro_world(model, preprocess, tokenizer, n=n, styles="train"),
        "aro_heldout_styles": aro_world(model, preprocess, tokenizer, n=n, styles="heldout"),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def write_report(results: dict[str, Any], out: Path) -> Path:
    models = results["models"]
    lines = ["# Effective robustness on the styled world", "",
             f"Command: `{results['command']}` ({results['seconds']:.0f} s). {results['n']} single-object images "
             "per style (seen colour-shape pairs), 8 shapes (chance 12.5%). Train styles: "
             f"{', '.join(TRAIN_STYLES)}; held out of training: **{', '.join(HELDOUT_STYLES)}**.", "",
             "## Shape top-1 (%) per style", "",
             "| style | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for style in STYLES:
        mark = " (held out)" if style in HELDOUT_STYLES else ""
        lines.append(f"| {style}{mark} | " + " | ".join(_pct(models[m]["per_style"][style]["shape"]) for m in models) + " |")
    lines += ["", "## Effective robustness (shape)", "",
              "| model | in distribution (train styles) | " + " | ".join(HELDOUT_STYLES) + " | gap (ID - shifted mean) |",
              "|---|---|" + "---|" * len(HELDOUT_STYLES) + "---|"]
    for m, r in models.items():
        s = r["summary"]
        lines.append(f"| {m} | {_pct(s['in_distribution'])} | " + " | ".join(_pct(s[f'shifted_{h}']) for h in HELDOUT_STYLES)
                     + f" | {_pct(s['gap'])} |")
    zero_shot = [m for m in models if models[m].get("kind") == "zero-shot CLIP"]
    if zero_shot:
        lines += ["", "## Colour top-1 (%) per style (zero-shot)", "",
                  "| style | " + " | ".join(zero_shot) + " |", "|---|" + "---|" * len(zero_shot)]
        for style in STYLES:
            if style not in COLOURLESS_STYLES:
                lines.append(f"| {style} | " + " | ".join(_pct(models[m]["per_style"][style]["colour"]) for m in zero_shot) + " |")
        lines += ["", "## Held-out colour-shape pairs and word order (zero-shot CLIP)", "",
                  "| model | shape on held-out pairs | text->image R@5 (held-out-pair scenes) | ARO relation swaps "
                  "(train / held-out styles) | ARO attribute swaps (train / held-out styles) |", "|---|---|---|---|---|"]
        for m in zero_shot:
            e = models[m]["extras"]
            lines.append(f"| {m} | {_pct(e['heldout_pairs_shape'])} | {_pct(e['heldout_pairs_text_to_image_R@5'])} | "
                         f"{_pct(e['aro_train_styles']['relation'])} / {_pct(e['aro_heldout_styles']['relation'])} | "
                         f"{_pct(e['aro_train_styles']['attribute'])} / {_pct(e['aro_heldout_styles']['attribute'])} |")
    lines += ["", "![per-style accuracy and effective robustness](robustness.png)", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


def figure(results: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(15, 4.8), gridspec_kw={"width_ratios": [2.6, 1]})
    width = 0.8 / len(models)
    for k, (m, r) in enumerate(models.items()):
        ax.bar(np.arange(len(STYLES)) + k * width, [100 * r["per_style"][s]["shape"] for s in STYLES], width, label=m)
    ax.set_xticks(np.arange(len(STYLES)) + 0.4 - width / 2,
                  [s + ("\n(held out)" if s in HELDOUT_STYLES else "") for s in STYLES], fontsize=8)
    ax.axhline(12.5, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("shape top-1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("shape accuracy per drawing style")
    for m, r in models.items():
        s = r["summary"]
        for h, marker in zip(HELDOUT_STYLES, "os"):
            ax2.scatter(100 * s["in_distribution"], 100 * s[f"shifted_{h}"], marker=marker, s=50,
                        label=f"{m}: {h}")
    ax2.plot([0, 100], [0, 100], color="grey", lw=0.8, ls="--", label="y = x (perfect robustness)")
    ax2.set_xlim(0, 100)
    ax2.set_ylim(0, 100)
    ax2.set_xlabel("train styles (in distribution) %")
    ax2.set_ylabel("held-out style (shifted) %")
    ax2.set_title("effective robustness")
    ax2.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    path = out / "robustness.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/robustness"))
    parser.add_argument("--model", default="default", help="the CLIP model measured zero-shot and probed")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=MODEL",
                        help="another CLIP model to measure zero-shot (e.g. v1=runs/v1/model); repeatable")
    parser.add_argument("--n", type=int, default=1000, help="images per style")
    parser.add_argument("--train-images", type=int, default=8000, help="train-style images for the supervised baselines")
    parser.add_argument("--cnn-steps", type=int, default=600)
    args = parser.parse_args(argv)

    import clipworks
    from clipworks.errors import report_errors

    def run(args: argparse.Namespace) -> int:
        t0 = time.perf_counter()
        sets = style_sets(args.n)
        data = single_object_dataset(args.train_images, seed=7, split="train", styles="train")
        samples = [data[i] for i in range(args.train_images)]
        train = {"images": [s.image for s in samples],
                 "shape": torch.tensor([SHAPES.index(s.facts["objects"][0]["shape"]) for s in samples])}
        models: dict[str, Any] = {}
        for name, spec in [("zero-shot CLIP", args.model)] + [tuple(c.split("=", 1)) for c in args.compare]:
            model, preprocess = clipworks.create_model(spec, device="cpu")
            tokenizer = clipworks.get_tokenizer(model)
            label = name if name == "zero-shot CLIP" else f"zero-shot CLIP ({name})"
            per_style = zero_shot_by_style(model, preprocess, tokenizer, sets)
            models[label] = {"kind": "zero-shot CLIP", "model": spec, "per_style": per_style,
                             "summary": summarise(per_style), "extras": clip_extras(model, preprocess, tokenizer, args.n)}
            if name == "zero-shot CLIP":
                probe = probe_by_style(model, preprocess, train, sets)
                models["linear probe on CLIP (supervised)"] = {"kind": "supervised", "per_style": probe,
                                                               "summary": summarise(probe)}
        cnn = cnn_by_style(train_cnn(train, args.cnn_steps), sets)
        models["small CNN from scratch (supervised)"] = {"kind": "supervised", "per_style": cnn, "summary": summarise(cnn)}
        args.out.mkdir(parents=True, exist_ok=True)
        results = {"command": "python -m clipworks.experiments.robustness " + " ".join(argv or sys.argv[1:]),
                   "n": args.n, "train_images": args.train_images, "cnn_steps": args.cnn_steps,
                   "seconds": time.perf_counter() - t0, "models": models}
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        figure(results, args.out)
        print(write_report(results, args.out).read_text())
        return 0

    return report_errors(run, args)


if __name__ == "__main__":
    sys.exit(main())
