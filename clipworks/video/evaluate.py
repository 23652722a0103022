"""Evaluating video models: text<->video retrieval (R@1/5/10, median and mean rank) and action recognition by
matching videos against label prompts, zero-shot or trained (the scoring itself is in `inference.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from clipworks.evaluation.retrieval import retrieval_from_scores
from clipworks.video.data import VideoTensors
from clipworks.video.inference import frame_features, label_probabilities, scores, text_features
from clipworks.video.model import VideoCLIP


def video_retrieval(model: VideoCLIP, data: VideoTensors, caption: int = 0) -> dict[str, float]:
    """Text->video and video->text retrieval with each clip's `caption`-th caption as its query."""
    frames = frame_features(model, data)
    texts = text_features(model, [c[caption] for c in data.captions])
    metrics = retrieval_from_scores(scores(model, texts, frames, data.mask).t(), torch.arange(len(data)))
    return {k.replace("image", "video"): v for k, v in metrics.items()}


def action_accuracy(model: VideoCLIP, data: VideoTensors, labels: Sequence[str], templates: Sequence[str],
                    ks: Sequence[int] = (1, 5)) -> dict[str, Any]:
    """Top-k accuracy of classifying each clip among `labels`, and per-class top-1."""
    probs = label_probabilities(model, frame_features(model, data), data.mask, labels, templates)
    index = {label: k for k, label in enumerate(labels)}
    missing = sorted({label for label in data.labels if label not in index})
    if missing:
        raise ValueError(f"clips carry labels outside the class set: {missing[:3]}")
    truth = torch.tensor([index[label] for label in data.labels])
    order = probs.argsort(dim=1, descending=True)
    out: dict[str, Any] = {"videos": len(data), "classes": len(labels), "chance_top1": 1 / len(labels)}
    for k in ks:
        out[f"top{k}"] = (order[:, :min(k, len(labels))] == truth[:, None]).any(dim=1).float().mean().item()
    out["per_class_top1"] = {label: (order[truth == c, 0] == c).float().mean().item()
                             for c, label in enumerate(labels) if (truth == c).any()}
    return out


def evaluate_world(model: VideoCLIP, size: int = 1000, style_sets: Sequence[str] = ("train", "heldout"), seed: int = 1,
                   cache_dir=None, progress: bool = True) -> dict[str, Any]:
    """Per style set, on `size` new clips of the seen actions (the world's train split at `seed`, groups of 4 that
    differ only in the main action): action top-1/top-5 among the seen actions, by the model's templates, and
    text->video retrieval querying each clip's full caption."""
    from clipworks.video.data import world_tensors
    from clipworks.video.world import ACTION_TEMPLATES, TRAIN_ACTIONS

    templates = model.config.templates or ACTION_TEMPLATES
    out: dict[str, Any] = {}
    for styles in style_sets:
        data = world_tensors(model, size, seed=seed, split="train", cache_dir=cache_dir, progress=progress,
                             styles=styles)
        out[f"{styles}_styles"] = {"clips": len(data),
                                   "actions_seen": action_accuracy(model, data, TRAIN_ACTIONS, templates),
                                   "retrieval": video_retrieval(model, data)}
    return out
