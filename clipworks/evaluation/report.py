"""Merge result JSON files (from `clipworks eval`) into one Markdown table and plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HEADLINE = {
    "zeroshot": ("top1", "top5", "mean_per_class_recall"),
    "probe": ("top1", "top5", "mean_per_class_recall"),
    "retrieval": ("text_to_image_R@1", "text_to_image_R@5", "text_to_image_R@10",
                  "image_to_text_R@1", "image_to_text_R@5", "image_to_text_R@10"),
}
REQUIRED = ("task", "model", "data", "metrics")


def read_result(path: str | Path) -> dict[str, Any]:
    """One result record; ValueError naming the problem when it is not one."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read it ({exc.__class__.__name__}: {exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError("not a result record (expected a JSON object)")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"not a result record (missing {', '.join(missing)})")
    if not isinstance(record["metrics"], dict):
        raise ValueError("'metrics' is not an object")
    return record


def _headline(record: dict[str, Any]) -> list[tuple[str, float]]:
    metrics = record["metrics"]
    if record["task"] == "fewshot":
        ks = sorted(int(k.split("shot")[0]) for k in metrics if k.endswith("shot_top1"))
        return [(f"{k}-shot top1", metrics[f"{k}shot_top1"]) for k in ks]
    keys = HEADLINE.get(record["task"], tuple(metrics))
    return [(k, metrics[k]) for k in keys if isinstance(metrics.get(k), (int, float))]


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """One row per result: task, model, data, then its headline metrics as 'name value' pairs."""
    lines = ["| task | model | data | metrics |", "|---|---|---|---|"]
    for r in records:
        cells = ", ".join(f"{name} {value:.3f}" for name, value in _headline(r))
        if r["task"] == "fewshot":
            stds = r["metrics"]
            cells = ", ".join(f"{name} {value:.3f}±{stds.get(name.split('-')[0] + 'shot_top1_std', 0):.3f}"
                              for name, value in _headline(r))
        lines.append(f"| {r['task']} | {r['model']} | {r['data']} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_results(records: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """A bar chart of each result's first headline metric, and few-shot curves (with zero-shot levels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    bars = [(f"{r['task']}\n{r['data']}\n{Path(str(r['model'])).name}", _headline(r)[0]) for r in records
            if r["task"] != "fewshot" and _headline(r)]
    if bars:
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(bars)), 4))
        ax.bar(range(len(bars)), [v for _, (_, v) in bars], color="tab:blue")
        ax.set_xticks(range(len(bars)), [label for label, _ in bars], fontsize=7)
        for i, (_, (name, v)) in enumerate(bars):
            ax.text(i, v, f"{v:.2f}\n{name}", ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, 1.15)
        ax.set_ylabel("headline metric")
        fig.tight_layout()
        paths.append(out_dir / "results.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    curves = [r for r in records if r["task"] == "fewshot" and isinstance(r.get("details", {}).get("shots"), dict)]
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in curves:
            shots = r["details"]["shots"]
            ks = sorted(shots, key=int)
            mean = [shots[k]["top1_mean"] for k in ks]
            std = [shots[k]["top1_std"] for k in ks]
            line = ax.errorbar([int(k) for k in ks], mean, yerr=std, marker="o", capsize=3,
                               label=f"{r['data']} / {Path(str(r['model'])).name}")
            for z in records:
                if z["task"] == "zeroshot" and z["data"] == r["data"] and z["model"] == r["model"]:
                    ax.axhline(z["metrics"]["top1"], ls="--", color=line[0].get_color(), label=f"zero-shot {z['data']}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training images per class")
        ax.set_ylabel("top-1")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out_dir / "fewshot.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def merge(paths: Sequence[str | Path], out_dir: str | Path) -> tuple[str, list[str]]:
    """Write report.md (+ plots) from the readable results; returns (the table, 'path: problem' errors)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, errors = [], []
    for p in paths:
        try:
            records.append(read_result(p))
        except ValueError as exc:
            errors.append(f"{p}: {exc}")
    table = markdown_table(records) if records else "(no readable results)\n"
    plots = plot_results(records, out) if records else []
    body = ["# clipworks evaluation report", "", table]
    body += [f"![{p.stem}]({p.name})" for p in plots]
    if errors:
        body += ["", "## Not merged", ""] + [f"- {e}" for e in errors]
    (out / "report.md").write_text("\n".join(body) + "\n", encoding="utf-8")
    return table, errors
