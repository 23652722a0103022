"""VQA items as tensors: images rendered once at the model's input size (uint8, cached on disk), question
token ids and answer indices; and the grid features of a frozen encoder, computed once and cached."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipworks.vqa.questions import ANSWERS, VQADataset


@dataclass
class VQATensors:
    images: np.ndarray  # [N, H, W, 3] uint8
    questions: list[str]
    answers: list[str]
    types: list[str]


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def render_items(size: int, seed: int, split: str, image_size: int, cache_dir: Path | None = None,
                 progress: bool = True) -> VQATensors:
    """The first `size` items of VQADataset(seed, split) rendered at `image_size`, cached in `cache_dir`."""
    from tqdm import tqdm

    path = cache_dir / f"vqa-{_key(size, seed, split, image_size)}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        return VQATensors(z["images"], meta["questions"], meta["answers"], meta["types"])
    data = VQADataset(size, seed=seed, split=split, image_size=image_size)
    images = np.empty((size, image_size, image_size, 3), dtype=np.uint8)
    questions, answers, types = [], [], []
    for i in tqdm(range(size), desc=f"VQA {split} items", unit="item", disable=not progress):
        item = data[i]
        images[i] = np.asarray(item.image.convert("RGB"))
        questions.append(item.question.text)
        answers.append(item.question.answer)
        types.append(item.question.type)
    out = VQATensors(images, questions, answers, types)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images=images, meta=json.dumps({"questions": questions, "answers": answers, "types": types}))
        tmp.replace(path)
    return out


def to_input(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 [B, H, W, 3] at the model's input size -> normalised float [B, 3, H, W] (what the CLIP
    transform gives for an image already at that size)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def answer_index(answers: list[str], vocabulary: Sequence[str] = ANSWERS) -> torch.Tensor:
    """Each answer's index in the answer vocabulary."""
    lookup = {a: i for i, a in enumerate(vocabulary)}
    return torch.tensor([lookup[a] for a in answers], dtype=torch.long)


@torch.no_grad()
def grid_cache(model, tensors: VQATensors, cache_path: Path | None, batch_size: int = 256,
               progress: bool = True) -> torch.Tensor:
    """Grid features [N, cells, C] (float16) of a frozen encoder for every item, computed once."""
    from tqdm import tqdm

    if cache_path is not None and cache_path.exists():
        return torch.from_numpy(np.load(cache_path))
    parts = []
    mean, std = model.normalisation()
    model.eval()
    for start in tqdm(range(0, len(tensors.images), batch_size), desc="grid features", unit="batch", disable=not progress):
        parts.append(model.grid(to_input(tensors.images[start:start + batch_size], mean, std)).half())
    grid = torch.cat(parts)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp.npy")
        np.save(tmp, grid.numpy())
        tmp.replace(cache_path)
    return grid
