"""Video inference: frame and text features, text-video scores, label probabilities (each template's softmax
averaged, as ActionCLIP tests) and classifying video files against labels a user gives: one (`classify_video`),
decoded ones in a batch (`classify_videos`), or every video of a list (`classify_rows`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from clipworks.data.tables import TableRow
from clipworks.data.types import Skipped
from clipworks.errors import InputFileError
from clipworks.video.data import VideoTensors
from clipworks.video.decode import Video
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


DEFAULT_TEMPLATES = ("{}", "a video of {}")


def prompt_features(model: VideoCLIP, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Text features [K*C, D] of every template filled with every label (template-major), for
    `label_probabilities`; computed once, they serve any number of videos."""
    return text_features(model, [t.format(label) for t in templates for label in labels])


def label_probabilities(model: VideoCLIP, frames: torch.Tensor, mask: torch.Tensor, labels: Sequence[str],
                        templates: Sequence[str], prompts: torch.Tensor | None = None) -> torch.Tensor:
    """[N_video, C]: softmax over the labels for each template's prompts, averaged over the templates
    (`prompts`: their `prompt_features`, when already computed)."""
    prompts = prompt_features(model, labels, templates) if prompts is None else prompts
    logits = scores(model, prompts, frames, mask.to(frames.device))  # [K*C, N]
    per_template = logits.view(len(templates), len(labels), -1).permute(0, 2, 1)  # [K, N, C]
    return per_template.softmax(dim=-1).mean(0)


def label_templates(model: VideoCLIP, templates: Sequence[str] | None = None) -> tuple[str, ...]:
    """The prompt templates to classify with: those given, else the model's, else DEFAULT_TEMPLATES."""
    return tuple(templates or model.config.templates or DEFAULT_TEMPLATES)


@torch.no_grad()
def classify_videos(model: VideoCLIP, videos: Sequence[Video], labels: Sequence[str],
                    templates: Sequence[str] | None = None,
                    prompts: torch.Tensor | None = None) -> list[list[tuple[str, float]]]:
    """(label, probability) for each decoded video, best first, in one forward pass (`prompts`: the labels'
    `prompt_features` under `label_templates(model, templates)`, to compute them once for many batches)."""
    from clipworks.video.model import preprocess_frames

    if not labels:
        raise ValueError("give at least one label")
    if not videos:
        return []
    model.eval()
    templates = label_templates(model, templates)
    # each video alone through the transform: files of one batch may differ in size
    frames = model.encode_frames(torch.cat([preprocess_frames(model, v.frames[None]) for v in videos]))
    mask = torch.from_numpy(np.stack([v.mask for v in videos]))
    probs = label_probabilities(model, frames, mask, labels, templates, prompts).cpu()
    order = torch.argsort(probs, dim=-1, descending=True, stable=True)
    return [[(labels[i], float(row[i])) for i in row_order.tolist()] for row, row_order in zip(probs, order)]


def classify_video(model: VideoCLIP, path: str | Path, labels: Sequence[str],
                   templates: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """(label, probability) for one video file or frame folder, best first."""
    from clipworks.video.decode import read_video

    if not labels:
        raise ValueError("give at least one label")
    return classify_videos(model, [read_video(path, model.config.num_frames)], labels, templates)[0]


VIDEO_COLUMNS = {"video": ("video", "path", "file", "filepath", "video_path")}


def read_video_list(path: str | os.PathLike) -> list[TableRow | Skipped]:
    """The videos a list names: a .txt (one path a line), or a .jsonl/.csv/.tsv with a video column (video,
    path, file, filepath or video_path)."""
    from clipworks.data.tables import LIST_EXTENSION, TABLE_EXTENSIONS, read_table_text, table_rows

    path = os.fspath(path)
    text = read_table_text(path, "video list", (LIST_EXTENSION, *TABLE_EXTENSIONS))
    rows = list(table_rows(path, text, VIDEO_COLUMNS, required=("video",)))
    if not rows:
        raise InputFileError(f"{path}: no videos listed")
    return rows


def classify_rows(model: VideoCLIP, rows: Sequence[TableRow | Skipped], folder: str | os.PathLike,
                  labels: Sequence[str], templates: Sequence[str] | None = None, batch_size: int = 8, report=None,
                  progress: bool = True) -> Iterator[dict]:
    """One JSON-ready record per row, in row order: {"video", "labels": [[label, p], ...]} best first, or
    {"video", "skipped": reason} for a video that cannot be read. Label prompts are encoded once; videos are
    decoded and classified `batch_size` at a time. Relative paths resolve against `folder`; skips go to
    `report` (a SkipReport) keyed "list:line (video)"."""
    from clipworks.data.images import skip_reason
    from clipworks.data.tables import map_rows, resolve_path
    from clipworks.video.decode import read_video

    templates = label_templates(model, templates)
    prompts = prompt_features(model, labels, templates)

    def prepare(row: TableRow | Skipped) -> tuple[dict, Video | Skipped]:
        if isinstance(row, Skipped):
            return {"video": None}, row
        video = row.values["video"]
        record = {"video": video}
        if not isinstance(video, str) or not video.strip():
            return record, Skipped(row.key, "empty video path")
        path = resolve_path(video.strip(), folder)
        try:
            return record, read_video(path, model.config.num_frames)
        except InputFileError as exc:
            return record, Skipped(row.key if row.key == video else f"{row.key} ({video})", skip_reason(exc, path))

    def infer(videos: list[Video]) -> list:
        return [[list(pair) for pair in ranked] for ranked in classify_videos(model, videos, labels, templates, prompts)]

    return map_rows(rows, prepare, infer, "labels", batch_size=batch_size, report=report, progress=progress,
                    desc="classifying", unit="video")
