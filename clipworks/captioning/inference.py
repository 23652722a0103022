"""Caption images with a ClipCap captioner: from CLIP embeddings, from PIL images, and as the `describe(image)`
function that search's CLI and server hand to the search engine."""

from __future__ import annotations

import threading
from typing import Any

import torch

from clipworks.captioning.model import ClipCap, load_captioner
from clipworks.errors import InputFileError


def check_clip(captioner: ClipCap, clip) -> None:
    """A captioner reads the embeddings of one CLIP model; a CLIP model of another width is a clear error."""
    if clip.config.embed_dim != captioner.config.clip_dim:
        raise InputFileError(f"the captioner was made for CLIP embeddings of width {captioner.config.clip_dim} "
                             f"({captioner.config.clip_model!r}), but this CLIP model gives {clip.config.embed_dim}")


@torch.inference_mode()
def caption_embeddings(captioner: ClipCap, embeddings: torch.Tensor, method: str = "beam", beam_width: int = 3,
                       max_tokens: int = 24, top_p: float = 0.9, batch_size: int = 64, seed: int = 0) -> list[str]:
    """Captions for CLIP image embeddings [N, D], decoded `batch_size` at a time."""
    from clipworks.captioning.decoding import decode, generate
    from clipworks.captioning.tokenizer import gpt2_tokenizer

    device = next(captioner.parameters()).device
    ids: list[list[int]] = []
    for start in range(0, embeddings.shape[0], batch_size):
        chunk = embeddings[start:start + batch_size].to(device, torch.float32)
        ids += generate(captioner, chunk, method=method, max_tokens=max_tokens, beam_width=beam_width, top_p=top_p,
                        seed=seed + start)
    return decode(gpt2_tokenizer(), ids)


def caption_images(images: list, captioner: ClipCap | str = "default", clip=None, preprocess=None,
                   **decoding: Any) -> list[str]:
    """Captions for PIL images: the captioner's own CLIP model embeds them unless `clip`/`preprocess` are given."""
    from clipworks.evaluation.features import embed_images
    from clipworks.model.factory import create_model

    if isinstance(captioner, str):
        captioner = load_captioner(captioner)
    if clip is None:
        clip, preprocess = create_model(captioner.config.clip_model, device=next(captioner.parameters()).device)
    check_clip(captioner, clip)
    return caption_embeddings(captioner, embed_images(clip, preprocess, images), **decoding)


class Describer:
    """`describe(image) -> caption`, for search: the captioner and the CLIP model it reads load on the first call.
    `shared` = (name, model, preprocess) of a CLIP model already in memory (a store's), used when the captioner
    reads that model instead of loading a second copy."""

    def __init__(self, captioner: str = "default", device: str | torch.device | None = None,
                 shared: tuple[str, Any, Any] | None = None, **decoding: Any) -> None:
        self.captioner_name, self.device, self.shared, self.decoding = captioner, device, shared, decoding
        self._loaded: tuple[ClipCap, Any, Any] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[ClipCap, Any, Any]:
        with self._lock:
            if self._loaded is None:
                from clipworks.model.factory import create_model, default_device

                shared_name, clip, preprocess = self.shared or (None, None, None)
                device = next(clip.parameters()).device if clip is not None else self.device or default_device()
                captioner = load_captioner(self.captioner_name, device=device)
                if captioner.config.clip_model != shared_name:
                    clip, preprocess = create_model(captioner.config.clip_model, device=device)
                check_clip(captioner, clip)
                self._loaded = (captioner, clip, preprocess)
            return self._loaded

    def __call__(self, image) -> str:
        captioner, clip, preprocess = self._load()
        return caption_images([image], captioner, clip, preprocess, **self.decoding)[0]
