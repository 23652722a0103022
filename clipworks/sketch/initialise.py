"""Where strokes start: a relevance map of the image tower (SmoothGrad: the gradient of the image embedding along
itself, averaged over noisy copies) combined with an edge map, inside the object's mask; or uniformly at random.
And the object's mask: a user's mask image, or a simple automatic one (colour distance from the border)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipworks.errors import InputFileError
from clipworks.model.clip import CLIP


def relevance_map(clip: CLIP, image: torch.Tensor, samples: int = 8, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """[H, W] in [0, 1]: how strongly each pixel of `image` [1, 3, H, W] (in [0, 1]) moves the CLIP embedding
    along its own direction (|gradient| summed over colours, averaged over `samples` noisy copies)."""
    from clipworks.sketch.losses import clip_input

    generator = torch.Generator().manual_seed(seed)
    h, w = image.shape[-2:]
    total = torch.zeros(h, w)
    clip.eval()
    for _ in range(samples):
        x = (image + noise * torch.randn(image.shape, generator=generator)).requires_grad_(True)
        emb = clip.encode_image(clip_input(clip, x))[0]
        (emb @ F.normalize(emb.detach(), dim=0)).backward()
        total += x.grad[0].abs().sum(0)
    total = F.avg_pool2d(total[None, None], 5, stride=1, padding=2)[0, 0]  # smooth the speckle
    return (total / total.max().clamp(min=1e-12)).numpy()


def edge_map(image: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1]: Sobel gradient magnitude of the grey image (image [H, W, 3] in [0, 1])."""
    from skimage.filters import sobel

    edges = sobel(image.mean(axis=2))
    return edges / max(float(edges.max()), 1e-12)


def auto_mask(image: np.ndarray) -> np.ndarray:
    """A foreground mask [H, W] bool: pixels whose colour is far (Otsu threshold) from the median border colour,
    closed, hole-filled, largest component. Good for an object on a plain or muted background; for busy
    backgrounds pass a mask image instead. Falls back to everything when it finds no plausible object."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu
    from skimage.measure import label
    from skimage.morphology import closing, disk

    border = np.concatenate([image[:2].reshape(-1, 3), image[-2:].reshape(-1, 3), image[:, :2].reshape(-1, 3),
                             image[:, -2:].reshape(-1, 3)])
    distance = np.linalg.norm(image - np.median(border, axis=0), axis=2)
    if float(distance.max() - distance.min()) < 1e-6:
        return np.ones(image.shape[:2], bool)
    mask = distance > threshold_otsu(distance)
    mask = ndimage.binary_fill_holes(closing(mask, disk(max(1, image.shape[0] // 64))))
    labels = label(mask)
    if labels.max() == 0:
        return np.ones(image.shape[:2], bool)
    largest = labels == (np.bincount(labels.ravel())[1:].argmax() + 1)
    share = largest.mean()
    return largest if 0.01 <= share <= 0.95 else np.ones(image.shape[:2], bool)


def load_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A user's mask image (white = the object), resized to `size` (W, H)."""
    from PIL import Image

    from clipworks.model.transforms import decode_image

    mask = decode_image(Path(path), str(path)).convert("L").resize(size, Image.Resampling.NEAREST)
    out = np.asarray(mask) > 127
    if not out.any():
        raise InputFileError(f"{path}: the mask has no white (object) pixels")
    return out


def start_points(n: int, size: int, generator: torch.Generator, weights: np.ndarray | None = None) -> torch.Tensor:
    """n stroke start points [n, 2] (x, y in pixels): drawn without replacement from `weights` [H, W], or
    uniformly over the canvas when None."""
    if weights is None:
        return torch.rand(n, 2, generator=generator) * size
    p = torch.as_tensor(weights, dtype=torch.float64).flatten()
    p = p / p.sum()
    index = torch.multinomial(p, n, replacement=bool(p.count_nonzero() < n), generator=generator)
    ys, xs = index // weights.shape[1], index % weights.shape[1]
    jitter = torch.rand(n, 2, generator=generator)
    return torch.stack([xs.float(), ys.float()], dim=1) + jitter


def strokes_around(points: torch.Tensor, size: int, generator: torch.Generator, radius: float = 0.05) -> torch.Tensor:
    """Control points [n, 4, 2]: each stroke's first point at its start point, the next three each within
    `radius` of the canvas from the previous one (a short random curve)."""
    steps = (torch.rand(points.shape[0], 3, 2, generator=generator) * 2 - 1) * radius * size
    control = torch.cat([points[:, None], points[:, None] + steps.cumsum(dim=1)], dim=1)
    return control.clamp(0, size)
