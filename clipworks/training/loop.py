"""The single-process step loop that the application trainers (captioning, VQA) share: warmup + cosine
learning rate per parameter group, gradient clipping, a progress bar, metrics.jsonl, and atomic
checkpoints that `resume_from` restores exactly (model, optimizer, step and torch's RNG)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from clipworks.errors import CheckpointError

CHECKPOINT = "checkpoint.pt"


def resume_from(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore the run's last checkpoint into `model` and `optimizer`; returns the step to continue from."""
    ckpt = out / CHECKPOINT
    if not ckpt.exists():
        raise CheckpointError(f"{ckpt}: nothing to resume from")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])  # dropout continues as it would have
    return int(state["step"])


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
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


def run_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_at: Callable[[int], torch.Tensor],
              out: Path, steps: int, start: int, stop: int, warmup: int, checkpoint_every: int, desc: str,
              progress: bool = True, clip_norm: float = 1.0) -> float:
    """Steps `start`..`stop` of a `steps`-step run; `loss_at(step)` computes that step's loss. Each optimizer
    group's lr follows warmup + cosine from its "base_lr" (default: its lr) down to 1% of it. Returns the
    last loss."""
    from tqdm import tqdm

    from clipworks.training.schedule import warmup_cosine

    for group in optimizer.param_groups:
        group.setdefault("base_lr", group["lr"])
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ckpt = out / CHECKPOINT
    if start == 0:
        (out / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run in a used directory starts a fresh log
    else:
        truncate_metrics(out / "metrics.jsonl", start)
    bar = tqdm(total=steps, initial=start, desc=desc, unit="step", disable=not progress)
    loss_value = float("nan")
    for step in range(start, stop):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, group["base_lr"], warmup, steps, group["base_lr"] * 0.01)
        loss = loss_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
        optimizer.step()
        loss_value = loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}")
        done = step + 1
        if done % 10 == 0 or done == steps:
            with (out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps({"step": done, "loss": round(loss_value, 5)}) + "\n")
        if done % checkpoint_every == 0 or done in (steps, stop):
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": done,
                        "rng": torch.get_rng_state()}, tmp)
            tmp.replace(ckpt)
    bar.close()
    return loss_value
