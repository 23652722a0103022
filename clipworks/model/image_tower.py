"""The feature API every image tower shares, as timm's `forward_features` / `forward_intermediates`: applications
ask the tower for its grid, its intermediate activations or a trunk/head split instead of reaching into it.

A tower is a stem, a sequence of blocks (ViT residual blocks, ResNet stages) and a pool to one embedding. Each
tower defines those pieces (`_stem`, `_blocks`, `_pool`, `_grid`, `_pool_parameters`) and a few facts about itself;
the API is written once, here, in terms of them. A new tower type subclasses `ImageTower` and no application
changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ImageTower(nn.Module):
    default_split: int  # blocks in the default trunk: the rest (and the pool) is the head that fine-tunes

    # ------------------------------------------------------------ the public feature API

    def forward_grid(self, images: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        """The spatial features [B, rows * cols, C] (row-major) of preprocessed images [B, 3, H, W], as CLIP-ViL
        feeds them to a V&L model; any input size (position embeddings are interpolated). `blocks`: the grid after
        the first `blocks` blocks (default: all; negative counts from the end: -1 is all but the last, e.g. a
        ResNet's finer stage-3 map or a ViT's penultimate block)."""
        return self._grid(self.forward_trunk(images, self._grid_blocks(blocks)))

    def forward_intermediates(self, images: torch.Tensor,
                              indices: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(embeddings [B, D], [output of block i for i in `indices`]) in one pass; negative indices count from
        the end. The last block's output is `forward_trunk(images, len(blocks))`."""
        n = len(self._blocks())
        wanted = [self._index(i, n) for i in indices]
        x, found = self._stem(images), []
        for block in self._blocks():
            x = block(x)
            found.append(x)
        return self._pool(x), [found[i] for i in wanted]

    def forward_trunk(self, images: torch.Tensor, split: int | None = None) -> torch.Tensor:
        """The stem and the first `split` blocks (default: `default_split`), for a frozen trunk whose output can
        be cached; `forward_head(forward_trunk(x, s), s)` equals `self(x)`."""
        x = self._stem(images)
        for block in self._blocks()[:self._split(split)]:
            x = block(x)
        return x

    def forward_head(self, trunk: torch.Tensor, split: int | None = None) -> torch.Tensor:
        """The blocks after `split` and the pool: trunk output -> embeddings [B, D]."""
        return self._pool(self._head_blocks(trunk, split))

    def forward_head_and_grid(self, trunk: torch.Tensor, split: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward_head` and, from the same pass, the last block's grid [B, rows * cols, C] (`forward_grid`'s)."""
        x = self._head_blocks(trunk, split)
        return self._pool(x), self._grid(x)

    def _head_blocks(self, trunk: torch.Tensor, split: int | None) -> torch.Tensor:
        x = trunk.to(self.dtype)  # cached trunk features may be stored in another precision
        for block in self._blocks()[self._split(split):]:
            x = block(x)
        return x

    def head_parameters(self, split: int | None = None) -> list[nn.Parameter]:
        """The parameters `forward_head(·, split)` uses, e.g. to train the head with the trunk frozen."""
        blocks = self._blocks()[self._split(split):]
        return [p for block in blocks for p in block.parameters()] + self._pool_parameters()

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters by depth, input to output: the stem's, each block's, then the pool's (layer-wise lr decay,
        locking all but the last blocks)."""
        blocks = [list(block.parameters()) for block in self._blocks()]
        pool = self._pool_parameters()
        later = {id(p) for group in [*blocks, pool] for p in group}
        return [[p for p in self.parameters() if id(p) not in later], *blocks, pool]

    def num_blocks(self) -> int:
        """How many blocks (ViT residual blocks, ResNet stages) `forward_intermediates` indexes."""
        return len(self._blocks())

    def grid_shape(self, image_size: int, blocks: int | None = None) -> tuple[int, int, int]:
        """(rows, columns, channels) of `forward_grid(·, blocks)` at a square input of `image_size` pixels."""
        raise NotImplementedError

    def mid_level_indices(self) -> tuple[int, int]:
        """Two block indices for losses that compare mid-level features (CLIPasso's geometric loss)."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # ------------------------------------------------------------ what each tower defines

    def _stem(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed images -> the first block's input."""
        raise NotImplementedError

    def _blocks(self) -> Sequence[nn.Module]:
        raise NotImplementedError

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output -> embeddings [B, D]."""
        raise NotImplementedError

    def _pool_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output -> spatial features [B, rows * cols, C]."""
        raise NotImplementedError

    # ------------------------------------------------------------ checks

    def _split(self, split: int | None) -> int:
        n = len(self._blocks())
        split = self.default_split if split is None else split
        if not 0 <= split <= n:
            raise ValueError(f"split {split} is outside 0..{n} (this {type(self).__name__} has {n} blocks)")
        return split

    def _grid_blocks(self, blocks: int | None) -> int:
        """`forward_grid`'s `blocks` as a count from the start."""
        n = len(self._blocks())
        if blocks is not None and not -n <= blocks <= n:
            raise ValueError(f"grid blocks {blocks} is outside -{n}..{n} (this {type(self).__name__} has {n} blocks)")
        return n if blocks is None else blocks if blocks >= 0 else n + blocks

    def _index(self, index: int, n: int) -> int:
        if not -n <= index < n:
            raise ValueError(f"block index {index} is outside -{n}..{n - 1} "
                             f"(this {type(self).__name__} has {n} blocks)")
        return index % n
