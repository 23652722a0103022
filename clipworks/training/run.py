"""A training run on disk, the same for every trainer (CLIP, the captioner and its LM pre-training, the VQA
head, video models, the claims experiment): `train_steps` runs steps start..stop with warmup + cosine for each
optimizer group, gradient clipping, metrics.jsonl (truncated to the checkpoint on resume) and atomic
checkpoints that resume exactly.

The one checkpoint schema (checkpoint.pt, read with weights_only=True): {"model": state dict, "optimizer": state
dict, "step": steps done, "rng": torch's CPU RNG state, "config": the run's config as JSON}, plus a trainer's own
entries. Checkpoints written before this schema lack "rng" (CLIP's) or "config" (the applications'); they load."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from clipworks.errors import CheckpointError
from clipworks.io import atomic_write
from clipworks.training.distributed import WorldInfo
from clipworks.training.schedule import warmup_cosine

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"


def read_checkpoint(out: str | Path) -> dict[str, Any]:
    """The last checkpoint of the run in `out`."""
    path = Path(out) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: nothing to resume from")
    return torch.load(path, map_location="cpu", weights_only=True)


def write_checkpoint(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                     config: dict[str, Any], **extra: Any) -> None:
    """Write `out`/checkpoint.pt atomically: a run killed mid-save keeps its previous checkpoint."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "rng": torch.get_rng_state(), "config": json.dumps(config), **extra}
    atomic_write(out / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def restore(state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load a checkpoint's model, optimizer and RNG (dropout continues as it would have); returns its step."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:
        torch.set_rng_state(state["rng"])
    return int(state["step"])


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of metrics.jsonl; a record cut off by a kill is ignored, and a resumed run's repeats keep the last."""
    records: dict[int, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                records[int(rec["step"])] = rec
            except (ValueError, KeyError, TypeError):
                continue
    return [records[k] for k in sorted(records)]


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the metrics.jsonl rows up to `step` (a resumed run logs the later steps again); a row cut off by a
    kill goes too."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write(path, lambda tmp: tmp.write_text("".join(kept)))


def _global_mean(value: torch.Tensor, world: WorldInfo | None) -> float:
    if world is not None and world.distributed:
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value)
        value /= world.world_size
    return float(value)


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: Callable[[int], torch.Tensor],
                out: Path | None, *, steps: int, warmup: int, config: dict[str, Any], batch_size: int,
                start: int = 0, stop: int | None = None, resume_state: dict[str, Any] | None = None,
                min_lr_ratio: float = 0.01, grad_clip: float = 1.0, log_every: int = 10, checkpoint_every: int = 500,
                clip_params: Iterable[torch.nn.Parameter] | None = None, after_step: Callable[[int], None] | None = None,
                metrics: Callable[[], dict[str, Any]] | None = None,
                checkpoint_extra: Callable[[], dict[str, Any]] | None = None,
                world: WorldInfo | None = None, desc: str = "train", progress: bool = True) -> float:
    """Steps `start`..`stop` (default: to `steps`) of a `steps`-step run; returns the last step's loss.

    `step(s)` computes step s's loss and its gradients (it calls backward) and returns the loss. Each optimizer
    group's lr follows warmup + cosine from the lr it was created with down to `min_lr_ratio` of it; gradients
    are clipped to norm `grad_clip` (0: not clipped) over `clip_params` (default: the optimizer's parameters).
    `resume_state` (a `read_checkpoint`) is restored into `model` and `optimizer` first. `after_step(done)` runs
    after each optimizer step (a clamp, an evaluation). Into `out` (None: nothing is written): metrics.jsonl every
    `log_every` steps (loss, lr, grad_norm, samples_per_s, then `metrics()`), and checkpoint.pt every
    `checkpoint_every` steps and at the end, with `config` and `checkpoint_extra()`. Under DDP (`world`) the
    logged loss is the mean over ranks and only the main rank writes."""
    from tqdm import tqdm

    base_lrs = [group["lr"] for group in optimizer.param_groups]  # read before a checkpoint's lrs replace them
    if resume_state is not None:
        start = restore(resume_state, model, optimizer)
    stop = steps if stop is None else stop
    params = list(clip_params) if clip_params is not None else [p for g in optimizer.param_groups for p in g["params"]]
    is_main = world is None or world.is_main
    writes = out is not None and is_main
    if writes:
        out.mkdir(parents=True, exist_ok=True)
        if start == 0:
            (out / METRICS_FILE).unlink(missing_ok=True)  # a fresh run in a used directory starts a fresh log
        else:
            truncate_metrics(out / METRICS_FILE, start)
    bar = tqdm(total=steps, initial=start, desc=desc, unit="step", disable=not (progress and is_main))
    t_last, steps_since = time.perf_counter(), 0
    loss_value = math.nan
    for s in range(start, stop):
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = warmup_cosine(s, base, warmup, steps, base * min_lr_ratio)
        optimizer.zero_grad(set_to_none=True)
        loss = step(s)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip) if grad_clip > 0 else torch.tensor(0.0)
        optimizer.step()
        done = s + 1
        if after_step is not None:
            after_step(done)
        steps_since += 1
        bar.update(1)
        if done % log_every == 0 or done in (steps, stop):
            loss_value = _global_mean(loss.detach(), world)
            now = time.perf_counter()
            rate = steps_since * batch_size / max(now - t_last, 1e-9)
            t_last, steps_since = now, 0
            bar.set_postfix(loss=f"{loss_value:.4f}", samples_s=f"{rate:.0f}")
            if writes and (done % log_every == 0 or done == steps):
                record = {"step": done, "loss": round(loss_value, 5), "lr": optimizer.param_groups[0]["lr"],
                          "grad_norm": round(float(grad_norm), 4), "samples_per_s": round(rate, 1),
                          **(metrics() if metrics is not None else {})}
                with (out / METRICS_FILE).open("a") as f:
                    f.write(json.dumps(record) + "\n")
        if writes and (done % checkpoint_every == 0 or done in (steps, stop)):
            write_checkpoint(out, model, optimizer, done, config,
                             **(checkpoint_extra() if checkpoint_extra is not None else {}))
    bar.close()
    return loss_value
