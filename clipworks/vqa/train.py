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

from clipworks.training.run import read_checkpoint, train_steps
from clipworks.vqa.config import VQATrainConfig


def train_vqa(cfg: VQATrainConfig, resume: bool = False, progress: bool = True,
              stop_after: int | None = None) -> dict[str, Any]:
    """Train (or continue) a VQA model into `cfg.out`: checkpoint.pt, model/, metrics.jsonl, summary.json."""
    from clipworks.model.factory import create_model
    from clipworks.vqa.data import answer_index, grid_cache, render_items, to_input
    from clipworks.vqa.model import VQAConfig, VQAModel, soft_cross_entropy

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out.parent / ".vqa-cache"
    torch.manual_seed(cfg.seed)
    clip, _ = create_model(cfg.clip_model, device="cpu")
    config = VQAConfig(clip_model=cfg.clip_model, encoder=cfg.encoder, freeze_encoder=cfg.freeze_encoder,
                       image_size=cfg.image_size, width=cfg.width, layers=cfg.layers, heads=cfg.heads,
                       token_adapter=cfg.token_adapter, cell_coordinates=cfg.cell_coordinates,
                       grid_blocks=cfg.grid_blocks, glimpses=cfg.glimpses, classifier_hidden=cfg.classifier_hidden)
    model = VQAModel(config, clip)
    mean, std = model.normalisation()
    data = render_items(cfg.train_size, cfg.seed, "train", cfg.image_size, cache, progress, styles=cfg.styles)
    tokens = model.tokenize(data.questions)
    tokens = tokens[:, :int((tokens != 0).sum(dim=1).max())]  # trailing padding is masked: dropping it is exact
    # the text tower is frozen: each question's token features are computed once, not every step
    question_features = torch.cat([model.question_features(tokens[s:s + 512]) for s in range(0, len(tokens), 512)])
    targets = answer_index(data.answers, config.answers)
    grid = None
    if cfg.freeze_encoder:
        grid = grid_cache(model, data, cache, progress=progress)
    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("image_tower.")]
    groups = [{"params": head, "lr": cfg.lr}]
    if not cfg.freeze_encoder:
        encoder_lr = cfg.encoder_lr if cfg.encoder_lr is not None else (cfg.lr if cfg.encoder == "scratch" else cfg.lr / 10)
        groups.append({"params": list(model.image_tower.parameters()), "lr": encoder_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    state = read_checkpoint(out) if resume else None
    start = 0 if state is None else int(state["step"])
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    def logits_of(idx: np.ndarray) -> torch.Tensor:
        features = grid[idx].float() if grid is not None else model.grid(to_input(data.images[idx], mean, std))
        return model.forward_grid(features, tokens[idx], question_features[idx])

    def step(s: int) -> torch.Tensor:
        idx = np.sort(np.random.default_rng([cfg.seed, s]).integers(0, len(targets), cfg.batch_size))
        logits = logits_of(idx)
        loss = soft_cross_entropy(logits, F.one_hot(targets[idx], len(config.answers)).float())
        loss.backward()
        return loss

    model.train()
    t0 = time.perf_counter()
    stop = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    loss_value = train_steps(model, optimizer, step, out, steps=cfg.steps, warmup=cfg.warmup, config=asdict(cfg),
                             batch_size=cfg.batch_size, stop=stop, resume_state=state,
                             checkpoint_every=cfg.checkpoint_every,
                             desc=f"vqa train ({cfg.encoder}{', frozen' if cfg.freeze_encoder else ''})", progress=progress)
    summary = {"steps": stop, "final_loss": loss_value, "seconds": time.perf_counter() - t0,
               "parameters": model.parameter_counts(), "out": str(out)}
    if stop == cfg.steps:
        model.eval()
        summary["train_accuracy"] = _training_fit(logits_of, data, config.answers)
        model.save_pretrained(out / "model")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@torch.no_grad()
def _training_fit(logits_of, data, answers: list[str], size: int = 2000, batch_size: int = 256) -> dict[str, float]:
    """Accuracy per question type on the first `size` training items: whether the model fits what it saw."""
    from clipworks.vqa.evaluate import accuracy_by_type

    n = min(size, len(data.answers))
    predicted = [answers[i] for s in range(0, n, batch_size)
                 for i in logits_of(np.arange(s, min(s + batch_size, n))).argmax(dim=-1).tolist()]
    return accuracy_by_type(predicted, data.answers[:n], data.types[:n])
