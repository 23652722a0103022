"""CLIPasso's losses: a semantic loss, 1 - cos between the CLIP embeddings of sketch and image, and a geometric
loss, the L2 distance between their intermediate image-tower activations (by default the tower's
`mid_level_indices`: ResNet stages 2 and 3, or ViT blocks at a third and two thirds of its depth), both over the
same random augmentations of the pair (perspective, crop, affine)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clipworks.model.clip import CLIP


def clip_input(clip: CLIP, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Images [B, 3, H, W] in [0, 1] -> the tower's input: resized to `size` (default: the model's input size)
    and normalised, differentiably."""
    cfg = clip.config.preprocess
    side = size or cfg.image_size
    images = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(cfg.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 projective map taking the 4 points `src` to `dst` (each [4, 2])."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    h = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def augment_pair(pair: torch.Tensor, generator: torch.Generator, distortion: float = 0.5,
                 crop_scale: float = 0.8) -> torch.Tensor:
    """The same random view applied to both images of `pair` [2, 3, H, W] (values in [0, 1]): a square crop of
    `crop_scale` of the area at a random place, with a perspective warp (half the time) that moves each corner
    inwards by up to distortion/2 of the side; what falls outside the image is white. Differentiable."""
    _, _, h, w = pair.shape
    r = torch.rand(11, generator=generator).double().numpy()
    side = crop_scale ** 0.5
    x0, y0 = r[0] * (1 - side), r[1] * (1 - side)
    # output corners (normalised [0, 1] coordinates) -> where they sample in the input
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    source = corners * side + [x0, y0]
    if r[2] < 0.5:
        inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * (r[3:11].reshape(4, 2) * distortion / 2 * side)
        source = source + inward
    hmat = torch.from_numpy(_homography(corners, source)).to(pair.dtype)
    ys, xs = torch.meshgrid((torch.arange(h, dtype=pair.dtype) + 0.5) / h, (torch.arange(w, dtype=pair.dtype) + 0.5) / w,
                            indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1) @ hmat.t()
    grid = points[..., :2] / points[..., 2:]
    grid = (grid * 2 - 1)[None].expand(pair.shape[0], -1, -1, -1)  # grid_sample wants [-1, 1]
    ink = F.grid_sample(1 - pair, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return 1 - ink


class SketchLoss(torch.nn.Module):
    """Loss of a sketch against a fixed target image (both [1, 3, H, W] in [0, 1])."""

    def __init__(self, clip: CLIP, target: torch.Tensor, layers: Sequence[int] | None = None,
                 layer_weights: Sequence[float] = (1.0, 1.0), semantic_weight: float = 0.1,
                 augmentations: int = 4, input_size: int | None = None) -> None:
        """`layers`: the image tower's block indices compared by the geometric loss (ViT blocks, ResNet stages;
        default: its `mid_level_indices()`). `input_size`: the side the image tower sees (default: its own).
        Larger inputs give the geometric loss finer activation maps; the towers interpolate their position
        embeddings for any size."""
        super().__init__()
        self.clip = clip.eval()
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.target = target
        self.layers = tuple(clip.image_tower.mid_level_indices() if layers is None else layers)
        if len(layer_weights) != len(self.layers):
            raise ValueError(f"{len(self.layers)} layers but {len(layer_weights)} layer weights")
        self.layer_weights = tuple(layer_weights)
        self.semantic_weight = semantic_weight
        self.augmentations = augmentations
        self.size = input_size

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        return clip_input(self.clip, images, self.size)

    def forward(self, sketch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """(total loss, its parts) over the un-augmented pair and `augmentations` augmented ones."""
        pairs = [torch.cat([sketch, self.target])]
        pairs += [augment_pair(pairs[0].clone(), generator) for _ in range(self.augmentations)]
        sketches = torch.cat([p[:1] for p in pairs])
        with torch.no_grad():
            targets = self._prepare(torch.cat([p[1:] for p in pairs]))
            target_emb, target_acts = self.clip.image_tower.forward_intermediates(targets, self.layers)
        emb, acts = self.clip.image_tower.forward_intermediates(self._prepare(sketches), self.layers)
        geometric = sum(w * F.mse_loss(a, t) for w, a, t in zip(self.layer_weights, acts, target_acts))
        semantic = (1 - F.cosine_similarity(emb, target_emb, dim=-1)).mean()
        total = geometric + self.semantic_weight * semantic
        return total, {"geometric": geometric.item(), "semantic": semantic.item(), "total": total.item()}
