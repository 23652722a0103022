"""Evaluating video models: text<->video retrieval (R@1/5/10, median and mean rank) and action recognition by
matching videos against label prompts (each template's softmax averaged, as ActionCLIP tests), zero-shot or
trained; and classifying one video file against labels a user gives."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipworks.evaluation.retrieval import retrieval_from_scores
from clipworks.video.data import VideoTensors
from clipworks.video.model import VideoCLIP


@torch.no_grad()
def frame_features(model: VideoCLIP, data: VideoTensors, batch: int = 64) -> torch.Tensor:
    """Frame embeddings [N, T, D] of every clip."""
    model.eval()
    return torch.cat([model.frame_features(data.trunk[i:i + batch].float()) for i in range(0, len(data), batch)])


@torch.no_grad()
def text_features(model: VideoCLIP, texts: Sequence[str], batch: int = 256) -> torch.Tensor:
    from clipworks.model.factory import get_tokenizer

    model.eval()
    tokenizer = get_tokenizer(model.clip)
    return torch.cat([model.encode_text(tokenizer(list(texts[i:i + batch]))) for i in range(0, len(texts), batch)])


@torch.no_grad()
def scores(model: VideoCLIP, texts: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N_text, N_video] scores, in blocks of texts so that tightTransf's pairwise pass fits in memory."""
    model.eval()
    block = 64 if model.cross is not None else len(texts)
    return torch.cat([model.logits(texts[i:i + block], frames, mask) for i in range(0, len(texts), max(block, 1))])


def video_retrieval(model: VideoCLIP, data: VideoTensors, caption: int = 0) -> dict[str, float]:
    """Text->video and video->text retrieval with each clip's `caption`-th caption as its query."""
    frames = frame_features(model, data)
    texts = text_features(model, [c[caption] for c in data.captions])
    metrics = retrieval_from_scores(scores(model, texts, frames, data.mask).t(), torch.arange(len(data)))
    return {k.replace("image", "video"): v for k, v in metrics.items()}


def label_probabilities(model: VideoCLIP, frames: torch.Tensor, mask: torch.Tensor, labels: Sequence[str],
                        templates: Sequence[str]) -> torch.Tensor:
    """[N_video, C]: softmax over the labels for each template's prompts, averaged over the templates."""
    prompts = [t.format(label) for t in templates for label in labels]
    logits = scores(model, text_features(model, prompts), frames, mask)  # [K*C, N]
    per_template = logits.view(len(templates), len(labels), -1).permute(0, 2, 1)  # [K, N, C]
    return per_template.softmax(dim=-1).mean(0)


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


def classify_video(model: VideoCLIP, path: str | Path, labels: Sequence[str],
                   templates: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """(label, probability) for one video file or frame folder, best first."""
    from clipworks.video.decode import read_video
    from clipworks.video.model import preprocess_frames

    if not labels:
        raise ValueError("give at least one label")
    templates = templates or model.config.templates or ("{}", "a video of {}")
    video = read_video(path, model.config.num_frames)
    with torch.no_grad():
        frames = model.encode_frames(preprocess_frames(model, video.frames[None]))
    probs = label_probabilities(model, frames, torch.from_numpy(video.mask)[None], labels, templates)[0]
    order = np.argsort(-probs.numpy())
    return [(labels[i], float(probs[i])) for i in order]
