"""Video inference: frame and text features, text-video scores, label probabilities (each template's softmax
averaged, as ActionCLIP tests) and classifying one video file against labels a user gives."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

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


def label_probabilities(model: VideoCLIP, frames: torch.Tensor, mask: torch.Tensor, labels: Sequence[str],
                        templates: Sequence[str]) -> torch.Tensor:
    """[N_video, C]: softmax over the labels for each template's prompts, averaged over the templates."""
    prompts = [t.format(label) for t in templates for label in labels]
    logits = scores(model, text_features(model, prompts), frames, mask)  # [K*C, N]
    per_template = logits.view(len(templates), len(labels), -1).permute(0, 2, 1)  # [K, N, C]
    return per_template.softmax(dim=-1).mean(0)


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
