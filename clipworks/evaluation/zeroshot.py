"""Zero-shot classification: class names x prompt templates -> averaged, re-normalised text embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from clipworks.evaluation.features import embed_texts
from clipworks.model.clip import CLIP


def build_classifier(model: CLIP, tokenizer: Callable, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """[D, C] weights: for each class, the normalised mean of its normalised prompt embeddings (ensembling)."""
    prompts = [t.format(c) for c in classnames for t in templates]
    emb = embed_texts(model, tokenizer, prompts).view(len(classnames), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1).t()


def accuracy(image_features: torch.Tensor, classifier: torch.Tensor, labels: torch.Tensor,
             topk: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy and mean per-class recall of argmax(image @ classifier)."""
    logits = image_features @ classifier
    result = {}
    for k in topk:
        k = min(k, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        result[f"top{k}"] = (top == labels[:, None]).any(dim=1).float().mean().item()
    pred = logits.argmax(dim=1)
    per_class = [(pred[labels == c] == c).float().mean().item() for c in labels.unique()]
    result["mean_per_class_recall"] = float(sum(per_class) / len(per_class))
    return result
