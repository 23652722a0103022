"""The two video–text objectives: CLIP4Clip's symmetric InfoNCE (one positive per row) and ActionCLIP's KL
divergence to a multi-positive target, where every item of the batch with the same label is a positive."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def symmetric_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """InfoNCE over a square score matrix [N, N] whose diagonal holds the pairs: the mean of the row-wise and
    column-wise cross-entropies."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"InfoNCE needs a square score matrix, got {list(logits.shape)}")
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def same_label_targets(labels: Sequence[str] | Sequence[int]) -> torch.Tensor:
    """The multi-positive target [B, B]: row i spreads probability 1 evenly over the items sharing i's label
    (ActionCLIP's softmax(10 * same_label) is this up to e^-10 on the negatives)."""
    ids = {label: k for k, label in enumerate(dict.fromkeys(labels))}
    index = torch.tensor([ids[label] for label in labels])
    same = (index[:, None] == index[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def kl_multi_positive(logits: torch.Tensor, labels: Sequence[str] | Sequence[int]) -> torch.Tensor:
    """ActionCLIP's loss on video->text logits [B, B] (row i: clip i against the prompts of every clip's label):
    KL(target || softmax) per row, averaged over the batch, in both directions."""
    target = same_label_targets(labels).to(logits.device)
    v2t = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")
    t2v = F.kl_div(F.log_softmax(logits.t(), dim=1), target, reduction="batchmean")
    return (v2t + t2v) / 2
