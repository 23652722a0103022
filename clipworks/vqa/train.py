"""Training a VQA model on generated questions: soft-score cross-entropy over the answer vocabulary, AdamW
with warmup + cosine, gradient clipping, checkpoints and exact resume (each step's batch is seeded by the
step). A frozen encoder's grid features are computed once and cached; a trained encoder sees the images."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clipworks.errors import CheckpointError
from clipworks.vqa.config import VQATrainConfig


def train_vqa(cfg: VQATrainConfig, resume: bool = False, progress: bool = True,
              stop_after: int | None = None) -> dict[str, Any]:
    """Train (or continue) a VQA model into `cfg.out`: checkpoint.pt, model/, metrics.jsonl, summary.json."""
    from tqdm import tqdm

    from clipworks.model.factory import create_model
    from clipworks.training.schedule import warmup_cosine
    from clipworks.vqa.data import answer_index, grid_cache, render_items, to_input
    from clipworks.vqa.model import VQAConfig, VQAModel, soft_cross_entropy

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out.parent / ".vqa-cache"
    torch.manual_seed(cfg.seed)
    clip, _ = create_model(cfg.clip_model, device="cpu")
    config = VQAConfig(clip_model=cfg.clip_model, encoder=cfg.encoder, freeze_encoder=cfg.freeze_encoder,
                       image_size=cfg.image_size, width=cfg.width, layers=cfg.layers, heads=cfg.heads)
    model = VQAModel(config, clip)
    mean, std = model.normalisation()
    data = render_items(cfg.train_size, cfg.seed, "train", cfg.image_size, cache, progress)
    tokens = model.tokenize(data.questions)
    targets = answer_index(data.answers, config.answers)
    grid = None
    if cfg.freeze_encoder:
        grid = grid_cache(model, data, mean, std, cache / f"grid-{cfg.clip_model.replace('/', '_')}-{cfg.image_size}-"
                          f"{cfg.train_size}-{cfg.seed}.npy", progress=progress)
    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("image_tower.")]
    groups = [{"params": head, "lr": cfg.lr, "base_lr": cfg.lr}]
    if not cfg.freeze_encoder:
        encoder_lr = cfg.encoder_lr if cfg.encoder_lr is not None else (cfg.lr if cfg.encoder == "scratch" else cfg.lr / 10)
        groups.append({"params": list(model.image_tower.parameters()), "lr": encoder_lr, "base_lr": encoder_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    params = [p for g in groups for p in g["params"]]
    start = 0
    ckpt = out / "checkpoint.pt"
    if resume:
        if not ckpt.exists():
            raise CheckpointError(f"{ckpt}: nothing to resume from")
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        torch.set_rng_state(state["rng"])
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    model.train()
    bar = tqdm(total=cfg.steps, initial=start, desc=f"vqa train ({cfg.encoder}{', frozen' if cfg.freeze_encoder else ''})",
               unit="step", disable=not progress)
    t0 = time.perf_counter()
    loss_value = float("nan")
    stop = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    for step in range(start, stop):
        idx = np.sort(np.random.default_rng([cfg.seed, step]).integers(0, len(targets), cfg.batch_size))
        features = grid[idx].float() if grid is not None else model.grid(to_input(data.images[idx], mean, std))
        logits = model.forward_grid(features, tokens[idx])
        loss = soft_cross_entropy(logits, F.one_hot(targets[idx], len(config.answers)).float())
        for g in optimizer.param_groups:
            g["lr"] = warmup_cosine(step, g["base_lr"], cfg.warmup, cfg.steps, g["base_lr"] * 0.01)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        loss_value = loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}")
        if (step + 1) % 10 == 0 or step + 1 == cfg.steps:
            with (out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps({"step": step + 1, "loss": round(loss_value, 5)}) + "\n")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 in (cfg.steps, stop):
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                        "rng": torch.get_rng_state()}, tmp)
            tmp.replace(ckpt)
    bar.close()
    summary = {"steps": stop, "final_loss": loss_value, "seconds": time.perf_counter() - t0,
               "parameters": model.parameter_counts(), "out": str(out)}
    if stop == cfg.steps:
        model.eval()
        model.save_pretrained(out / "model")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
