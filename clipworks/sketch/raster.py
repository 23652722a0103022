"""A differentiable rasteriser for black strokes of cubic Bézier curves on white paper, in plain PyTorch (no
diffvg): each curve is sampled into line segments, every pixel takes its distance to the nearest segment of
each stroke, a smooth step of that distance gives the stroke's coverage, and strokes composite as ink over
paper. Batched; runs wherever torch runs; gradients flow to the control points."""

from __future__ import annotations

import torch


def bezier_points(control: torch.Tensor, samples: int = 16) -> torch.Tensor:
    """Points [..., samples, 2] along cubic Bézier curves with control points [..., 4, 2] (Bernstein basis)."""
    if control.shape[-2:] != (4, 2):
        raise ValueError(f"control points must have shape [..., 4, 2], got {list(control.shape)}")
    t = torch.linspace(0.0, 1.0, samples, dtype=control.dtype, device=control.device)
    u = 1.0 - t
    basis = torch.stack([u ** 3, 3 * u ** 2 * t, 3 * u * t ** 2, t ** 3], dim=-1)  # [samples, 4]
    return torch.einsum("sk,...kd->...sd", basis, control)


def _nearest_point(px: torch.Tensor, py: torch.Tensor, ax: torch.Tensor, ay: torch.Tensor, abx: torch.Tensor,
                   aby: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets (dx, dy) from points to the nearest points of segments a -> a + ab (all broadcast together)."""
    rx, ry = px - ax, py - ay
    t = ((rx * abx + ry * aby) / (abx * abx + aby * aby).clamp(min=1e-8)).clamp(0.0, 1.0)
    return rx - t * abx, ry - t * aby


def stroke_distance(control: torch.Tensor, size: tuple[int, int], samples: int = 16,
                    chunk: int = 4096) -> torch.Tensor:
    """Distance [B, n, H, W] from each pixel centre to each stroke (control points [B, n, 4, 2] in pixels,
    x right and y down), through the nearest of the curve's `samples - 1` segments."""
    height, width = size
    batch, strokes = control.shape[:2]
    pts = bezier_points(control, samples)
    a, ab = pts[..., :-1, :], pts[..., 1:, :] - pts[..., :-1, :]  # [B, n, S, 2]
    segments = a.shape[-2]
    ax, ay = a[..., 0].reshape(1, -1), a[..., 1].reshape(1, -1)  # [1, B*n*S]
    abx, aby = ab[..., 0].reshape(1, -1), ab[..., 1].reshape(1, -1)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=control.dtype, device=control.device) + 0.5,
                            torch.arange(width, dtype=control.dtype, device=control.device) + 0.5, indexing="ij")
    px, py = xs.reshape(-1, 1), ys.reshape(-1, 1)  # [P, 1]
    # The nearest segment is found without autograd; the distance to it is then recomputed with autograd, so
    # the backward pass keeps one distance per pixel and stroke instead of one per segment.
    nearest = []
    with torch.no_grad():
        for start in range(0, px.shape[0], chunk):
            dx, dy = _nearest_point(px[start:start + chunk], py[start:start + chunk], ax, ay, abx, aby)
            d2 = (dx * dx + dy * dy).view(-1, batch * strokes, segments)
            nearest.append(d2.argmin(dim=-1))  # [P, B*n]
    offset = torch.arange(batch * strokes, device=control.device) * segments
    index = torch.cat(nearest) + offset  # [P, B*n] into the flat segment axis
    dx, dy = _nearest_point(px, py, ax[0][index], ay[0][index], abx[0][index], aby[0][index])
    dist = (dx * dx + dy * dy + 1e-8).sqrt()  # [P, B*n]
    return dist.t().reshape(batch, strokes, height, width)


def render(control: torch.Tensor, size: int | tuple[int, int], stroke_width: float = 2.0, softness: float = 0.5,
           samples: int = 16, opacity: torch.Tensor | None = None) -> torch.Tensor:
    """Grey images [B, 1, H, W] in [0, 1] (1 = white paper) of n black strokes each (control points [B, n, 4, 2]
    in pixels). A stroke covers a pixel by sigmoid((width/2 - distance) / softness), an antialiased line of
    `stroke_width` pixels; strokes composite as ink: paper = prod(1 - coverage)."""
    if control.ndim != 4:
        raise ValueError(f"control points must have shape [batch, strokes, 4, 2], got {list(control.shape)}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    dist = stroke_distance(control, hw, samples)
    coverage = torch.sigmoid((stroke_width / 2 - dist) / softness)
    if opacity is not None:
        coverage = coverage * opacity[..., None, None]
    return torch.prod(1.0 - coverage, dim=1, keepdim=True)


def to_rgb(paper: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] grey -> [B, 3, H, W]."""
    return paper.expand(-1, 3, -1, -1)
