"""The CLIP paper's claims, measured on our own worlds: one command writes a Markdown report with figures.

    clipworks eval claims --out reports/claims          (about 15 minutes on 2 CPU cores)

1. Prompt engineering and prompt ensembling raise zero-shot accuracy over bare class names.
2. A linear probe on CLIP features overtakes zero-shot as shots grow; where the curves cross.
3. The contrastive objective learns zero-shot-usable features faster than predicting the caption's bag of
   words, with the same image tower, data and budget (the paper's efficiency figure).
4. Where zero-shot fails: counting, fine-grained distinctions, out-of-distribution digits.

Claims 1, 2 and 4 use the given model (the shipped default unless told); claim 3 trains two small models.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clipworks.evaluation.datasets import load_classification
from clipworks.evaluation.features import embed_images
from clipworks.evaluation.probe import few_shot, linear_probe
from clipworks.evaluation.tasks import probe_features, zero_shot_logits
from clipworks.evaluation.zeroshot import build_classifier, classification_metrics, load_templates

PROMPT_DATA = ("world-shape", "world-colour", "world-size", "world-count", "digits")
FEWSHOT_DATA = ("world-shape", "world-colour", "digits")
FAILURE_DATA = (("counting", "world-count"), ("relations (left/right/above/below)", "world-relation"),
                ("size (small/medium/large)", "world-size"), ("out-of-distribution digits", "digits"),
                ("shape on unseen colour-shape pairs", "world-shape"), ("colour", "world-colour"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------- claim 1: prompts


def prompt_claim(model, preprocess, tokenizer, n: int) -> dict[str, dict[str, float]]:
    """Zero-shot top-1 per data set with bare names, one generic prompt, one engineered prompt, an ensemble."""
    out = {}
    for name in PROMPT_DATA:
        ds = load_classification(name, split="eval", n=n)
        feats = embed_images(model, preprocess, ds.images)
        labels = torch.from_numpy(ds.labels)
        own = load_templates(ds.templates)
        sets = {"bare name": ["{}"], "'a photo of a {}.'": ["a photo of a {}."],
                "engineered (one)": own[:1], "ensemble (own set)": own,
                "ensemble (own + generic)": own + load_templates("ensemble")}
        out[name] = {label: classification_metrics(feats @ build_classifier(model, tokenizer, ds.classnames, t),
                                                   labels)["top1"] for label, t in sets.items()}
        out[name]["engineered prompt"] = own[0]
    return out


# ---------------------------------------------------------------- claim 2: probe vs zero-shot


def probe_claim(model, preprocess, tokenizer, n: int, shots: tuple[int, ...], seeds: int) -> dict[str, Any]:
    out = {}
    for name in FEWSHOT_DATA:
        train, xtr, test, xte = probe_features(model, preprocess, name, n)
        logits, _ = zero_shot_logits(model, tokenizer, torch.from_numpy(xte).float(), test)
        zs = classification_metrics(logits, torch.from_numpy(test.labels))["top1"]
        curve = few_shot(xtr, train.labels, xte, test.labels, len(test.classnames), shots=shots, seeds=tuple(range(seeds)))
        full = linear_probe(xtr, train.labels, xte, test.labels, len(test.classnames))
        crossing = next((int(k) for k, v in curve.items() if v["top1_mean"] >= zs), None)
        out[name] = {"zero_shot": zs, "few_shot": {k: [v["top1_mean"], v["top1_std"]] for k, v in curve.items()},
                     "full_probe": full["metrics"]["top1"], "n_train": len(train.labels),
                     "n_classes": len(test.classnames), "crossing_shots": crossing}
    return out


def _interpolated_crossing(curve: dict[str, list[float]], zs: float) -> float | None:
    """Shots (log-linear interpolation) at which the few-shot mean reaches the zero-shot accuracy."""
    ks = sorted(curve, key=int)
    if curve[ks[0]][0] >= zs:
        return float(ks[0])
    for a, b in zip(ks, ks[1:]):
        ya, yb = curve[a][0], curve[b][0]
        if ya < zs <= yb:
            t = (zs - ya) / (yb - ya)
            return float(2 ** (math.log2(int(a)) + t * (math.log2(int(b)) - math.log2(int(a)))))
    return None


# ---------------------------------------------------------------- claim 3: contrastive vs predictive


class BagOfWords(nn.Module):
    """The predictive baseline: the same image tower, then a linear layer predicting the caption's tokens."""

    def __init__(self, visual: nn.Module, embed_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.visual = visual
        self.head = nn.Linear(embed_dim, vocab_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.visual(images))


def bag_of_words_targets(tokens: torch.Tensor, vocab_size: int, special: tuple[int, ...]) -> torch.Tensor:
    """[B, V] each caption's token counts, normalised to sum 1 (special and padding tokens left out)."""
    counts = torch.zeros(tokens.shape[0], vocab_size)
    counts.scatter_add_(1, tokens, torch.ones_like(tokens, dtype=torch.float32))
    counts[:, list(special)] = 0
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1)


def _bow_zero_shot(model: BagOfWords, tokenizer, images: torch.Tensor, classnames: list[str]) -> torch.Tensor:
    """[N, C] scores: the mean predicted log-probability of each class name's tokens."""
    with torch.inference_mode():
        logp = F.log_softmax(model(images), dim=-1)
    ids = [tokenizer.encode(c) for c in classnames]
    return torch.stack([logp[:, i].mean(dim=1) for i in ids], dim=1)


def efficiency_claim(steps: int, batch_size: int, eval_every: int, n_eval: int, seed: int = 0,
                     progress: bool = True) -> dict[str, Any]:
    """Train RN-Tiny-64 contrastively and as a bag-of-words predictor on identical batches; zero-shot
    shape and colour accuracy (seen pairs) against images seen."""
    from clipworks.data.world import WorldDataset
    from clipworks.model.factory import create_model, get_tokenizer
    from clipworks.model.transforms import image_transform
    from clipworks.training.contrastive import clamp_logit_scale, param_groups
    from clipworks.training.data import BatchPlan, batches
    from clipworks.training.loss import ClipLoss
    from clipworks.training.run import train_steps

    torch.manual_seed(seed)
    clip, preprocess = create_model("RN-Tiny-64", device="cpu")
    torch.manual_seed(seed)
    twin, _ = create_model("RN-Tiny-64", device="cpu")
    tokenizer = get_tokenizer(clip)
    bow = BagOfWords(twin.image_tower, clip.config.embed_dim, tokenizer.vocab_size)
    bow.visual.load_state_dict(clip.image_tower.state_dict())  # identical starting image tower
    special = (0, tokenizer.sot_token_id, tokenizer.eot_token_id)
    loss_fn = ClipLoss()
    data = WorldDataset(max(steps * batch_size, 10000), seed=seed, grayscale=0.5)
    plan = BatchPlan(len(data), batch_size, seed)
    transform = image_transform(clip.config.preprocess, train=True)

    evals = {t: load_classification(t, split="train", n=n_eval) for t in ("world-shape", "world-colour")}
    eval_pixels = {t: torch.stack([preprocess(im) for im in ds.images]) for t, ds in evals.items()}

    def evaluate(name: str) -> dict[str, float]:
        model = clip if name == "contrastive" else bow
        model.eval()
        row = {}
        for t, ds in evals.items():
            labels = torch.from_numpy(ds.labels)
            if name == "contrastive":
                with torch.inference_mode():
                    feats = F.normalize(clip.encode_image(eval_pixels[t]), dim=-1)
                clf = build_classifier(clip, tokenizer, ds.classnames, load_templates(ds.templates))
                row[t] = classification_metrics(feats @ clf, labels)["top1"]
            else:
                row[t] = classification_metrics(_bow_zero_shot(bow, tokenizer, eval_pixels[t], ds.classnames), labels)["top1"]
        model.train()
        return row

    def contrastive_loss(batch) -> torch.Tensor:
        return loss_fn(clip.encode_image(batch.images, normalize=True), clip.encode_text(batch.tokens, normalize=True),
                       clip.logit_scale)

    def bow_loss(batch) -> torch.Tensor:
        target = bag_of_words_targets(batch.tokens, tokenizer.vocab_size, special)
        return -(target * F.log_softmax(bow(batch.images), dim=-1)).sum(dim=1).mean()

    # The two models train one after the other on the same batches (each a pure function of the step).
    curve = {0: {"step": 0, "images": 0}}
    losses: dict[str, list[float]] = {"contrastive": [], "bag of words": []}
    times = {"contrastive": 0.0, "bag of words": 0.0}
    for name, model, loss_of in (("contrastive", clip, contrastive_loss), ("bag of words", bow, bow_loss)):
        curve[0][name] = evaluate(name)
        stream = batches(data, plan, 0, steps, transform, tokenizer)
        started = 0.0

        def step(_: int) -> torch.Tensor:
            nonlocal started
            batch = next(stream)
            started = time.perf_counter()  # the step's compute, not its data loading or the evaluations
            loss = loss_of(batch)
            loss.backward()
            losses[name].append(loss.item())
            return loss

        def after_step(done: int) -> None:
            if name == "contrastive":
                clamp_logit_scale(clip)
            times[name] += time.perf_counter() - started
            if done % eval_every == 0 or done == steps:
                curve.setdefault(done, {"step": done, "images": done * batch_size})[name] = evaluate(name)

        optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
        train_steps(model, optimizer, step, None, steps=steps, warmup=max(steps // 10, 1), config={},
                    batch_size=batch_size, clip_params=model.parameters(), after_step=after_step,
                    desc=f"claim 3: {name}", progress=progress)
    return {"steps": steps, "batch_size": batch_size, "curve": [curve[k] for k in sorted(curve)],
            "train_seconds": times, "final_loss": {k: float(np.mean(v[-10:])) for k, v in losses.items()}}


# ---------------------------------------------------------------- claim 4: failures


def failure_claim(model, preprocess, tokenizer, n: int) -> list[dict[str, Any]]:
    rows = []
    for label, name in FAILURE_DATA:
        train, xtr, test, xte = probe_features(model, preprocess, name, n)
        logits, _ = zero_shot_logits(model, tokenizer, torch.from_numpy(xte).float(), test)
        zs = classification_metrics(logits, torch.from_numpy(test.labels))["top1"]
        probe = linear_probe(xtr, train.labels, xte, test.labels, len(test.classnames))
        rows.append({"what": label, "data": name, "zero_shot": zs, "linear_probe": probe["metrics"]["top1"],
                     "chance": 1.0 / len(test.classnames), "classes": len(test.classnames)})
    return rows


# ---------------------------------------------------------------- report


def _figures(results: dict[str, Any], out: Path) -> list[str]:
    plt = _plt()
    names: list[str] = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        names.append(name)

    # claim 1
    prompts = results["prompts"]
    labels = [k for k in next(iter(prompts.values())) if k != "engineered prompt"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(labels)
    for j, lab in enumerate(labels):
        ax.bar(np.arange(len(prompts)) + j * width, [prompts[d][lab] for d in prompts], width, label=lab)
    ax.set_xticks(np.arange(len(prompts)) + 0.4 - width / 2, list(prompts))
    ax.set_ylabel("zero-shot top-1")
    ax.legend(fontsize=7)
    ax.set_title("Claim 1: prompts")
    save(fig, "claim1_prompts.png")
    # claim 2
    probe = results["probe"]
    fig, axes = plt.subplots(1, len(probe), figsize=(4 * len(probe), 3.5))
    for ax, (d, r) in zip(np.atleast_1d(axes), probe.items()):
        ks = sorted(r["few_shot"], key=int)
        line = ax.errorbar([int(k) for k in ks], [r["few_shot"][k][0] for k in ks],
                           yerr=[r["few_shot"][k][1] for k in ks], marker="o", capsize=3, label="linear probe (k-shot)")
        ax.axhline(r["zero_shot"], color="tab:red", ls="--", label="zero-shot")
        ax.axhline(r["full_probe"], color=line[0].get_color(), ls=":", label=f"probe, all {r['n_train']}")
        ax.set_xscale("log", base=2)
        ax.set_title(d)
        ax.set_xlabel("images per class")
        ax.set_ylim(0, 1.02)
    np.atleast_1d(axes)[0].set_ylabel("top-1")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle("Claim 2: few-shot linear probe vs zero-shot")
    save(fig, "claim2_fewshot.png")
    # claim 3
    eff = results["efficiency"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, task in zip(axes, ("world-shape", "world-colour")):
        for method, style in (("contrastive", "-o"), ("bag of words", "--s")):
            ax.plot([c["images"] for c in eff["curve"]], [c[method][task] for c in eff["curve"]], style, label=method)
        ax.set_title(f"zero-shot {task} (seen pairs)")
        ax.set_xlabel("images seen")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("top-1")
    axes[0].legend(fontsize=8)
    fig.suptitle("Claim 3: contrastive vs predictive objective, same image tower and batches")
    save(fig, "claim3_efficiency.png")
    # claim 4
    fails = results["failures"]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = np.arange(len(fails))
    ax.bar(x - 0.2, [f["zero_shot"] for f in fails], 0.4, label="zero-shot")
    ax.bar(x + 0.2, [f["linear_probe"] for f in fails], 0.4, label="linear probe")
    ax.scatter(x, [f["chance"] for f in fails], color="black", marker="_", s=400, label="chance", zorder=3)
    ax.set_xticks(x, [f["what"].split(" (")[0] for f in fails], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("top-1")
    ax.legend(fontsize=7)
    ax.set_title("Claim 4: where zero-shot fails")
    save(fig, "claim4_failures.png")
    return names


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def findings(results: dict[str, Any]) -> list[str]:
    """One sentence per claim, from the numbers (agreeing with the paper or not)."""
    out = []
    p = results["prompts"]
    eng = [d for d in p if p[d]["engineered (one)"] > p[d]["bare name"]]
    ens = [d for d in p if p[d]["ensemble (own set)"] > p[d]["engineered (one)"]]
    mean = {k: float(np.mean([p[d][k] for d in p])) for k in p[next(iter(p))] if k != "engineered prompt"}
    out.append(f"Claim 1 (prompts): an engineered prompt beat the bare class name on {len(eng)}/{len(p)} data sets, "
               f"and ensembling the data set's prompts beat the single engineered prompt on {len(ens)}/{len(p)}. "
               f"Mean top-1: bare {_pct(mean['bare name'])}, engineered {_pct(mean['engineered (one)'])}, "
               f"ensemble {_pct(mean['ensemble (own set)'])}, ensemble + generic {_pct(mean['ensemble (own + generic)'])}.")
    parts = []
    for d, r in results["probe"].items():
        x = _interpolated_crossing(r["few_shot"], r["zero_shot"])
        where = f"crosses at about {x:.1f} shots per class" if x is not None else "does not reach it by 16 shots"
        parts.append(f"{d}: zero-shot {_pct(r['zero_shot'])}, probe {where}, full probe {_pct(r['full_probe'])}")
    out.append("Claim 2 (probe vs zero-shot): " + "; ".join(parts) + ".")
    last = results["efficiency"]["curve"][-1]
    curve = results["efficiency"]["curve"]

    def reach(method: str, task: str, level: float) -> int | None:
        return next((c["images"] for c in curve if c[method][task] >= level), None)

    bits = []
    for task in ("world-shape", "world-colour"):
        c, b = last["contrastive"][task], last["bag of words"][task]
        level = 0.9 * max(c, b)
        rc, rb = reach("contrastive", task, level), reach("bag of words", task, level)
        def when(images: int | None) -> str:
            return "never" if images is None else f"after {images} images"

        bits.append(f"{task}: contrastive {_pct(c)} vs bag of words {_pct(b)} after {last['images']} images "
                    f"(90% of the better final level: contrastive {when(rc)}, bag of words {when(rb)})")
    out.append("Claim 3 (efficiency): " + "; ".join(bits) + ".")
    f = results["failures"]
    out.append("Claim 4 (failures), zero-shot vs linear probe vs chance: " + "; ".join(
        f"{r['what']}: {_pct(r['zero_shot'])} vs {_pct(r['linear_probe'])} vs {_pct(r['chance'])}" for r in f) + ".")
    return out


def write_report(results: dict[str, Any], out: Path) -> Path:
    _figures(results, out)  # the PNGs the Markdown below links to
    lines = ["# The CLIP paper's claims, measured on clipworks' own worlds", "",
             f"Model: `{results['model']}`. Command: `{results['command']}`. Wall time {results['wall_time_s']:.0f} s.",
             "", "## Findings", ""]
    lines += [f"{i}. {s}" for i, s in enumerate(findings(results), 1)]
    lines += ["", "## Claim 1: prompt engineering and ensembling (zero-shot top-1)", ""]
    p = results["prompts"]
    cols = [k for k in next(iter(p.values())) if k != "engineered prompt"]
    lines += ["| data | " + " | ".join(cols) + " | engineered prompt |", "|---" * (len(cols) + 2) + "|"]
    lines += [f"| {d} | " + " | ".join(_pct(r[c]) for c in cols) + f" | `{r['engineered prompt']}` |" for d, r in p.items()]
    lines += ["", "![claim 1](claim1_prompts.png)", "", "## Claim 2: few-shot linear probe vs zero-shot (top-1, mean ± std)", ""]
    ks = sorted(next(iter(results["probe"].values()))["few_shot"], key=int)
    lines += ["| data | zero-shot | " + " | ".join(f"{k}-shot" for k in ks) + " | full probe |", "|---" * (len(ks) + 3) + "|"]
    for d, r in results["probe"].items():
        lines.append(f"| {d} | {_pct(r['zero_shot'])} | " + " | ".join(
            f"{_pct(r['few_shot'][k][0])} ± {100 * r['few_shot'][k][1]:.1f}" for k in ks) + f" | {_pct(r['full_probe'])} |")
    eff = results["efficiency"]
    lines += ["", "![claim 2](claim2_fewshot.png)", "",
              f"## Claim 3: contrastive vs bag-of-words prediction ({eff['steps']} steps × {eff['batch_size']}, same "
              "RN-Tiny-64 image tower, same initial weights, same batches)", "",
              "| images seen | contrastive shape | bag-of-words shape | contrastive colour | bag-of-words colour |",
              "|---|---|---|---|---|"]
    lines += [f"| {c['images']} | {_pct(c['contrastive']['world-shape'])} | {_pct(c['bag of words']['world-shape'])} | "
              f"{_pct(c['contrastive']['world-colour'])} | {_pct(c['bag of words']['world-colour'])} |" for c in eff["curve"]]
    lines += ["", f"Training seconds: contrastive {eff['train_seconds']['contrastive']:.0f}, "
              f"bag of words {eff['train_seconds']['bag of words']:.0f}.", "", "![claim 3](claim3_efficiency.png)", "",
              "## Claim 4: where zero-shot fails", "", "| what | data | zero-shot | linear probe | chance |", "|---|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['data']} | {_pct(r['zero_shot'])} | {_pct(r['linear_probe'])} | {_pct(r['chance'])} |"
              for r in results["failures"]]
    lines += ["", "![claim 4](claim4_failures.png)", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/claims"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--quick", action="store_true", help="a small budget (smoke test; numbers not meaningful)")
    parser.add_argument("--rewrite", action="store_true", help="rewrite the report from OUT/results.json, measuring nothing")
    args = parser.parse_args(argv)
    if args.rewrite:
        results = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
        print(f"report: {write_report(results, args.out)}")
        return 0

    from clipworks.model.factory import create_model, get_tokenizer

    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    model, preprocess = create_model(args.model, device="cpu")
    tokenizer = get_tokenizer(model)
    n = 80 if args.quick else 1000
    shots, seeds = ((1, 4), 2) if args.quick else ((1, 2, 4, 8, 16), 5)
    results: dict[str, Any] = {"model": args.model,
                               "command": "clipworks eval claims" + (" --quick" if args.quick else "")}
    print("claim 1: prompts", file=sys.stderr)
    results["prompts"] = prompt_claim(model, preprocess, tokenizer, n)
    print("claim 2: few-shot probe vs zero-shot", file=sys.stderr)
    results["probe"] = probe_claim(model, preprocess, tokenizer, n, shots, seeds)
    print("claim 4: failures", file=sys.stderr)
    results["failures"] = failure_claim(model, preprocess, tokenizer, n)
    steps, batch, every, n_eval = (6, 32, 3, 60) if args.quick else (300, 128, 30, 400)
    results["efficiency"] = efficiency_claim(steps, batch, every, n_eval)
    results["wall_time_s"] = time.perf_counter() - start
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    report = write_report(results, args.out)
    print("\n".join(findings(results)))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
