"""The shipped default model: it loads by name, fits the size budget, and still does what the README says."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import clipworks
from clipworks.demo import main as demo
from clipworks.evaluation.world_tasks import retrieval_world, zero_shot_world
from clipworks.model.factory import shipped_model_path
from clipworks.training.make_default import STAGES

DEFAULT_DIR = shipped_model_path("default")


def test_default_model_is_shipped():
    """The weights are committed: a checkout or install without them fails here instead of skipping the guards."""
    assert (DEFAULT_DIR / "model.safetensors").is_file(), f"{DEFAULT_DIR}: the shipped default model is missing"


def test_default_model_loads_by_name_and_fits_the_budget():
    size = (DEFAULT_DIR / "model.safetensors").stat().st_size
    assert size <= 25 * 1024 * 1024, f"{size / 2**20:.1f} MB"
    model, preprocess = clipworks.create_model("default", device="cpu")
    assert model.dtype == torch.float32 and not model.training
    recipe = json.loads((DEFAULT_DIR / "recipe.json").read_text())
    architecture = clipworks.get_model_config(recipe["stages"][0]["model"])
    assert {**model.config.to_dict(), "name": None} == {**architecture.to_dict(), "name": None}
    assert recipe["stages"] == [dict(s) for s in json.loads(json.dumps(STAGES))]  # the recipe that made it


def test_all_shipped_weights_fit_40_mb():
    package = Path(clipworks.__file__).parent
    files = list(package.glob("*/pretrained/*/model.safetensors"))
    assert len(files) >= 4  # CLIP default and default-v1, the captioner, the VQA head
    total = sum(f.stat().st_size for f in files)
    assert total <= 40 * 1024 * 1024, f"{total / 2**20:.1f} MB in {[str(f) for f in files]}"


def test_default_model_generalises_to_unseen_pairs_and_styles():
    """A regression guard on the shipped weights (200 scenes each, fewer than the README's 1,000)."""
    model, preprocess = clipworks.create_model("default", device="cpu")
    tokenizer = clipworks.get_tokenizer(model)
    # Measured on 1,000 scenes (README): held-out pairs shape 46.5% (top-3 88.0%), colour 92.6%.
    pairs = zero_shot_world(model, preprocess, tokenizer, n=200, seed=11, styles="train")
    assert pairs["colour"]["top1"] >= 0.85 and pairs["shape"]["top1"] >= 0.3 and pairs["shape"]["top3"] >= 0.75, pairs
    # The sketch style never appears in training: shape 83.5%, colour 95.4% on 1,000.
    sketch = zero_shot_world(model, preprocess, tokenizer, n=200, seed=13, split="train", styles=("sketch",))
    assert sketch["shape"]["top1"] >= 0.7 and sketch["colour"]["top1"] >= 0.85, sketch
    # Text->image R@5 54.6% on 1,000 held-out-pair scenes; with 200 candidates the task is easier.
    metrics, *_ = retrieval_world(model, preprocess, tokenizer, n=200, seed=12, styles="train")
    assert metrics["text_to_image_R@5"] >= 0.5, metrics


def test_demo_runs_on_the_default_model(tmp_path, capsys):
    assert demo(["--out", str(tmp_path), "--n", "100"]) == 0
    out = capsys.readouterr().out
    assert "held-out style: sketch" in out and "held-out style: mosaic" in out and "text -> image" in out
    assert "relation swaps" in out and "attribute swaps" in out
    assert (tmp_path / "heldout_top_captions.png").stat().st_size > 10_000
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["n"] for r in results["zero_shot"].values()} == {100}
    assert set(results["zero_shot"]) == {"held-out pairs, train styles", "held-out style: sketch", "held-out style: mosaic"}
    assert 0.0 <= results["aro"]["relation"] <= 1.0 and results["aro"]["n"] == 100
