"""The ViT image tower: patchify, prepend a class token, ln_pre, Transformer, ln_post on the class token, project."""

from __future__ import annotations

import torch
from torch import nn

from clipworks.model.config import VisionConfig
from clipworks.model.layers import LayerNorm, Transformer, resize_position_embedding


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig, embed_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        width, patch = cfg.width, cfg.patch_size
        self.image_size = cfg.image_size
        self.patch_size = patch
        self.grid_size = cfg.image_size // patch
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size**2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, cfg.layers, cfg.num_heads, cfg.mlp_ratio, quick_gelu)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))
        self.transformer.init_weights()

    def tokens(self, images: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        """All output tokens [B, 1 + grid², width] after the Transformer (class token first), before ln_post;
        with `blocks`, after only the first `blocks` residual blocks."""
        x = self.conv1(images.to(self.conv1.weight.dtype))
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        pos = resize_position_embedding(self.positional_embedding, grid)  # other input sizes: interpolated
        x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)
        x = self.ln_pre(x)
        if blocks is None:
            return self.transformer(x)
        for block in self.transformer.resblocks[:blocks]:
            x = block(x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.ln_post(self.tokens(images)[:, 0]) @ self.proj
