"""Zero-shot classification: class names x prompt templates -> averaged, re-normalised text embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipworks.errors import InputFileError
from clipworks.evaluation.features import embed_texts
from clipworks.model.clip import CLIP


def template_names() -> list[str]:
    """Template sets shipped in clipworks/evaluation/templates (a .txt file with one '{}' template a line)."""
    folder = resources.files("clipworks.evaluation") / "templates"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))


def load_templates(name: str) -> list[str]:
    """A shipped template set by name ('plain', 'photo', 'ensemble', 'digits', ...) or a file of templates."""
    if name in template_names():
        text = (resources.files("clipworks.evaluation") / "templates" / f"{name}.txt").read_text(encoding="utf-8")
        source = f"template set {name!r}"
    elif Path(name).is_file():
        text, source = Path(name).read_text(encoding="utf-8"), name
    else:
        raise InputFileError(f"unknown template set {name!r}: choose one of {', '.join(template_names())} or give a file")
    templates = [line.rstrip("\n") for line in text.splitlines() if line.strip()]
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise InputFileError(f"{source}: every line must hold exactly one '{{}}'" + (f"; not {bad[0]!r}" if bad else ""))
    return templates


def build_classifier(model: CLIP, tokenizer: Callable, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """[D, C] weights: for each class, the normalised mean of its normalised prompt embeddings (ensembling)."""
    prompts = [t.format(c) for c in classnames for t in templates]
    emb = embed_texts(model, tokenizer, prompts).view(len(classnames), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1).t()


def candidate_logits(model: CLIP, tokenizer: Callable, image_features: torch.Tensor,
                     prompts: Sequence[Sequence[str]]) -> torch.Tensor:
    """[N, K] scores of each image against its own K candidate texts."""
    k = len(prompts[0])
    if any(len(p) != k for p in prompts):
        raise ValueError("every image needs the same number of candidate texts")
    text = embed_texts(model, tokenizer, [t for p in prompts for t in p]).view(len(prompts), k, -1)
    return torch.einsum("nd,nkd->nk", image_features, text)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, topk: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (k capped at the number of classes) and mean per-class recall (balanced accuracy) of
    argmax(logits), as CLIP_benchmark defines them."""
    result = {}
    for k in topk:
        top = logits.topk(min(k, logits.shape[1]), dim=1).indices
        result[f"top{k}"] = (top == labels[:, None]).any(dim=1).double().mean().item()
    pred = logits.argmax(dim=1)
    per_class = [(pred[labels == c] == c).double().mean().item() for c in labels.unique()]
    result["mean_per_class_recall"] = float(np.mean(per_class))
    return result


def accuracy(image_features: torch.Tensor, classifier: torch.Tensor, labels: torch.Tensor,
             topk: Sequence[int] = (1, 5)) -> dict[str, float]:
    """`classification_metrics` of image features against a [D, C] classifier."""
    return classification_metrics(image_features @ classifier, labels, topk)


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, n_classes: int) -> np.ndarray:
    """[true, predicted] counts."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels.numpy(), pred.numpy()), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, classnames: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(classnames) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classnames)), classnames, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classnames)), classnames, fontsize=8)
    if len(classnames) <= 20:
        for (i, j), v in np.ndenumerate(rates):
            if matrix[i, j]:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
