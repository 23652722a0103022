"""Training ClipCap: CLIP image embeddings are computed once and cached; each step draws captions for a batch
of cached embeddings and minimises the caption-token cross-entropy. Checkpoints every N steps; `resume`
continues from the last one with the same batches (each step's draw is seeded by the step)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipworks.cache import cached, data_identity, weights_hash
from clipworks.captioning.config import CaptionTrainConfig
from clipworks.captioning.model import CaptionerConfig, ClipCap
from clipworks.captioning.tokenizer import gpt2_tokenizer
from clipworks.errors import InputFileError
from clipworks.training.run import read_checkpoint, train_steps


def embedding_cache(clip_model: str, data: str, options: dict[str, Any], cache_dir: Path,
                    progress: bool = True) -> tuple[np.ndarray, list[list[str]], str]:
    """(CLIP image embeddings [N, D], captions per item, skip summary) for a data source, computed once per
    (CLIP weights, data, options). Unreadable images and empty or unreadable caption files are skipped and counted."""
    from clipworks.model.factory import create_model

    model, preprocess = create_model(clip_model, device="cpu")
    key = {"weights": weights_hash(model), "data": data_identity(data), "options": options}
    found = cached(cache_dir, "clip-embeddings", key,
                   lambda: _embed_captioned(model, preprocess, data, options, progress))
    return found["embeddings"], found["captions"], found["skipped"]


def _embed_captioned(model, preprocess, data: str, options: dict[str, Any], progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    from clipworks.data import open_pairs
    from clipworks.data.skips import SkipReport
    from clipworks.data.types import Sample
    from clipworks.evaluation.features import embed_images

    dataset = open_pairs(data, **options)
    embeddings, captions = [], []
    report = SkipReport(total=len(dataset))
    batch: list = []

    def flush() -> None:
        if batch:
            embeddings.append(embed_images(model, preprocess, [s.image for s in batch]).numpy())
            captions.extend(s.captions for s in batch)
            batch.clear()

    for i in tqdm(range(len(dataset)), desc="CLIP embeddings", unit="img", disable=not progress):
        item = dataset[i]
        report.add(item)
        if isinstance(item, Sample):
            batch.append(item)
            if len(batch) == 256:
                flush()
    flush()
    if not captions:
        raise InputFileError(f"{data}: no image with a caption to train on ({report.summary()}; {report.first()})")
    return {"embeddings": np.concatenate(embeddings).astype(np.float32), "captions": [list(c) for c in captions],
            "skipped": report.summary()}


def encode_captions(tokenizer, texts: list[str], max_tokens: int, vocab=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, mask) [B, T]: each caption's ids then the end token, cut at max_tokens, padded with mask 0.
    With `vocab` (a model.Vocabulary) the ids are the LM's compact ids."""
    eos = tokenizer.eos_token_id if vocab is None else vocab.eos
    rows = [tokenizer(t)["input_ids"][: max_tokens - 1] for t in texts]
    rows = [(r if vocab is None else vocab.encode(r)) + [eos] for r in rows]
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), eos, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return tokens, mask


def _pretrained_lm(cfg: CaptionTrainConfig, model: ClipCap, captions: list[list[str]], tokenizer, cache_dir: Path,
                   progress: bool) -> dict[str, torch.Tensor]:
    """The LM's weights after `lm_pretrain_steps` of next-token prediction on the captions alone, computed once
    per (initial LM weights, vocabulary, captions, settings)."""
    lm = model.lm
    key = {"lm": weights_hash(lm), "vocab": model.config.vocab,
           "captions": hashlib.sha256(json.dumps(captions).encode()).hexdigest(),
           **{k: getattr(cfg, k) for k in ("lm_pretrain_steps", "seed", "lr", "warmup", "batch_size", "max_tokens")}}

    def pretrain() -> dict[str, np.ndarray]:
        lm.requires_grad_(True)
        lm.train()
        optimizer = torch.optim.AdamW(lm.parameters(), lr=cfg.lr, weight_decay=0.01)
        eos = model.vocab.eos

        def step(s: int) -> torch.Tensor:
            rng = np.random.default_rng([cfg.seed, 10**6 + s])
            idx = rng.integers(0, len(captions), cfg.batch_size)
            tokens, mask = encode_captions(tokenizer, [captions[i][rng.integers(0, len(captions[i]))] for i in idx],
                                           cfg.max_tokens, model.vocab)
            inputs = torch.cat([torch.full((len(idx), 1), eos), tokens[:, :-1]], dim=1)
            attention = torch.cat([torch.ones(len(idx), 1, dtype=mask.dtype), mask[:, :-1]], dim=1)
            logits = lm(input_ids=inputs, attention_mask=attention).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     tokens.masked_fill(mask == 0, -100).reshape(-1), ignore_index=-100)
            loss.backward()
            return loss

        train_steps(lm, optimizer, step, None, steps=cfg.lm_pretrain_steps, warmup=cfg.warmup, config={},
                    batch_size=cfg.batch_size, desc="LM pre-training", progress=progress)
        return {k: v.detach().numpy() for k, v in lm.state_dict().items()}

    return {k: torch.from_numpy(v) for k, v in cached(cache_dir, "lm", key, pretrain).items()}


def train_captioner(cfg: CaptionTrainConfig, resume: bool = False, progress: bool = True,
                    stop_after: int | None = None) -> dict[str, Any]:
    """Train (or continue) a captioner into `cfg.out`: checkpoint.pt, model/, metrics.jsonl.
    `stop_after` ends this call after that many steps (with a checkpoint); `resume` continues it."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    embeddings, captions, skipped = embedding_cache(cfg.clip_model, cfg.data, cfg.data_options,
                                                    out.parent / ".clipcap-cache", progress)
    tokenizer = gpt2_tokenizer()
    vocab = None
    if cfg.compact_vocab and not cfg.lm_path:
        from clipworks.captioning.model import Vocabulary

        vocab = Vocabulary.from_captions(sorted({c for cs in captions for c in cs}), tokenizer)
    torch.manual_seed(cfg.seed)
    model = ClipCap(CaptionerConfig(clip_dim=embeddings.shape[1], clip_model=cfg.clip_model, mapper=cfg.mapper,
                                    prefix_length=cfg.prefix_length, freeze_lm=cfg.freeze_lm, lm=cfg.lm,
                                    lm_path=cfg.lm_path, vocab=vocab))
    pretrain_start = time.perf_counter()
    if cfg.lm_pretrain_steps and not resume:
        with torch.random.fork_rng():  # the same training RNG whether the pre-trained LM is computed or cached
            torch.manual_seed(cfg.seed + 1)
            pretrained = _pretrained_lm(cfg, model, captions, tokenizer, out.parent / ".clipcap-cache", progress)
        model.lm.load_state_dict(pretrained)
        if cfg.freeze_lm:
            model.lm.requires_grad_(False)
    pretrain_seconds = time.perf_counter() - pretrain_start  # 0 when the pre-trained LM came from the cache
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    state = read_checkpoint(out) if resume else None
    start = 0 if state is None else int(state["step"])
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    emb = torch.from_numpy(embeddings)

    def step(s: int) -> torch.Tensor:
        rng = np.random.default_rng([cfg.seed, s])
        idx = rng.integers(0, len(captions), cfg.batch_size)
        texts = [captions[i][rng.integers(0, len(captions[i]))] for i in idx]
        tokens, mask = encode_captions(tokenizer, texts, cfg.max_tokens, model.vocab)
        loss = model(emb[idx], tokens, mask)
        loss.backward()
        return loss

    model.train()
    t0 = time.perf_counter()
    stop = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    loss_value = train_steps(model, optimizer, step, out, steps=cfg.steps, warmup=cfg.warmup, config=asdict(cfg),
                             batch_size=cfg.batch_size, stop=stop, resume_state=state,
                             checkpoint_every=cfg.checkpoint_every, desc="caption train", progress=progress)
    summary = {"steps": stop, "final_loss": loss_value, "seconds": time.perf_counter() - t0,
               "lm_pretrain_seconds": pretrain_seconds, "parameters": model.parameter_counts(), "data": skipped,
               "out": str(out)}
    if stop == cfg.steps:
        model.eval()
        model.save_pretrained(out / "model")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
