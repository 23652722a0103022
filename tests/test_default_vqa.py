"""The shipped default VQA model: its head fits the budget shared with the other shipped models, it loads by
name on the default CLIP model, and it answers generated held-out questions well above chance."""

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
    # The VQA head reads the first default CLIP ('default-v1') until it is retrained on the current default.
    assert model.config.clip_model == "default-v1" and model.config.freeze_encoder and not model.training
    files = [shipped_model_path(model.config.clip_model), shipped_captioner_path("default"), VQA_DIR]
    assert sum((d / "model.safetensors").stat().st_size for d in files) <= 25 * 1024 * 1024
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    recipe = json.loads((VQA_DIR / "recipe.json").read_text())["recipe"]
    assert recipe["encoder"] == model.config.encoder and recipe["image_size"] == model.config.image_size


def test_default_vqa_answers_held_out_questions_above_chance():
    result = evaluate_vqa(load_vqa("default"), split="heldout", size=250, seed=7, progress=False)
    accuracy, chance = result["accuracy"], result["chance"]
    # measured on 2,000 held-out questions: 66.1% overall against 39% chance; existence 83.8%, count 75.3%
    assert accuracy["overall"] >= chance["overall"] + 0.15, result
    assert accuracy["existence"] >= 0.7 and accuracy["count"] >= 0.6, result
