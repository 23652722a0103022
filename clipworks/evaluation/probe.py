"""Linear probe and few-shot: L2-regularised logistic regression on frozen image features.

As in the CLIP paper, the inverse regularisation strength C is swept on a validation split (a log-spaced grid,
then bisection in log space around the best value), and the final classifier is refit on train + validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from clipworks.evaluation.zeroshot import classification_metrics

C_GRID = tuple(float(c) for c in np.logspace(-3, 5, 9))
FEW_SHOT_C = 10.0  # one example per class leaves nothing to validate on: this C is used for k = 1
SHOTS = (1, 2, 4, 8, 16)


def _fit(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=1000).fit(x, y)


def _scores(model, x: np.ndarray, n_classes: int) -> torch.Tensor:
    """[N, n_classes] probabilities, with zero columns for classes missing from the training labels."""
    out = np.zeros((len(x), n_classes))
    out[:, model.classes_] = model.predict_proba(x)
    return torch.from_numpy(out)


def _val_accuracy(train_x, train_y, val_x, val_y, c: float) -> float:
    return float((_fit(train_x, train_y, c).predict(val_x) == val_y).mean())


def select_c(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
             grid: Sequence[float] = C_GRID, refine: int = 4) -> tuple[float, dict[float, float]]:
    """Best C by validation accuracy: the grid, then `refine` bisection steps in log space around the best.
    Returns (C, {C: validation accuracy}); ties go to the stronger regularisation (smaller C)."""
    sweep = {c: _val_accuracy(train_x, train_y, val_x, val_y, c) for c in grid}
    best = max(sweep, key=lambda c: (sweep[c], -c))
    step = np.log10(grid[1] / grid[0]) if len(grid) > 1 else 0.0
    for _ in range(refine if step else 0):
        step /= 2
        for c in (best / 10 ** step, best * 10 ** step):
            sweep.setdefault(c, _val_accuracy(train_x, train_y, val_x, val_y, c))
        best = max(sweep, key=lambda c: (sweep[c], -c))
    return best, dict(sorted(sweep.items()))


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): `fraction` of each class (at least one, if it has two) to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(fraction * len(idx))) if len(idx) > 1 else 0
        k = min(max(k, 1 if len(idx) > 1 else 0), len(idx) - 1)
        val.extend(idx[:k])
        train.extend(idx[k:])
    return np.array(sorted(train)), np.array(sorted(val))


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, val_fraction: float = 0.2, seed: int = 0):
    """A probe with C swept on a stratified validation split of the training features, refit on all of them
    (its `C_` and `sweep_` attributes say what was chosen)."""
    tr, va = _stratified_split(train_y, val_fraction, seed)
    c, sweep = select_c(train_x[tr], train_y[tr], train_x[va], train_y[va])
    model = _fit(train_x, train_y, c)
    model.C_, model.sweep_ = float(c), [[float(k), v] for k, v in sweep.items()]
    return model


def probe_scores(model, x: np.ndarray, n_classes: int) -> torch.Tensor:
    """[N, n_classes] class probabilities of a fitted probe."""
    return _scores(model, x, n_classes)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 n_classes: int, val_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Sweep C on a stratified validation split of the training features, refit on all of them, score test."""
    model = fit_probe(train_x, train_y, val_fraction, seed)
    metrics = classification_metrics(_scores(model, test_x, n_classes), torch.from_numpy(test_y))
    return {"metrics": metrics, "C": model.C_, "sweep": model.sweep_,
            "n_train": int(len(train_y)), "n_test": int(len(test_y))}


def _cv_c(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> float:
    """C for k shots per class: k-fold cross-validation over the shots when k >= 2."""
    if k < 2:
        return FEW_SHOT_C
    folds = min(k, 4)
    order = np.random.default_rng(seed).permutation(len(y))
    rank = np.empty(len(y), dtype=int)
    for c in np.unique(y):  # deal each class's shots round-robin into folds
        members = order[np.isin(order, np.flatnonzero(y == c))]
        rank[members] = np.arange(len(members)) % folds
    scores = {}
    for c in C_GRID[1:-1]:
        scores[c] = np.mean([_val_accuracy(x[rank != f], y[rank != f], x[rank == f], y[rank == f], c) for f in range(folds)])
    return max(scores, key=lambda c: (scores[c], -c))


def few_shot(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, n_classes: int,
             shots: Sequence[int] = SHOTS, seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> dict[str, Any]:
    """For each k: k training images per class drawn with each seed; top-1 as mean and std over the seeds."""
    out: dict[str, Any] = {}
    for k in shots:
        runs = []
        for seed in seeds:
            rng = np.random.default_rng(1000 * k + seed)
            idx = np.concatenate([rng.choice(np.flatnonzero(train_y == c), size=min(k, int((train_y == c).sum())),
                                             replace=False) for c in np.unique(train_y)])
            c = _cv_c(train_x[idx], train_y[idx], k, seed)
            model = _fit(train_x[idx], train_y[idx], c)
            runs.append(classification_metrics(_scores(model, test_x, n_classes), torch.from_numpy(test_y))["top1"])
        out[str(k)] = {"top1_mean": float(np.mean(runs)), "top1_std": float(np.std(runs)), "runs": runs}
    return out
