"""Batched, normalised embeddings of images and texts (the one place evaluation code embeds things)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from clipworks.errors import ConfigError
from clipworks.model.clip import CLIP


def autocast_context(model: CLIP, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` (torch.float16 or torch.bfloat16) on the model's device, or nothing for None."""
    if dtype is None:
        return contextlib.nullcontext()
    if dtype not in (torch.float16, torch.bfloat16):
        raise ConfigError(f"autocast: the dtype must be torch.float16 or torch.bfloat16, got {dtype}")
    return torch.autocast(model.device.type, dtype=dtype)


@torch.inference_mode()
def embed_images(model: CLIP, preprocess: Callable[[Image.Image], torch.Tensor], images: Sequence[Image.Image],
                 batch_size: int = 256, normalize: bool = True, progress: bool = False,
                 autocast: torch.dtype | None = None) -> torch.Tensor:
    """Image embeddings [N, D] (float32) on the CPU, L2-normalised unless `normalize=False`; `autocast` computes
    them in torch.float16 or torch.bfloat16."""
    from tqdm import tqdm

    out = []
    starts = range(0, len(images), batch_size)
    for i in tqdm(starts, desc="images", unit="batch", disable=not progress or len(starts) <= 1):
        pixels = torch.stack([preprocess(im) for im in images[i:i + batch_size]]).to(model.device)
        with autocast_context(model, autocast):
            features = model.encode_image(pixels)
        out.append(_finish(features, normalize))
    return torch.cat(out) if out else torch.empty(0, model.config.embed_dim)


@torch.inference_mode()
def embed_texts(model: CLIP, tokenizer: Callable[[list[str]], torch.Tensor], texts: Sequence[str],
                batch_size: int = 256, normalize: bool = True, autocast: torch.dtype | None = None) -> torch.Tensor:
    """Text embeddings [N, D] (float32) on the CPU, L2-normalised unless `normalize=False`; `autocast` computes
    them in torch.float16 or torch.bfloat16."""
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[i:i + batch_size])).to(model.device)
        with autocast_context(model, autocast):
            features = model.encode_text(tokens)
        out.append(_finish(features, normalize))
    return torch.cat(out) if out else torch.empty(0, model.config.embed_dim)


def _finish(features: torch.Tensor, normalize: bool) -> torch.Tensor:
    features = features.float()  # normalised in float32, so half-precision features keep unit length exactly
    return (torch.nn.functional.normalize(features, dim=-1) if normalize else features).cpu()
