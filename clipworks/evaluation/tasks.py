"""The four evaluation tasks, each turning (model, data) into one JSON-able result record."""

from __future__ import annotations

import inspect
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipworks.errors import InputFileError
from clipworks.evaluation.datasets import ClassificationSet, load_classification, load_retrieval
from clipworks.evaluation.features import embed_images, embed_texts
from clipworks.evaluation.probe import SHOTS, few_shot, linear_probe
from clipworks.evaluation.retrieval import retrieval_metrics
from clipworks.evaluation.zeroshot import (build_classifier, candidate_logits, classification_metrics, confusion_matrix,
                                           load_templates, plot_confusion)
from clipworks.model.clip import CLIP

TASKS = ("zeroshot", "probe", "fewshot", "retrieval")


def environment() -> dict[str, Any]:
    """Versions and hardware, recorded with every result."""
    import clipworks

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"versions": {"clipworks": clipworks.__version__, "torch": torch.__version__, "python": platform.python_version()},
            "hardware": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                         "torch_threads": torch.get_num_threads(), "gpu": gpu}}


def zeroshot(model: CLIP, preprocess: Callable, tokenizer: Callable, data: str, templates: str | None = None,
             n: int | None = None, plot_dir: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Zero-shot top-1/top-5/mean per-class recall and the confusion matrix (plotted into `plot_dir`)."""
    ds = load_classification(data, split="eval", n=n)
    features = embed_images(model, preprocess, ds.images, progress=progress)
    labels = torch.from_numpy(ds.labels)
    logits, used = zero_shot_logits(model, tokenizer, features, ds, templates)
    matrix = confusion_matrix(logits.argmax(dim=1), labels, len(ds.classnames))
    out: dict[str, Any] = {"metrics": classification_metrics(logits, labels), "templates": used,
                           "classnames": ds.classnames, "confusion": matrix.tolist(), "n": len(ds.labels),
                           "chance": 1.0 / len(ds.classnames), "skipped": ds.skipped}
    if plot_dir is not None:
        plot_dir.mkdir(parents=True, exist_ok=True)
        out["plots"] = [str(plot_confusion(matrix, ds.classnames, plot_dir / "confusion.png",
                                           f"zero-shot {data}: top-1 {out['metrics']['top1']:.3f}"))]
    return out


def zero_shot_logits(model: CLIP, tokenizer: Callable, features: torch.Tensor, ds: ClassificationSet,
                     templates: str | None = None) -> tuple[torch.Tensor, str]:
    """(logits, what was scored): each image against its own candidates where the data set has them (and no
    templates are asked for), else against class names x templates (the data set's own set by default)."""
    if ds.prompts is not None and templates is None:
        return candidate_logits(model, tokenizer, features, ds.prompts), "per-image candidates"
    used = templates or ds.templates
    return features @ build_classifier(model, tokenizer, ds.classnames, load_templates(used)), used


def probe_features(model: CLIP, preprocess: Callable, data: str, n: int | None = None, progress: bool = False
                   ) -> tuple[ClassificationSet, np.ndarray, ClassificationSet, np.ndarray]:
    """(train set, its features, test set, its features) with float64 features, as the probes take them."""
    train = load_classification(data, split="train", n=n)
    test = load_classification(data, split="test", n=n)
    if train.classnames != test.classnames:
        raise InputFileError(f"{data}: train and test have different classes")
    x_train = embed_images(model, preprocess, train.images, progress=progress).numpy().astype(np.float64)
    x_test = embed_images(model, preprocess, test.images, progress=progress).numpy().astype(np.float64)
    return train, x_train, test, x_test


def _skipped(train: ClassificationSet, test: ClassificationSet) -> dict[str, int]:
    return {k: train.skipped.get(k, 0) + test.skipped.get(k, 0) for k in {*train.skipped, *test.skipped}}


def probe(model: CLIP, preprocess: Callable, tokenizer: Callable, data: str, n: int | None = None,
          plot_dir: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Linear probe with C swept on a validation split of the training images."""
    train, x_train, test, x_test = probe_features(model, preprocess, data, n, progress)
    out = linear_probe(x_train, train.labels, x_test, test.labels, len(test.classnames))
    out.update(classnames=test.classnames, chance=1.0 / len(test.classnames), skipped=_skipped(train, test))
    return out


def fewshot(model: CLIP, preprocess: Callable, tokenizer: Callable, data: str, n: int | None = None,
            shots: Sequence[int] = SHOTS, seeds: int = 5, plot_dir: Path | None = None,
            progress: bool = False) -> dict[str, Any]:
    """k-shot linear probes, k in `shots`, each repeated over `seeds` draws; mean and std of top-1."""
    train, x_train, test, x_test = probe_features(model, preprocess, data, n, progress)
    classnames = test.classnames
    per_k = few_shot(x_train, train.labels, x_test, test.labels, len(classnames), shots=shots, seeds=tuple(range(seeds)))
    metrics = {f"{k}shot_top1": v["top1_mean"] for k, v in per_k.items()}
    metrics.update({f"{k}shot_top1_std": v["top1_std"] for k, v in per_k.items()})
    return {"metrics": metrics, "shots": per_k, "classnames": classnames, "chance": 1.0 / len(classnames),
            "skipped": _skipped(train, test)}


def retrieval(model: CLIP, preprocess: Callable, tokenizer: Callable, data: str, n: int | None = None,
              plot_dir: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Image->text and text->image recall@1/5/10, mean and median rank (several captions per image)."""
    ds = load_retrieval(data, n=n)
    image_features = embed_images(model, preprocess, ds.images, progress=progress)
    text_features = embed_texts(model, tokenizer, ds.captions)
    metrics = retrieval_metrics(image_features, text_features, torch.from_numpy(ds.text_to_image))
    return {"metrics": metrics, "n_images": len(ds.images), "n_captions": len(ds.captions), "skipped": ds.skipped}


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {"zeroshot": zeroshot, "probe": probe, "fewshot": fewshot,
                                                     "retrieval": retrieval}


def run_task(task: str, model: CLIP, preprocess: Callable, tokenizer: Callable, data: str, model_name: str,
             **options: Any) -> dict[str, Any]:
    """One result record: task, model, data, metrics, details, versions, hardware, wall time."""
    if task not in RUNNERS:
        raise InputFileError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    start = time.perf_counter()
    runner = RUNNERS[task]
    accepted = inspect.signature(runner).parameters
    details = runner(model, preprocess, tokenizer, data, **{k: v for k, v in options.items() if v is not None and k in accepted})
    record = {"task": task, "model": model_name, "data": data, "metrics": details.pop("metrics")}
    record["details"] = details
    record.update(environment())
    record["wall_time_s"] = round(time.perf_counter() - start, 3)
    record["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record
