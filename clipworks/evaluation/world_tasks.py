"""Held-out evaluations on the generated world: zero-shot shape and colour on unseen colour-shape pairs and
on each drawing style, image<->text retrieval over held-out scenes, and ARO-style swapped-caption tests."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

from clipworks.data.styles import COLOURLESS_STYLES

from clipworks.data.world import COLOURS, SHAPES, WorldDataset, sample_scene, single_object_dataset
from clipworks.data import world as world_lib
from clipworks.evaluation.features import embed_images, embed_texts
from clipworks.evaluation.retrieval import retrieval_metrics
from clipworks.evaluation.zeroshot import accuracy, build_classifier, load_templates
from clipworks.model.clip import CLIP


def zero_shot_world(model: CLIP, preprocess: Callable, tokenizer: Callable, n: int = 1000, seed: int = 1,
                    split: str = "heldout", styles: str | Sequence[str] = "classic", image_size: int = 64
                    ) -> dict[str, Any]:
    """Shape and colour accuracy on single-object scenes; on 'heldout' every pair is unseen in training.
    `styles` picks the drawing styles (`clipworks.data.styles`); colour is left out where they have none.
    Scenes are rendered at `image_size` pixels (the model's preprocessing resizes them to its input)."""
    data = single_object_dataset(n, seed=seed, split=split, styles=styles, image_size=image_size)
    samples = [data[i] for i in range(n)]
    features = embed_images(model, preprocess, [s.image for s in samples])
    result: dict[str, Any] = {"n": n, "split": split, "styles": styles if isinstance(styles, str) else list(styles)}
    coloured = not any(s in COLOURLESS_STYLES for s in ([styles] if isinstance(styles, str) else styles))
    for task, names in (("shape", SHAPES), ("colour", tuple(COLOURS)))[: 2 if coloured else 1]:
        templates = load_templates(f"world_{task}")
        labels = torch.tensor([names.index(s.facts["objects"][0][task]) for s in samples])
        result[task] = accuracy(features, build_classifier(model, tokenizer, names, templates), labels, topk=(1, 3))
    return result


def retrieval_world(model: CLIP, preprocess: Callable, tokenizer: Callable, n: int = 1000, seed: int = 2,
                    split: str = "heldout", styles: str | Sequence[str] = "classic", image_size: int = 64
                    ) -> tuple[dict[str, float], list[Any], list[str], torch.Tensor]:
    """Recall@K over n scenes, each paired with its most specific (longest) caption.

    Returns (metrics, samples, captions, similarity matrix [images, captions]) for plotting."""
    data = WorldDataset(n, seed=seed, split=split, styles=styles, image_size=image_size)
    samples = [data[i] for i in range(n)]
    captions = [max(s.captions, key=len) for s in samples]
    image_features = embed_images(model, preprocess, [s.image for s in samples])
    text_features = embed_texts(model, tokenizer, captions)
    metrics = retrieval_metrics(image_features, text_features, torch.arange(n), ks=(1, 5, 10))
    return metrics, samples, captions, image_features @ text_features.t()


def _two_object_scenes(n: int, seed: int, styles: str | Sequence[str], keep: Callable) -> list:
    """n scenes of two objects differing in colour and shape for which keep(scene) holds."""
    rng = random.Random(seed)
    scenes = []
    while len(scenes) < n:
        scene = sample_scene(rng, "train", (2, 2), styles=styles)
        if len(scene.objects) == 2 and scene.has_colour:
            a, b = scene.objects
            if a.colour != b.colour and a.shape != b.shape and keep(scene):
                scenes.append(scene)
    return scenes


def aro_world(model: CLIP, preprocess: Callable, tokenizer: Callable, n: int = 1000, seed: int = 3,
              styles: str | Sequence[str] = "train", image_size: int = 64) -> dict[str, Any]:
    """ARO-style order tests on two-object scenes: how often the true caption outscores its swapped twin.

    relation: "a red circle to the left of a blue square" vs "a blue square to the left of a red circle";
    attribute: "a red circle and a blue square" vs "a blue circle and a red square". Chance is 50%."""
    spatial = ("left of", "right of", "above", "below")
    phrases = world_lib._RELATION_PHRASES
    result: dict[str, Any] = {"n": n, "styles": styles if isinstance(styles, str) else list(styles)}
    for task in ("relation", "attribute"):
        scenes = _two_object_scenes(n, seed + (0 if task == "relation" else 1), styles,
                                    (lambda s: any(r in spatial for _, r, _ in s.relations())) if task == "relation"
                                    else (lambda s: True))
        pick = random.Random(seed + 7)
        true, swapped = [], []
        for scene in scenes:
            a, b = scene.objects
            if task == "relation":
                i, relation, j = pick.choice([t for t in scene.relations() if t[1] in spatial])
                x, y = world_lib._name(scene.objects[i]), world_lib._name(scene.objects[j])
                true.append(f"{x} {phrases[relation]} {y}")
                swapped.append(f"{y} {phrases[relation]} {x}")
            else:
                true.append(f"{world_lib._name(a)} and {world_lib._name(b)}")
                swapped.append(f"{world_lib._a(f'{b.colour} {a.shape}')} and {world_lib._a(f'{a.colour} {b.shape}')}")
        images = embed_images(model, preprocess, [world_lib.render(s, image_size) for s in scenes])
        t_true, t_swapped = embed_texts(model, tokenizer, true), embed_texts(model, tokenizer, swapped)
        wins = ((images * t_true).sum(-1) > (images * t_swapped).sum(-1)).double()
        result[task] = wins.mean().item()
        result[f"{task}_example"] = [true[0], swapped[0]]
    return result


def order_probe_world(model: CLIP, preprocess: Callable, tokenizer: Callable, n: int = 3000, seed: int = 4,
                      styles: str | Sequence[str] = "train", image_size: int = 64) -> dict[str, Any]:
    """Is "which colour is on the left" in the embeddings at all? Two-object scenes with a left-of relation
    between different colours; a logistic-regression probe (fit on 2/3, scored on the rest) predicts whether
    the left object's colour name sorts first, from the image embedding and from the embedding of the caption
    "<left> to the left of <right>". Chance is about 50%; an embedding that binds colour to position reaches
    near 100%, one that holds only the bag of colours stays at chance."""
    from sklearn.linear_model import LogisticRegression

    scenes = _two_object_scenes(n, seed, styles, lambda s: any(r == "left of" for _, r, _ in s.relations()))
    labels, captions = [], []
    for scene in scenes:
        i, _, j = next(t for t in scene.relations() if t[1] == "left of")
        left, right = scene.objects[i], scene.objects[j]
        labels.append(int(left.colour < right.colour))
        captions.append(f"{world_lib._name(left)} to the left of {world_lib._name(right)}")
    images = embed_images(model, preprocess, [world_lib.render(s, image_size) for s in scenes]).numpy()
    texts = embed_texts(model, tokenizer, captions).numpy()
    cut = 2 * n // 3
    result: dict[str, Any] = {"n": n, "test": n - cut}
    for name, x in (("image", images), ("caption", texts)):
        probe = LogisticRegression(C=10.0, max_iter=3000).fit(x[:cut], labels[:cut])
        result[name] = float(probe.score(x[cut:], labels[cut:]))
    result["majority"] = max(sum(labels[cut:]), n - cut - sum(labels[cut:])) / (n - cut)
    return result
