"""Batched, normalised embeddings of images and texts (the one place evaluation code embeds things)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image

from clipworks.model.clip import CLIP


@torch.inference_mode()
def embed_images(model: CLIP, preprocess: Callable[[Image.Image], torch.Tensor], images: Sequence[Image.Image],
                 batch_size: int = 256, normalize: bool = True, progress: bool = False) -> torch.Tensor:
    """Image embeddings [N, D] on the CPU, L2-normalised unless `normalize=False`."""
    from tqdm import tqdm

    out = []
    starts = range(0, len(images), batch_size)
    for i in tqdm(starts, desc="images", unit="batch", disable=not progress or len(starts) <= 1):
        pixels = torch.stack([preprocess(im) for im in images[i:i + batch_size]]).to(model.device)
        out.append(model.encode_image(pixels, normalize=normalize).float().cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.embed_dim)


@torch.inference_mode()
def embed_texts(model: CLIP, tokenizer: Callable[[list[str]], torch.Tensor], texts: Sequence[str],
                batch_size: int = 256, normalize: bool = True) -> torch.Tensor:
    """Text embeddings [N, D] on the CPU, L2-normalised unless `normalize=False`."""
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[i:i + batch_size])).to(model.device)
        out.append(model.encode_text(tokens, normalize=normalize).float().cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.embed_dim)
