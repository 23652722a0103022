"""The shipped default VQA model: its head fits the budget shared with the other shipped models, it loads by
name on the default CLIP model, and it answers generated held-out questions in styles it never saw above chance."""

from __future__ import annotations

import json

import torch

from clipworks.captioning.model import shipped_captioner_path
from clipworks.model.factory import shipped_model_path
from clipworks.vqa.evaluate import evaluate_vqa
from clipworks.vqa.model import load_vqa, shipped_vqa_path

VQA_DIR = shipped_vqa_path("default")


def test_default_vqa_is_shipped():
    """The weights are committed: a checkout or install without them fails here instead of skipping the guards."""
    assert (VQA_DIR / "model.safetensors").is_file(), f"{VQA_DIR}: the shipped VQA model is missing"


def test_shipped_models_fit_the_budget_together():
    model = load_vqa("default")
    # The VQA head reads the default CLIP's frozen grid: only the head ships
    assert model.config.clip_model == "default" and model.config.freeze_encoder and not model.training
    assert (VQA_DIR / "model.safetensors").stat().st_size <= 3 * 1024 * 1024
    files = [shipped_model_path(model.config.clip_model), shipped_captioner_path("default"), VQA_DIR]
    assert sum((d / "model.safetensors").stat().st_size for d in files) <= 25 * 1024 * 1024
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    recipe = json.loads((VQA_DIR / "recipe.json").read_text())["recipe"]
    assert recipe["encoder"] == model.config.encoder and recipe["image_size"] == model.config.image_size


def test_default_vqa_answers_held_out_questions_in_a_held_out_style_above_chance():
    result = evaluate_vqa(load_vqa("default"), split="heldout", size=250, seed=7, progress=False, styles="heldout")
    accuracy, chance = result["accuracy"], result["chance"]
    # measured on 2,000 held-out-scene questions in the held-out styles (sketch, mosaic): 57.5% overall against
    # 39% chance; existence 70.8%, count 66.3%
    assert accuracy["overall"] >= chance["overall"] + 0.1, result
    assert accuracy["existence"] >= 0.6 and accuracy["count"] >= 0.5, result
