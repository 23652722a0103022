"""The ViT image tower: patchify, prepend a class token, ln_pre, Transformer, ln_post on the class token, project."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from clipworks.model.config import VisionConfig
from clipworks.model.image_tower import ImageTower
from clipworks.model.layers import LayerNorm, Transformer, resize_position_embedding


class VisionTransformer(ImageTower):
    """Blocks: the residual blocks. Default split: before the last block. Grid: the patch tokens after ln_post."""

    def __init__(self, cfg: VisionConfig, embed_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        width, patch = cfg.width, cfg.patch_size
        self.image_size = cfg.image_size
        self.patch_size = patch
        self.grid_size = cfg.image_size // patch
        self.default_split = cfg.layers - 1
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size**2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, cfg.layers, cfg.num_heads, cfg.mlp_ratio, quick_gelu)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))
        self.transformer.init_weights()

    def _stem(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens [B, 1 + grid², width], class token first, with position embeddings and ln_pre."""
        x = self.conv1(images.to(self.conv1.weight.dtype))
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        pos = resize_position_embedding(self.positional_embedding, grid)  # other input sizes: interpolated
        x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)
        return self.ln_pre(x)

    def _blocks(self) -> Sequence[nn.Module]:
        return self.transformer.resblocks

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_post(x[:, 0]) @ self.proj

    def _pool_parameters(self) -> list[nn.Parameter]:
        return [*self.ln_post.parameters(), self.proj]

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_post(x[:, 1:])

    def grid_shape(self, image_size: int, blocks: int | None = None) -> tuple[int, int, int]:
        self._grid_blocks(blocks)  # checked; every block keeps the patch grid
        side = image_size // self.patch_size
        return side, side, self.ln_post.normalized_shape[0]

    def mid_level_indices(self) -> tuple[int, int]:
        """The blocks a third and two thirds of the way up."""
        n = len(self.transformer.resblocks)
        return max(n // 3 - 1, 0), max(2 * n // 3 - 1, 0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._pool(self.transformer(self._stem(images)))  # Transformer: gradient checkpointing if enabled
