"""Deterministic training batches: what step s feeds rank r is a pure function of (seed, s, r).

That makes `--resume` exact and lets W ranks with batch B/W see exactly the samples one process with batch B
sees. Each sample's caption choice and random crop come from its own seed, not from a global RNG.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from clipworks.data.types import Sample, Skipped
from clipworks.errors import InputFileError
from clipworks.model.tokenizer import Tokenizer

MAX_REPLACEMENTS = 16


def _mix(*values: int) -> int:
    """A stable 63-bit seed from integers (Python's hash() of str is salted per process, so not used)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h ^= (v + 0x9E3779B97F4A7C15 + ((h << 6) & 0xFFFFFFFFFFFFFFFF) + (h >> 2)) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


@dataclass
class Batch:
    images: torch.Tensor
    tokens: torch.Tensor
    skipped: list[Skipped]
    # With a data set that offers hard negatives: one false caption per sample, and which of them exist.
    negative_tokens: torch.Tensor | None = None
    negative_valid: torch.Tensor | None = None


class BatchPlan:
    """Global batch b of epoch e is a slice of a permutation seeded by (seed, e); rank r takes its share."""

    def __init__(self, dataset_size: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by the {world_size} ranks")
        if dataset_size < global_batch:
            raise InputFileError(f"the data set has {dataset_size} samples, fewer than one batch of {global_batch}")
        self.n, self.global_batch, self.seed = dataset_size, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch = global_batch // world_size
        self.steps_per_epoch = dataset_size // global_batch
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng(_mix(self.seed, epoch)).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def local_items(self, step: int) -> list[tuple[int, int]]:
        """(dataset index, sample seed) pairs for this rank at `step`."""
        epoch, b = divmod(step, self.steps_per_epoch)
        perm = self._permutation(epoch)
        start = b * self.global_batch + self.rank * self.local_batch
        return [(int(perm[p]), _mix(self.seed, epoch, p)) for p in range(start, start + self.local_batch)]


class _StepDataset(Dataset):
    """Item k = the whole local batch of step start+k, so a DataLoader's workers prepare batches ahead."""

    def __init__(self, dataset: Dataset, plan: BatchPlan, start: int, stop: int, transform, tokenizer: Tokenizer) -> None:
        self.dataset, self.plan, self.start, self.stop = dataset, plan, start, stop
        self.transform, self.tokenizer = transform, tokenizer
        # Decided per data set, not per batch, so every DDP rank gathers the same shapes.
        self.with_negatives = bool(getattr(dataset, "hard_negatives", False))

    def __len__(self) -> int:
        return self.stop - self.start

    def _sample(self, index: int, seed: int, skipped: list[Skipped]) -> tuple[torch.Tensor, str, str]:
        # A bad item is replaced by a seeded pick, so every rank keeps the same batch size.
        for attempt in range(MAX_REPLACEMENTS):
            item = self.dataset[index]
            if isinstance(item, Sample) and item.captions:
                rng = random.Random(seed)
                caption = rng.choice(item.captions)
                negative = item.negatives[item.captions.index(caption)] if item.negatives else ""
                generator = torch.Generator().manual_seed(seed)
                return self.transform(item.image, generator=generator), caption, negative
            skipped.append(item if isinstance(item, Skipped) else Skipped(str(index), "no caption"))
            index = random.Random(_mix(seed, attempt)).randrange(self.plan.n)
        raise InputFileError(f"{MAX_REPLACEMENTS} unusable samples in a row near index {index}: is the data set readable?")

    def __getitem__(self, k: int) -> Batch:
        skipped: list[Skipped] = []
        pairs = [self._sample(i, s, skipped) for i, s in self.plan.local_items(self.start + k)]
        images = torch.stack([p[0] for p in pairs])
        tokens = self.tokenizer([p[1] for p in pairs])
        if not self.with_negatives:
            return Batch(images, tokens, skipped)
        negatives = [p[2] for p in pairs]
        return Batch(images, tokens, skipped, self.tokenizer(negatives), torch.tensor([bool(n) for n in negatives]))


def batches(dataset: Dataset, plan: BatchPlan, start: int, stop: int, transform, tokenizer: Tokenizer,
            num_workers: int = 0) -> Iterator[Batch]:
    """Local batches for steps start..stop-1, prepared by `num_workers` background processes."""
    steps = _StepDataset(dataset, plan, start, stop, transform, tokenizer)
    loader = DataLoader(steps, batch_size=None, shuffle=False, num_workers=num_workers,
                        persistent_workers=False, prefetch_factor=2 if num_workers else None)
    yield from loader


def split_micro(batch: Batch, parts: int) -> Sequence[tuple[torch.Tensor, ...]]:
    """(images, tokens) per micro-batch, or (images, tokens, negative tokens, negative valid) with negatives."""
    if batch.images.shape[0] % parts:
        raise ValueError(f"local batch {batch.images.shape[0]} is not divisible into {parts} accumulation steps")
    fields = [batch.images, batch.tokens]
    if batch.negative_tokens is not None:
        fields += [batch.negative_tokens, batch.negative_valid]
    return list(zip(*(f.chunk(parts) for f in fields)))
