"""VQA items as tensors: images rendered once at the model's input size (uint8, cached on disk), question
token ids and answer indices; and the grid features of a frozen encoder, computed once and cached."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipworks.cache import cached, weights_hash
from clipworks.vqa.questions import ANSWERS, VQADataset


@dataclass
class VQATensors:
    images: np.ndarray  # [N, H, W, 3] uint8
    questions: list[str]
    answers: list[str]
    types: list[str]


def render_items(size: int, seed: int, split: str, image_size: int, cache_dir: Path | None = None,
                 progress: bool = True, styles: str = "classic") -> VQATensors:
    """The first `size` items of VQADataset(seed, split, styles) rendered at `image_size`, cached in `cache_dir`."""
    from tqdm import tqdm

    def render() -> dict:
        data = VQADataset(size, seed=seed, split=split, image_size=image_size, styles=styles)
        images = np.empty((size, image_size, image_size, 3), dtype=np.uint8)
        questions, answers, types = [], [], []
        for i in tqdm(range(size), desc=f"VQA {split} items", unit="item", disable=not progress):
            item = data[i]
            images[i] = np.asarray(item.image.convert("RGB"))
            questions.append(item.question.text)
            answers.append(item.question.answer)
            types.append(item.question.type)
        return {"images": images, "questions": questions, "answers": answers, "types": types}

    key = {"size": size, "seed": seed, "split": split, "image_size": image_size}
    if styles != "classic":  # classic entries keep the key they had before styles
        key["styles"] = styles
    z = cached(cache_dir, "vqa-items", key, render)
    return VQATensors(z["images"], z["questions"], z["answers"], z["types"])


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
def grid_cache(model, tensors: VQATensors, cache_dir: Path | None, batch_size: int = 256,
               progress: bool = True) -> torch.Tensor:
    """Grid features [N, cells, C] (float16) of a frozen encoder for every item, computed once per (encoder
    weights, images, normalisation)."""
    from tqdm import tqdm

    mean, std = model.normalisation()

    def extract() -> dict[str, np.ndarray]:
        model.eval()
        parts = [model.grid(to_input(tensors.images[start:start + batch_size], mean, std)).half()
                 for start in tqdm(range(0, len(tensors.images), batch_size), desc="grid features", unit="batch",
                                   disable=not progress)]
        return {"grid": torch.cat(parts).numpy()}

    key = {"weights": weights_hash(model.image_tower), "mean": mean, "std": std,
           "images": hashlib.sha256(np.ascontiguousarray(tensors.images).data).hexdigest()}
    if model.config.grid_blocks is not None:  # the whole tower's grid keeps the key it had before
        key["blocks"] = model.config.grid_blocks
    return torch.from_numpy(cached(cache_dir, "vqa-grid", key, extract)["grid"])
