"""The `clipworks` command as a user runs it: real photos, checkpoints the test writes, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clipworks
from clipworks.cli.main import main
from clipworks.data.samples import write_sample_photos

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """scikit-image's real sample photos, written as files."""
    return write_sample_photos(tmp_path_factory.mktemp("photos"), ["astronaut", "chelsea", "coffee"])


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model, _ = clipworks.create_model("ViT-Tiny-8-64", device="cpu")
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "clipworks.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_models_lists_every_architecture(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336",
                 "ViT-Tiny-8-64"):
        assert f"\n{name} " in out
    assert main(["models", "--json"]) == 0
    configs = json.loads(capsys.readouterr().out)
    assert configs["ViT-L-14-336"]["vision"]["image_size"] == 336 and configs["RN50"]["quick_gelu"] is True


def test_similarity_on_real_photos_from_checkpoint(photos, checkpoint_dir, capsys):
    texts = ["a photo of an astronaut", "a photo of a cat", "a cup of coffee"]
    assert main(["similarity", *map(str, photos), "--text", *texts, "--model", str(checkpoint_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    probs = np.array(result["probs"])
    assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # The table matches the Python API on the same inputs.
    model, preprocess = clipworks.create_model(checkpoint_dir, device="cpu")
    with torch.no_grad():
        pixels = torch.stack([preprocess(clipworks.load_image(p)) for p in photos])
        logits, _ = model(pixels, clipworks.get_tokenizer(model)(texts))
    assert np.allclose(probs, logits.softmax(-1).numpy(), atol=1e-6)
    assert main(["similarity", *map(str, photos), "--text", *texts, "--model", str(checkpoint_dir)]) == 0
    table = capsys.readouterr().out
    assert "astronaut.png" in table and "Label probs" in table


def test_similarity_with_architecture_and_weights_file(photos, checkpoint_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "tiny.safetensors"
    save_file(load_file(str(checkpoint_dir / "model.safetensors")), str(weights))
    args = ["similarity", str(photos[1]), "--text", "a cat", "a dog", "--json"]
    assert main([*args, "--model", "ViT-Tiny-8-64", "--pretrained", str(weights)]) == 0
    via_name = json.loads(capsys.readouterr().out)["probs"]
    assert main([*args, "--model", str(checkpoint_dir)]) == 0
    via_dir = json.loads(capsys.readouterr().out)["probs"]
    assert np.allclose(via_name, via_dir, atol=1e-6)


def test_embed_saves_normalised_embeddings(photos, checkpoint_dir, tmp_path):
    out = tmp_path / "emb.npz"
    code = main(["embed", "--image", *map(str, photos), "--text", "a cat", "a dog", "--model", str(checkpoint_dir),
                 "--out", str(out)])
    assert code == 0
    saved = np.load(out)
    assert saved["image_embeddings"].shape == (3, 128) and saved["text_embeddings"].shape == (2, 128)
    assert np.allclose(np.linalg.norm(saved["image_embeddings"], axis=1), 1.0, atol=1e-5)
    assert list(saved["texts"]) == ["a cat", "a dog"] and saved["image_paths"][0].endswith("astronaut.png")


def _bad_inputs(tmp_path: Path, photos: list[Path]) -> dict[str, tuple[list[str], str]]:
    corrupt = tmp_path / "corrupt.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    text_as_image = tmp_path / "notes.png"
    text_as_image.write_text("these are notes, not pixels")
    other_arch = tmp_path / "rn.safetensors"
    from safetensors.torch import save_file

    save_file(clipworks.create_model("RN-Tiny-64", device="cpu")[0].state_dict(), str(other_arch))
    photo = str(photos[0])
    return {
        "corrupt image": (["similarity", str(corrupt), "--text", "x", "--model", "ViT-Tiny-8-64"], str(corrupt)),
        "text file as image": (["similarity", str(text_as_image), "--text", "x", "--model", "ViT-Tiny-8-64"],
                               str(text_as_image)),
        "other architecture": (["similarity", photo, "--text", "x", "--model", "ViT-Tiny-8-64", "--pretrained",
                                str(other_arch)], str(other_arch)),
        "missing image": (["similarity", str(tmp_path / "nope.jpg"), "--text", "x", "--model", "ViT-Tiny-8-64"],
                          str(tmp_path / "nope.jpg")),
        "missing checkpoint": (["similarity", photo, "--text", "x", "--model", str(tmp_path / "absent")],
                               str(tmp_path / "absent")),
    }


def test_bad_inputs_give_one_line_errors(tmp_path, photos):
    for case, (args, named) in _bad_inputs(tmp_path, photos).items():
        result = _run(args)
        assert result.returncode == 1, (case, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("clipworks: error: "), (case, result.stderr)
        assert named in lines[0], (case, lines[0])
        assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = _run(["--debug", "similarity", str(tmp_path / "nope.jpg"), "--text", "x", "--model", "ViT-Tiny-8-64"])
    assert result.returncode != 0 and "Traceback" in result.stderr
