"""CLIP's contrastive training, behind `clipworks train`: AdamW, accumulation that keeps the contrastive batch
whole, DDP across `torchrun` ranks and skipped-sample accounting; the steps, schedule, clipping, metrics and
checkpoints are the shared run loop's (`clipworks.training.run`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipworks.errors import CheckpointError, ConfigError, InputFileError
from clipworks.model.clip import CLIP, MAX_LOGIT_SCALE
from clipworks.model.factory import create_model, default_device, get_tokenizer
from clipworks.model.transforms import image_transform
from clipworks.training.data import BatchPlan, batches, split_micro
from clipworks.training.distributed import init_distributed
from clipworks.training.loss import ClipLoss
from clipworks.training.run import CHECKPOINT_FILE, METRICS_FILE, read_checkpoint, read_metrics, train_steps

RUN_FILES = (CHECKPOINT_FILE, METRICS_FILE, "model")  # what makes a folder a run that a new run would clobber


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in the checkpoint so `--resume` continues the same run."""

    out: str
    model: str = "ViT-Tiny-8-64"
    pretrained: str | None = None
    data: str = "world"
    steps: int = 1000
    batch_size: int = 256  # the global contrastive batch, across ranks and accumulation steps
    accum_steps: int = 1
    lr: float = 5e-4
    min_lr: float = 0.0
    warmup: int = 100
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    num_workers: int = 0
    device: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    hard_negative_weight: float = 0.0  # > 0: a two-way caption-vs-twin loss beside InfoNCE (see ClipLoss)


class FeatureModel(nn.Module):
    """What DDP wraps: normalised image and text features plus the log-temperature."""

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, images: torch.Tensor, tokens: torch.Tensor,
                negative_tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(images, texts, log-temperature), plus the hard negatives' features when given (one text pass)."""
        image = self.clip.encode_image(images, normalize=True)
        if negative_tokens is None:
            return image, self.clip.encode_text(tokens, normalize=True), self.clip.logit_scale
        text, negative = self.clip.encode_text(torch.cat([tokens, negative_tokens]), normalize=True).chunk(2)
        return image, text, self.clip.logit_scale, negative


def param_groups(model: nn.Module | Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on gains, biases, BatchNorm/LayerNorm parameters, 1-d embeddings or the temperature.
    `model`: a module, or (name, parameter) pairs such as a filtered `named_parameters()`."""
    decay, no_decay = [], []
    named = model.named_parameters() if isinstance(model, nn.Module) else model
    for name, p in named:
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "bn" in name or "ln_" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def clamp_logit_scale(clip: CLIP) -> None:
    """Keep the learned log-temperature in [0, MAX_LOGIT_SCALE] after an optimizer step."""
    with torch.no_grad():
        clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)


def contrastive_step(wrapped: nn.Module, features: FeatureModel, loss_fn: ClipLoss,
                     micro: list[tuple[torch.Tensor, ...]], autocast) -> torch.Tensor:
    """Forward and backward one contrastive batch split into micro-batches; returns the batch loss.

    Each micro-batch is (images, tokens) or (images, tokens, negative tokens, negative valid). With several
    micro-batches, the features of all of them are first computed without gradients; each micro-batch is
    then recomputed with gradients and its loss taken against the whole batch, so the summed gradients equal
    those of the undivided batch. The temperature takes part in one backward only.
    """
    def run(model: nn.Module, part: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        out = model(*part[:2]) if len(part) == 2 else model(*part[:3])
        return tuple(o.float() if o.ndim else o for o in out)  # features in float32, the scale as it is

    negatives = len(micro[0]) == 4
    valid = torch.cat([m[3] for m in micro]) if negatives else None
    if len(micro) == 1:
        with autocast():
            img, txt, scale, *neg = run(wrapped, micro[0])
            loss = loss_fn(img, txt, scale, neg[0] if neg else None, valid)
        loss.backward()
        return loss.detach()
    with torch.no_grad(), autocast():
        cached = [run(features, part) for part in micro]
    last = len(micro) - 1
    for j, part in enumerate(micro):
        sync = contextlib.nullcontext() if j == last or not isinstance(wrapped, nn.parallel.DistributedDataParallel) else wrapped.no_sync()
        with sync:
            with autocast():
                current = run(wrapped, part)
            img, txt = (torch.cat([c[k] for c in cached[:j]] + [current[k]] + [c[k] for c in cached[j + 1:]]) for k in (0, 1))
            neg = (torch.cat([c[3] for c in cached[:j]] + [current[3]] + [c[3] for c in cached[j + 1:]])
                   if negatives else None)
            scale = current[2]
            loss = loss_fn(img, txt, scale if j == last else scale.detach(), neg, valid)
            loss.backward()
    return loss.detach()


def saved_config(out: str | Path) -> TrainConfig:
    """The configuration a run in `out` was started with, as its checkpoint records it."""
    saved = json.loads(read_checkpoint(out)["config"])
    return TrainConfig(**{**saved, "betas": tuple(saved["betas"])})


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Run (or continue) a training run; returns a summary. Writes into `cfg.out`:
    checkpoint.pt, model/ (save_pretrained), metrics.jsonl, loss.png, train_config.json.
    `stop_after` ends this invocation after that many steps (with a checkpoint); `resume` continues it."""
    from tqdm import tqdm

    from clipworks.data import open_pairs
    from clipworks.data.skips import SkipReport
    from clipworks.data.types import Skipped

    device = torch.device(cfg.device) if cfg.device else default_device()
    world = init_distributed(device)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT_FILE
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: a file, not a run directory (--out names a folder)")
    if cfg.warmup > cfg.steps:
        raise ConfigError(f"warmup={cfg.warmup} is longer than the run (steps={cfg.steps}): the learning rate would "
                          f"never reach lr={cfg.lr}; give a warmup of at most {cfg.steps}")
    if not resume and any((out / name).exists() for name in RUN_FILES):
        raise CheckpointError(f"{out}: holds a training run already; continue it with --resume, or give a new --out "
                              "(or delete the folder)")
    state = None
    if resume:
        state = read_checkpoint(out)
        saved = json.loads(state["config"])
        for key in ("model", "data", "batch_size", "seed", "accum_steps"):
            if saved[key] != getattr(cfg, key):
                raise CheckpointError(f"{ckpt_path}: was trained with {key}={saved[key]!r}, not {getattr(cfg, key)!r}")
        if state["step"] > cfg.steps:
            raise CheckpointError(f"{ckpt_path}: is at step {state['step']}, past the run's steps={cfg.steps}")
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    torch.manual_seed(cfg.seed)
    clip, _ = create_model(cfg.model, pretrained=cfg.pretrained, device=device)
    clip.train()
    optimizer = torch.optim.AdamW(param_groups(clip, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                  fused=device.type == "cuda")  # one kernel per step on CUDA; the same update
    start = 0 if state is None else int(state["step"])

    features = FeatureModel(clip)
    wrapped: nn.Module = features
    if world.distributed:
        wrapped = nn.parallel.DistributedDataParallel(features, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = ClipLoss(cfg.hard_negative_weight)
    use_amp = device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext

    dataset = open_pairs(cfg.data, **cfg.data_options)
    if isinstance(dataset, torch.utils.data.IterableDataset):
        # Shards are read once into memory so batches stay a pure function of the step (exact resume, DDP).
        dataset = list(tqdm(dataset, desc="reading shards", unit="sample", disable=not (progress and world.is_main)))
    plan = BatchPlan(len(dataset), cfg.batch_size, cfg.seed, world.rank, world.world_size)
    transform = image_transform(clip.config.preprocess, train=True)
    tokenizer = get_tokenizer(clip)
    report = SkipReport(total=len(dataset))
    # A bad sample is drawn again in later epochs (and replaced each time): count samples, keep draws apart.
    bad: dict[str, str] = {}
    draws = 0 if state is None else int(state.get("skipped_draws", state.get("skipped", 0)))  # older: "skipped"
    for key, reason in [] if state is None else state.get("skipped_samples", []):
        bad[key] = reason
        report.add(Skipped(key, reason))

    stop = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    stream = batches(dataset, plan, start, stop, transform, tokenizer, cfg.num_workers)

    def step(_: int) -> torch.Tensor:
        nonlocal draws
        batch = next(stream)
        draws += len(batch.skipped)
        for s in batch.skipped:
            if s.key not in bad:
                bad[s.key] = s.reason
                report.add(s)
        micro = [tuple(x.to(device, non_blocking=True) for x in part) for part in split_micro(batch, cfg.accum_steps)]
        return contrastive_step(wrapped, features, loss_fn, micro, autocast)

    loss_value = train_steps(
        clip, optimizer, step, out, steps=cfg.steps, warmup=cfg.warmup, config=asdict(cfg), batch_size=cfg.batch_size,
        stop=stop, resume_state=state, min_lr_ratio=cfg.min_lr / cfg.lr if cfg.lr else 0.0, grad_clip=cfg.grad_clip,
        log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
        clip_params=clip.parameters(),  # module order, as CLIP runs always clipped: the norm's float sum depends on it
        after_step=lambda done: clamp_logit_scale(clip),
        metrics=lambda: {"logit_scale": round(clip.logit_scale.exp().item(), 3), "skipped": len(bad),
                         "skipped_draws": draws},
        checkpoint_extra=lambda: {"skipped_samples": list(bad.items()), "skipped_draws": draws},
        world=world, progress=progress)

    skip_summary = report.summary()
    if draws > len(bad):
        skip_summary += f" (drawn {draws} times in all, each time replaced by a usable sample)"
    summary = {"steps": stop, "final_loss": loss_value, "skipped": len(bad), "skipped_draws": draws,
               "skip_summary": skip_summary, "out": str(out)}
    if world.is_main and stop == cfg.steps:
        clip.eval()
        clip.save_pretrained(out / "model")
        plot_loss(out / METRICS_FILE, out / "loss.png")
        if report.count:
            print(summary["skip_summary"])
    if world.distributed:
        torch.distributed.barrier()
    return summary


def plot_loss(metrics_path: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    if not records:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in records], [r["loss"] for r in records])
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
