"""The shipped default captioner: it fits the budget it shares with the default CLIP model, loads by name,
writes useful captions, and `clipworks caption` / `caption eval` report what the library computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from clipworks.captioning.evaluate import HELDOUT, attribute_precision
from clipworks.captioning.inference import caption_images
from clipworks.captioning.metrics import evaluate_captions
from clipworks.captioning.model import load_captioner, shipped_captioner_path
from clipworks.data import open_pairs
from clipworks.model.factory import shipped_model_path

REPO = Path(__file__).resolve().parents[1]
CAPTIONER_DIR = shipped_captioner_path("default")
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def test_default_captioner_is_shipped():
    """The weights are committed: a checkout or install without them fails here instead of skipping the guards."""
    assert (CAPTIONER_DIR / "model.safetensors").is_file(), f"{CAPTIONER_DIR}: the shipped captioner is missing"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clipworks.cli.main", *args], env=ENV, capture_output=True, text=True)


def test_shipped_weights_fit_the_shared_budget_and_load_as_float32():
    from safetensors import safe_open

    shipped = [shipped_model_path("default") / "model.safetensors", CAPTIONER_DIR / "model.safetensors"]
    assert sum(p.stat().st_size for p in shipped) <= 25 * 1024 * 1024
    with safe_open(str(shipped[1]), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    captioner = load_captioner("default")
    assert {p.dtype for p in captioner.parameters()} == {torch.float32} and not captioner.training
    recipe = json.loads((CAPTIONER_DIR / "recipe.json").read_text())
    assert recipe["recipe"]["mapper"] == captioner.config.mapper == "mlp" and not captioner.config.freeze_lm


def test_attribute_precision_counts_words_against_the_facts():
    facts = [{"objects": [{"colour": "red", "shape": "star"}, {"colour": "blue", "shape": "cross"}]}]
    got = attribute_precision(["two red crosses and a green star, stars"], facts)
    assert got == {"colour_precision": 0.5, "shape_precision": 1.0, "colour_words": 2, "shape_words": 3}
    scenes = open_pairs("world:split=heldout,size=20,seed=3")
    samples = [scenes[i] for i in range(20)]
    refs = attribute_precision([c for s in samples for c in s.captions], [s.facts for s in samples for _ in s.captions])
    assert refs["colour_precision"] == refs["shape_precision"] == 1.0  # the world's own captions are true


def test_captions_name_colours_and_shapes_that_are_in_seen_scenes():
    scenes = open_pairs("world:split=train,size=40,seed=123,styles=train")
    samples = [scenes[i] for i in range(40)]
    got = attribute_precision(caption_images([s.image for s in samples]), [s.facts for s in samples])
    # measured on these 40 styled scenes: colour words 28/28 true, shape words 61/68 true
    assert got["colour_words"] >= 20 and got["shape_words"] >= 50
    assert got["colour_precision"] >= 0.95 and got["shape_precision"] >= 0.8, got


def test_caption_cli_and_eval_report_the_library_figures(tmp_path):
    data = open_pairs(HELDOUT)
    samples = [data[i] for i in range(30)]
    expected = caption_images([s.image for s in samples])
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"scene{i}.png")
        samples[i].image.save(paths[-1])
    proc = _cli("caption", "run", *map(str, paths), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{p}\t{c}" for p, c in zip(paths, expected[:3])]

    proc = _cli("caption", "eval", "--limit", "30", "--no-meteor", "--out", str(tmp_path / "r.json"),
                "--figure", str(tmp_path / "examples.png"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    scores = evaluate_captions({i: s.captions for i, s in enumerate(samples)}, dict(enumerate(expected)),
                               with_meteor=False)
    assert result["images"] == 30 and result["metrics"] == pytest.approx(scores, abs=1e-12)
    assert scores["CIDEr-D"] > 0.5 and scores["BLEU-4"] > 0.2  # far above an unrelated caption's ~0
    assert {e["caption"] for e in result["examples"]} <= set(expected) and len(result["examples"]) == 10
    assert Image.open(tmp_path / "examples.png").size[0] > 500
