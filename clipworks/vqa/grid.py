"""Grid features: the image tower's spatial features before pooling, as CLIP-ViL feeds them to a V&L model.

ModifiedResNet: the last stage's feature map (attention pooling dropped), [B, H/32 * W/32, width*32].
ViT: the patch tokens after the Transformer and ln_post, [B, (H/p) * (W/p), width]. At an input size other
than the trained one, the towers interpolate their position embeddings (`layers.resize_position_embedding`);
a ResNet's grid needs none, and its pooled output interpolates the attention pool's.
"""

from __future__ import annotations

import torch
from torch import nn

from clipworks.model.modified_resnet import ModifiedResNet
from clipworks.model.vision_transformer import VisionTransformer


def grid_features(image_tower: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """[B, N, C] spatial features of preprocessed images [B, 3, H, W] (row-major over the grid)."""
    if isinstance(image_tower, ModifiedResNet):
        return image_tower.feature_map(images).flatten(2).transpose(1, 2)
    if isinstance(image_tower, VisionTransformer):
        return image_tower.ln_post(image_tower.tokens(images)[:, 1:])
    raise TypeError(f"no grid features for an image tower of type {type(image_tower).__name__}")


def grid_shape(image_tower: nn.Module, image_size: int) -> tuple[int, int, int]:
    """(rows, columns, channels) of the grid at a square input of `image_size` pixels."""
    if isinstance(image_tower, ModifiedResNet):
        side = image_size // 32
        if side < 1:
            raise ValueError(f"image size {image_size} is below the ResNet's stride of 32")
        return side, side, image_tower.attnpool.k_proj.in_features
    if isinstance(image_tower, VisionTransformer):
        side = image_size // image_tower.patch_size
        return side, side, image_tower.ln_post.normalized_shape[0]
    raise TypeError(f"no grid features for an image tower of type {type(image_tower).__name__}")
