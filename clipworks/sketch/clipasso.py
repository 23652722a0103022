"""CLIPasso (Vinker et al., 2022), written from the paper: n black cubic Bézier strokes, initialised on the image's
salient edges, optimised with Adam through a differentiable rasteriser against CLIP's semantic and geometric
losses; several seeds, the lowest-loss sketch kept; early stop when the loss stops improving."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipworks.errors import ConfigError
from clipworks.sketch.svg import Strokes

INITS = ("saliency", "random")
EVAL_SEED = 10_000  # the fixed augmentations every seed's final sketch is judged on


@dataclass
class SketchConfig:
    """How to sketch: `strokes` is the abstraction level; `mask` is "auto", "none" or a mask image's path."""

    strokes: int = 16
    canvas: int = 128
    stroke_width: float = 2.0
    steps: int = 300
    lr: float = 1.0
    seeds: int = 2
    init: str = "saliency"
    augmentations: int = 4
    semantic_weight: float = 0.1
    layer_weights: tuple[float, float] = (1.0, 1.0)
    patience: int = 60
    min_delta: float = 0.005
    mask: str = "auto"
    clip_model: str = "default"
    snapshots: int = 6
    loss_input: int | None = 128  # the side the CLIP tower sees in the losses (None: its own input size)

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}; got {self.init!r}")
        if self.strokes < 1 or self.steps < 1 or self.seeds < 1:
            raise ConfigError("strokes, steps and seeds must be at least 1")


@dataclass
class SketchResult:
    """The kept sketch, its final loss and seed, and per-seed records (losses, snapshots)."""

    strokes: Strokes
    loss: float
    seed: int
    seconds: float
    steps_run: list[int]
    seed_losses: list[float]
    snapshots: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (step, grey image) of the kept seed
    target: np.ndarray | None = None  # the masked image the sketch was fitted to [H, W, 3] in [0, 1]


def prepare_target(image: Image.Image, canvas: int, mask: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(image [canvas, canvas, 3] in [0, 1] with the background made white, mask [canvas, canvas] bool):
    the image is padded to a square on white and resized."""
    from clipworks.sketch.initialise import auto_mask

    image = image.convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    array = np.asarray(square.resize((canvas, canvas), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    if mask == "none":
        m = np.ones((canvas, canvas), bool)
    elif mask == "auto":
        m = auto_mask(array)
    else:
        m = _padded_mask(mask, image, side, canvas)
    return np.where(m[..., None], array, 1.0).astype(np.float32), m


def _padded_mask(path: str, image: Image.Image, side: int, canvas: int) -> np.ndarray:
    """A user's mask at the image's size, padded to the square like the image (outside = background)."""
    from clipworks.sketch.initialise import load_mask

    m = Image.fromarray(load_mask(path, image.size).astype(np.uint8) * 255)
    square = Image.new("L", (side, side), 0)
    square.paste(m, ((side - image.width) // 2, (side - image.height) // 2))
    return np.asarray(square.resize((canvas, canvas), Image.Resampling.NEAREST)) > 127


def sketch_image(image: Image.Image, config: SketchConfig | None = None, clip=None, progress: bool = True) -> SketchResult:
    """Sketch `image` with `config.strokes` strokes; the best of `config.seeds` runs."""
    from tqdm import tqdm

    from clipworks.model.factory import create_model
    from clipworks.sketch.initialise import edge_map, relevance_map, start_points, strokes_around
    from clipworks.sketch.losses import SketchLoss
    from clipworks.sketch.raster import render, to_rgb

    cfg = config or SketchConfig()
    if clip is None:
        clip, _ = create_model(cfg.clip_model, device="cpu")
    start = time.perf_counter()
    target_np, mask = prepare_target(image, cfg.canvas, cfg.mask)
    target = torch.from_numpy(target_np).permute(2, 0, 1)[None]
    loss_fn = SketchLoss(clip, target, layer_weights=cfg.layer_weights, semantic_weight=cfg.semantic_weight,
                         augmentations=cfg.augmentations, input_size=cfg.loss_input)
    weights = None
    if cfg.init == "saliency":
        weights = relevance_map(clip, target) * edge_map(target_np) * mask
        if weights.sum() <= 0:
            weights = mask.astype(np.float64)
    snap_every = max(1, cfg.steps // max(cfg.snapshots - 1, 1))
    best: tuple[float, int, torch.Tensor, list] | None = None
    seed_losses, steps_run = [], []
    for seed in range(cfg.seeds):
        generator = torch.Generator().manual_seed(seed)
        control = strokes_around(start_points(cfg.strokes, cfg.canvas, generator, weights), cfg.canvas, generator)
        control = control[None].clone().requires_grad_(True)
        optimizer = torch.optim.Adam([control], lr=cfg.lr)
        smooth, best_smooth, since, snapshots = None, float("inf"), 0, []
        bar = tqdm(range(cfg.steps), desc=f"sketch seed {seed}", unit="step", disable=not progress, leave=False)
        step = 0
        for step in bar:
            sketch = to_rgb(render(control, cfg.canvas, cfg.stroke_width))
            loss, parts = loss_fn(sketch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                control.clamp_(0, cfg.canvas)
            if step % snap_every == 0:
                snapshots.append((step, sketch[0, 0].detach().numpy().copy()))
            smooth = parts["total"] if smooth is None else 0.9 * smooth + 0.1 * parts["total"]
            bar.set_postfix(loss=f"{smooth:.4f}")
            if smooth < best_smooth * (1 - cfg.min_delta):
                best_smooth, since = smooth, 0
            else:
                since += 1
                if since >= cfg.patience:
                    break
        with torch.no_grad():
            final = to_rgb(render(control, cfg.canvas, cfg.stroke_width))
            snapshots.append((step + 1, final[0, 0].numpy().copy()))
            # every seed is judged on the same fixed augmentations
            value = float(loss_fn(final, torch.Generator().manual_seed(EVAL_SEED))[0])
        seed_losses.append(value)
        steps_run.append(step + 1)
        if best is None or value < best[0]:
            best = (value, seed, control.detach()[0].clone(), snapshots)
    assert best is not None
    value, seed, control, snapshots = best
    strokes = Strokes(control.numpy(), cfg.canvas, cfg.canvas, cfg.stroke_width)
    return SketchResult(strokes, value, seed, time.perf_counter() - start, steps_run, seed_losses, snapshots, target_np)


def save_strip(result: SketchResult, path: str | Path, title: str | None = None) -> Path:
    """A strip: the target image, then the kept sketch at its snapshot steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("target", result.target)] + [(f"step {s}", img) for s, img in result.snapshots]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.9 * len(panels), 2.2))
    for ax, (name, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
