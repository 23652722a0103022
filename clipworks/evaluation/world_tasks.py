"""Held-out evaluations on the generated world: zero-shot shape and colour on unseen colour-shape pairs,
and image<->text retrieval over held-out scenes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from clipworks.data.world import COLOURS, SHAPES, WorldDataset, single_object_dataset
from clipworks.evaluation.features import embed_images, embed_texts
from clipworks.evaluation.retrieval import retrieval_metrics
from clipworks.evaluation.zeroshot import accuracy, build_classifier, load_templates
from clipworks.model.clip import CLIP


def zero_shot_world(model: CLIP, preprocess: Callable, tokenizer: Callable, n: int = 1000, seed: int = 1,
                    split: str = "heldout") -> dict[str, Any]:
    """Shape and colour accuracy on single-object scenes; on 'heldout' every pair is unseen in training."""
    data = single_object_dataset(n, seed=seed, split=split)
    samples = [data[i] for i in range(n)]
    features = embed_images(model, preprocess, [s.image for s in samples])
    result: dict[str, Any] = {"n": n, "split": split}
    for task, names in (("shape", SHAPES), ("colour", tuple(COLOURS))):
        templates = load_templates(f"world_{task}")
        labels = torch.tensor([names.index(s.facts["objects"][0][task]) for s in samples])
        result[task] = accuracy(features, build_classifier(model, tokenizer, names, templates), labels, topk=(1, 3))
    return result


def retrieval_world(model: CLIP, preprocess: Callable, tokenizer: Callable, n: int = 1000, seed: int = 2,
                    split: str = "heldout") -> tuple[dict[str, float], list[Any], list[str], torch.Tensor]:
    """Recall@K over n scenes, each paired with its most specific (longest) caption.

    Returns (metrics, samples, captions, similarity matrix [images, captions]) for plotting."""
    data = WorldDataset(n, seed=seed, split=split)
    samples = [data[i] for i in range(n)]
    captions = [max(s.captions, key=len) for s in samples]
    image_features = embed_images(model, preprocess, [s.image for s in samples])
    text_features = embed_texts(model, tokenizer, captions)
    metrics = retrieval_metrics(image_features, text_features, torch.arange(n), ks=(1, 5, 10))
    return metrics, samples, captions, image_features @ text_features.t()
