"""Training video models: CLIP4Clip (captions, symmetric InfoNCE) and ActionCLIP (label prompts, KL to the
multi-positive target) on frozen-trunk features computed once, with separate learning rates for CLIP's weights
and the new layers, warmup + cosine, checkpoints and exact resume (each step's batch is seeded by the step)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipworks.errors import ConfigError, InputFileError
from clipworks.training.run import read_checkpoint, train_steps
from clipworks.video.config import TRAIN_METHODS, VideoTrainConfig


def check_config(cfg: VideoTrainConfig) -> None:
    if cfg.method not in TRAIN_METHODS:
        raise ConfigError(f"method must be one of {', '.join(TRAIN_METHODS)}; got {cfg.method!r}")
    if cfg.fusion not in ("meanP", "seqTransf"):
        raise ConfigError(f"fusion must be meanP or seqTransf; got {cfg.fusion!r}")
    if cfg.loss not in ("auto", "kl", "infonce"):
        raise ConfigError(f"loss must be auto, kl or infonce; got {cfg.loss!r}")
    if cfg.batch_size < 2:
        raise ConfigError(f"batch_size must be at least 2 for a contrastive loss; got {cfg.batch_size}")
    if cfg.label_weight < 0 or (cfg.label_weight and cfg.method == "actionclip"):
        raise ConfigError(f"label_weight must be >= 0 and adds label prompts to a caption method; got "
                          f"{cfg.label_weight} with method {cfg.method!r}")
    from clipworks.data.styles import HELDOUT_STYLES
    from clipworks.video.world import drawn_styles, style_spec

    try:
        held = [s for s in drawn_styles(style_spec(cfg.styles)) if s in HELDOUT_STYLES]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if held:
        raise ConfigError(f"styles {cfg.styles!r} include the held-out style(s) {', '.join(held)}, which no training "
                          "run may see; use 'classic', 'train' or names of train styles")


def train_video(cfg: VideoTrainConfig, resume: bool = False, progress: bool = True,
                stop_after: int | None = None) -> dict[str, Any]:
    """Train (or continue) a video model into `cfg.out`: checkpoint.pt, model/, metrics.jsonl, summary.json."""
    from clipworks.cache import weights_hash
    from clipworks.model.factory import create_model, get_tokenizer
    from clipworks.training.contrastive import param_groups
    from clipworks.video.data import folder_tensors, world_tensors
    from clipworks.video.losses import kl_multi_positive, symmetric_cross_entropy
    from clipworks.video.model import VideoCLIP, VideoConfig
    from clipworks.video.world import ACTION_TEMPLATES

    check_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out.parent / ".video-cache"
    torch.manual_seed(cfg.seed)
    actionclip = cfg.method == "actionclip"
    loss_name = cfg.loss if cfg.loss != "auto" else ("kl" if actionclip else "infonce")
    clip, _ = create_model(cfg.clip_model, device="cpu")
    config = VideoConfig(method=cfg.fusion if actionclip else cfg.method, clip_model=cfg.clip_model,
                         num_frames=cfg.num_frames, temporal_layers=cfg.temporal_layers, train_visual=cfg.train_visual,
                         templates=ACTION_TEMPLATES if actionclip else (), clip_weights=weights_hash(clip),
                         where_glimpses=cfg.where_glimpses)
    model = VideoCLIP(config, clip)
    if cfg.data == "world":
        data = world_tensors(model, cfg.train_size, cfg.seed, "train", cache, progress, styles=cfg.styles)
    else:
        data = folder_tensors(model, cfg.data, cache, progress)
    if actionclip or cfg.label_weight:
        model.config = config = replace(config, labels=tuple(sorted(set(data.labels))), templates=ACTION_TEMPLATES)
    tokenizer = get_tokenizer(clip)
    if cfg.compact_vocab:
        prompts = [t.format(label) for t in ACTION_TEMPLATES for label in config.labels]
        model.compact_vocabulary(vocabulary_ids(tokenizer, [c for cs in data.captions for c in cs] + prompts))
        config = model.config
    if actionclip:
        usable = np.arange(len(data))
    else:
        usable = np.array([i for i, c in enumerate(data.captions) if c])
        if not len(usable):
            raise InputFileError(f"{cfg.data}: no video has captions (a same-name .txt, one caption a line)")
    if len(usable) < cfg.batch_size:
        raise ConfigError(f"{len(usable)} usable videos, fewer than batch_size {cfg.batch_size}")
    groups: dict[int, list[int]] = {}
    for i in usable:
        groups.setdefault(data.groups[i], []).append(int(i))
    clip_groups = [dict(g, lr=cfg.lr_clip) for g in param_groups(model.clip, cfg.weight_decay)]
    own = ((n, p) for n, p in model.named_parameters() if not n.startswith("clip."))
    new_groups = [dict(g, lr=cfg.lr_new) for g in param_groups(own, cfg.weight_decay)]
    optimizer = torch.optim.AdamW([g for g in clip_groups + new_groups if g["params"]], betas=(0.9, 0.98), eps=1e-6)
    state = read_checkpoint(out) if resume else None
    start = 0 if state is None else int(state["step"])
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    def step(s: int) -> torch.Tensor:
        rng = np.random.default_rng([cfg.seed, s])
        idx = batch_indices(rng, groups, cfg.batch_size)
        frames = model.frame_features(data.trunk[idx].float())
        if actionclip:
            texts = [ACTION_TEMPLATES[rng.integers(len(ACTION_TEMPLATES))].format(data.labels[i]) for i in idx]
        else:
            texts = [data.captions[i][rng.integers(len(data.captions[i]))] for i in idx]
        logits = model.logits(model.encode_text(tokenizer(texts)), frames, data.mask[idx])  # [texts, videos]
        if loss_name == "kl":
            loss = kl_multi_positive(logits.t(), [data.labels[i] for i in idx])
        else:
            loss = symmetric_cross_entropy(logits)
        if cfg.label_weight:  # captions and label prompts, one model for search and classification
            # one template per step, so each label present is one prompt, encoded once (clips of a label share it)
            template = ACTION_TEMPLATES[rng.integers(len(ACTION_TEMPLATES))]
            labels = [data.labels[i] for i in idx]
            names = sorted(set(labels))
            prompts = model.encode_text(tokenizer([template.format(name) for name in names]))
            rows = torch.tensor([names.index(label) for label in labels])
            label_logits = model.logits(prompts[rows], frames, data.mask[idx])  # [clips' prompts, videos]
            loss = loss + cfg.label_weight * kl_multi_positive(label_logits.t(), labels)
        loss.backward()
        return loss

    stop = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    model.train()
    t0 = time.perf_counter()
    loss = train_steps(model, optimizer, step, out, steps=cfg.steps, warmup=cfg.warmup, config=asdict(cfg),
                       batch_size=cfg.batch_size, stop=stop, resume_state=state, checkpoint_every=cfg.checkpoint_every,
                       desc=f"video {cfg.method}", progress=progress)
    seconds = time.perf_counter() - t0
    model.eval()
    model.save_pretrained(out / "model")
    described = loss_name + (f" + {cfg.label_weight:g} x label kl" if cfg.label_weight else "")
    summary = {"method": cfg.method, "similarity": config.method, "loss": described, "steps_done": stop,
               "final_loss": loss, "train_seconds": round(seconds, 1), "train_videos": len(usable),
               "skipped": [list(s) for s in data.skipped], "trainable_parameters": {
                   "clip": sum(p.numel() for p in model.clip_parameters()),
                   "new": sum(p.numel() for p in model.new_parameters())}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def vocabulary_ids(tokenizer, texts: list[str]) -> tuple[int, ...]:
    """The token ids (start and end of text and padding included) that `texts` use, sorted."""
    ids: set[int] = set()
    unique = sorted(set(texts))
    for start in range(0, len(unique), 1024):
        ids.update(tokenizer(unique[start:start + 1024]).unique().tolist())
    return tuple(sorted(ids))


def batch_indices(rng: np.random.Generator, groups: dict[int, list[int]], batch_size: int) -> np.ndarray:
    """`batch_size` distinct clips, taken a whole group at a time (the world's groups share their objects, so the
    batch holds hard negatives); the last group may be cut."""
    keys = list(groups)
    picked: list[int] = []
    for g in rng.permutation(len(keys)):
        picked += groups[keys[g]]
        if len(picked) >= batch_size:
            break
    return np.sort(np.array(picked[:batch_size]))

