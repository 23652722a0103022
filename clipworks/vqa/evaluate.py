"""Scoring VQA: accuracy per question type and overall, for a trained VQA model (answering with
`inference.predict`) or for zero-shot CLIP.

Zero-shot CLIP answers as CLIP-ViL tested it: each candidate answer becomes a prompt "question: Q answer: A",
and the prompt most similar to the image wins. Candidates are the answers of the question's kind (colours
for "what colour", yes/no, counts...), which is kinder to CLIP than the whole vocabulary.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipworks.data.world import COLOURS, SHAPES, SIZES
from clipworks.vqa.inference import predict
from clipworks.vqa.questions import COUNTS, TYPES, YES_NO

TEST_SEED = 1  # test items: other scenes than training's (seed 0)


def answer_candidates(question: str) -> list[str]:
    """The answers that fit a question's form."""
    q = question.lower().strip()
    if q.startswith("what colour") or q.startswith("what color"):
        return list(COLOURS)
    if q.startswith("what shape"):
        return list(SHAPES)
    if q.startswith("what size"):
        return list(SIZES)
    if q.startswith("how many"):
        return list(COUNTS)
    return list(YES_NO)


def accuracy_by_type(predicted: list[str], answers: list[str], types: list[str]) -> dict[str, float]:
    """Accuracy per question type (in TYPES order) and 'overall'."""
    return _mean_by_type([float(p == a) for p, a in zip(predicted, answers)], types)


def chance_by_type(questions: list[str], types: list[str]) -> dict[str, float]:
    """Expected accuracy of a uniform guess among each question's candidate answers."""
    return _mean_by_type([1 / len(answer_candidates(q)) for q in questions], types)


def _mean_by_type(values: list[float], types: list[str]) -> dict[str, float]:
    by: dict[str, list[float]] = defaultdict(list)
    for v, t in zip(values, types):
        by[t].append(v)
    out = {t: float(np.mean(by[t])) for t in TYPES if by[t]}
    out["overall"] = float(np.mean(values))
    return out


def evaluate_vqa(model, split: str = "heldout", size: int = 2000, seed: int = TEST_SEED,
                 cache_dir: Path | None = None, progress: bool = True, styles: str = "classic") -> dict[str, Any]:
    """A trained model's accuracy per question type on `size` generated items of `split` in `styles`."""
    from clipworks.vqa.data import render_items

    data = render_items(size, seed, split, model.config.image_size, cache_dir, progress, styles)
    predicted = predict(model, data.images, data.questions)
    return {"split": split, "styles": styles, "items": size,
            "accuracy": accuracy_by_type(predicted, data.answers, data.types),
            "chance": chance_by_type(data.questions, data.types)}


STYLE_SETS = ("train", "heldout")  # the styled world's styles seen in training, and the ones never seen


def evaluate_by_styles(model, split: str = "heldout", size: int = 2000, seed: int = TEST_SEED,
                       cache_dir: Path | None = None, progress: bool = True) -> dict[str, dict[str, Any]]:
    """`evaluate_vqa` on `split` drawn in the training styles and in the held-out styles, apart:
    {"train styles": result, "heldout styles": result}."""
    return {f"{s} styles": evaluate_vqa(model, split, size, seed, cache_dir, progress, s) for s in STYLE_SETS}


@torch.no_grad()
def zero_shot_vqa(clip, split: str = "heldout", size: int = 2000, seed: int = TEST_SEED,
                  cache_dir: Path | None = None, progress: bool = True, styles: str = "classic") -> dict[str, Any]:
    """Zero-shot CLIP on `size` generated items of `split`, at the CLIP model's own input size."""
    from clipworks.evaluation.features import embed_texts
    from clipworks.model.factory import get_tokenizer
    from clipworks.vqa.data import render_items, to_input

    image_size = clip.config.preprocess.image_size
    data = render_items(size, seed, split, image_size, cache_dir, progress, styles)
    tokenizer = get_tokenizer(clip)
    pre = clip.config.preprocess
    feats = []
    for start in range(0, size, 256):
        feats.append(clip.encode_image(to_input(data.images[start:start + 256], pre.mean, pre.std), normalize=True))
    image_features = torch.cat(feats)
    predicted = []
    prompt_cache: dict[str, torch.Tensor] = {}
    for i, q in enumerate(data.questions):
        candidates = answer_candidates(q)
        prompts = [f"question: {q} answer: {a}" for a in candidates]
        missing = [p for p in prompts if p not in prompt_cache]
        if missing:
            for p, e in zip(missing, embed_texts(clip, tokenizer, missing)):
                prompt_cache[p] = e
        text = torch.stack([prompt_cache[p] for p in prompts])
        predicted.append(candidates[int((text @ image_features[i]).argmax())])
    return {"split": split, "styles": styles, "items": size,
            "accuracy": accuracy_by_type(predicted, data.answers, data.types),
            "chance": chance_by_type(data.questions, data.types)}
