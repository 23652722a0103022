"""Symmetric InfoNCE over image-text logits, exact across DDP ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for each shard and returns this rank's share.

    With it, the per-rank losses below add up to the single-process loss and DDP's gradient average is the
    single-process gradient exactly. Uses all_reduce only, so it runs on gloo (CPU) as well as NCCL.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        ctx.rank, ctx.world = dist.get_rank(), world
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(ctx.world, dim=0)[ctx.rank]


def gather_features(features: torch.Tensor) -> torch.Tensor:
    """Features of every rank (equal local batch sizes), concatenated in rank order; identity on one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features
    return _GatherWithGrad.apply(features)


class ClipLoss(nn.Module):
    """Mean of cross-entropy(image -> its text) and cross-entropy(text -> its image) over the global batch.

    On rank r of W, the loss covers this rank's rows against all columns and is scaled so that DDP's
    average of gradients over ranks equals the gradient of the global loss.

    `negative_weight` > 0 adds, for each sample with a hard negative, a two-way cross-entropy of the image
    between its caption and that caption's false twin (weighted, averaged over samples that have one), so
    the few captions that differ only in word order are not drowned among hundreds of easy columns.
    """

    def __init__(self, negative_weight: float = 0.0) -> None:
        super().__init__()
        self.negative_weight = negative_weight

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                negative_features: torch.Tensor | None = None, negative_valid: torch.Tensor | None = None) -> torch.Tensor:
        """`negative_features` (optional, one per sample, `negative_valid` saying which exist) are hard-negative
        captions: extra columns of the image->text cross-entropy, never positives, never queries."""
        all_images = gather_features(image_features)
        all_texts = gather_features(text_features)
        n_local = image_features.shape[0]
        offset = n_local * (dist.get_rank() if dist.is_available() and dist.is_initialized() else 0)
        labels = torch.arange(offset, offset + n_local, device=image_features.device)
        scale = logit_scale.exp()
        logits_per_image = scale * image_features @ all_texts.t()
        if negative_features is not None:
            all_negatives = gather_features(negative_features)
            valid = negative_valid if negative_valid is not None else torch.ones(len(negative_features), dtype=torch.bool)
            all_valid = gather_features(valid.to(negative_features.device, torch.float32)).detach() > 0.5
            negatives = (scale * image_features @ all_negatives.t()).masked_fill(~all_valid[None, :], float("-inf"))
            logits_per_image = torch.cat([logits_per_image, negatives], dim=1)
        logits_per_text = scale * text_features @ all_images.t()
        loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
        if negative_features is not None and self.negative_weight > 0:
            valid = (negative_valid if negative_valid is not None else torch.ones(n_local, dtype=torch.bool)).to(loss.device)
            pair = scale * torch.stack([(image_features * text_features).sum(-1),
                                        (image_features * negative_features).sum(-1)], dim=1)
            per_sample = F.cross_entropy(pair, torch.zeros(n_local, dtype=torch.long, device=loss.device), reduction="none")
            count, ranks = valid.sum().float(), 1
            if dist.is_available() and dist.is_initialized():  # the mean over every rank's twins, as one process
                count, ranks = count.clone(), dist.get_world_size()
                dist.all_reduce(count)
            loss = loss + self.negative_weight * ranks * (per_sample * valid).sum() / count.clamp(min=1)
        return loss
