"""Image<->text retrieval metrics: recall@K, mean and median rank; an image may have several captions."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def retrieval_metrics(image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: torch.Tensor,
                      ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """`text_to_image[t]` is the index of the image caption t describes. Image->text counts a hit when any of
    the image's captions is within the top K; text->image ranks the caption's own image."""
    return retrieval_from_scores(image_features @ text_features.t(), text_to_image, ks)


def retrieval_from_scores(sims: torch.Tensor, text_to_image: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """The same metrics from a score matrix [images (or videos), texts], for models that score pairs jointly."""
    n_images = sims.shape[0]
    # text -> image: rank (1-based) of the true image among all images
    true_t2i = sims[text_to_image, torch.arange(sims.shape[1])]
    t2i_rank = (sims.t() > true_t2i[:, None]).sum(dim=1) + 1
    # image -> text: best rank among the image's captions
    owner = torch.zeros_like(sims, dtype=torch.bool)
    owner[text_to_image, torch.arange(sims.shape[1])] = True
    order = sims.argsort(dim=1, descending=True)
    hit = owner.gather(1, order)
    i2t_rank = hit.float().argmax(dim=1) + 1
    has_caption = hit.any(dim=1)
    i2t_rank = i2t_rank[has_caption]
    out: dict[str, float] = {"images": float(n_images), "texts": float(sims.shape[1])}
    for name, rank in (("text_to_image", t2i_rank), ("image_to_text", i2t_rank)):
        for k in ks:
            out[f"{name}_R@{k}"] = (rank <= k).float().mean().item()
        out[f"{name}_mean_rank"] = rank.float().mean().item()
        out[f"{name}_median_rank"] = rank.float().median().item()
    return out
