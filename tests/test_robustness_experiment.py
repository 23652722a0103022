"""The effective-robustness experiment end to end on a tiny budget: every style measured for every model, the
gap computed from the per-style figures, and the report, JSON and figure written."""

from __future__ import annotations

import json

import numpy as np

from clipworks.data.styles import HELDOUT_STYLES, STYLES, TRAIN_STYLES
from clipworks.experiments.robustness import main, summarise


def test_summary_is_the_mean_over_train_styles_minus_the_mean_over_heldout_styles():
    per_style = {s: {"shape": (k + 1) / 20} for k, s in enumerate(STYLES)}
    summary = summarise(per_style)
    ind = np.mean([per_style[s]["shape"] for s in TRAIN_STYLES])
    ood = np.mean([per_style[s]["shape"] for s in HELDOUT_STYLES])
    assert abs(summary["in_distribution"] - ind) < 1e-12 and abs(summary["shifted_mean"] - ood) < 1e-12
    assert abs(summary["gap"] - (ind - ood)) < 1e-12
    assert summary[f"shifted_{HELDOUT_STYLES[0]}"] == per_style[HELDOUT_STYLES[0]]["shape"]


def test_the_report_covers_every_style_and_model(tmp_path):
    assert main(["--out", str(tmp_path), "--n", "16", "--train-images", "96", "--cnn-steps", "3"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    models = results["models"]
    assert set(models) == {"zero-shot CLIP", "linear probe on CLIP (supervised)", "small CNN from scratch (supervised)"}
    for name, model in models.items():
        assert set(model["per_style"]) == set(STYLES), name
        assert all(0.0 <= v["shape"] <= 1.0 for v in model["per_style"].values())
        assert model["summary"] == summarise(model["per_style"])
    extras = models["zero-shot CLIP"]["extras"]
    assert 0.0 <= extras["aro_train_styles"]["relation"] <= 1.0 and extras["aro_train_styles"]["n"] == 16
    report = (tmp_path / "README.md").read_text()
    assert all(s in report for s in STYLES) and "gap" in report
    assert (tmp_path / "robustness.png").stat().st_size > 20_000
