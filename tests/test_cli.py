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


def _cli(argv: list[str], capsys) -> tuple[int, list[str], str]:
    """(status, stderr lines, stdout) of `clipworks ARGV` run in this process; any exception escaping main() (a
    traceback for the user) fails the test."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


def _bad_arguments(photo: str, tmp_path: Path) -> dict[str, list[str]]:
    no_gpu = [] if torch.cuda.is_available() else [["similarity", photo, "--text", "a", "--device", "cuda"]]
    return {
        "--device": [*no_gpu, ["similarity", photo, "--text", "a", "--device", "banana"],
                     ["search", "a", "--store", str(tmp_path), "--device", "cuda:99"],
                     ["index", photo, "--store", str(tmp_path), "--device", "banana"]],
        "--top-p": [["caption", "run", photo, "--method", "nucleus", "--top-p", v] for v in ("0", "7", "-1", "nan")],
        "--beam-width": [["caption", "run", photo, "--beam-width", "0"]],
        "--max-tokens": [["caption", "run", photo, "--max-tokens", "0"], ["caption", "eval", "--max-tokens", "-5"]],
        "--batch-size": [["train", "--out", str(tmp_path / "r"), "--batch-size", v] for v in ("0", "1")],
        "--steps": [["train", "--out", str(tmp_path / "r"), "--steps", v] for v in ("-3", "0")],
        "--port": [["serve", "--store", str(tmp_path), "--port", v] for v in ("99999", "-1")],
        "--png-size": [["sketch", photo, "--png-size", "0"]],
        "--stroke-width": [["sketch", photo, "--stroke-width", "-3"]],
        "-k": [["search", "a", "--store", str(tmp_path), "-k", v] for v in ("0", "-1")],
        "--labels": [["video", "classify", photo, "--labels", "", "b"]],
    }


def test_bad_arguments_are_one_line_usage_errors(photos, tmp_path, capsys):
    for flag, cases in _bad_arguments(str(photos[0]), tmp_path).items():
        for argv in cases:
            code, err, out = _cli(argv, capsys)
            assert code == 2 and len(err) == 1, (argv, err)
            assert err[0].startswith("clipworks ") and f"argument {flag}" in err[0], (argv, err)
            assert out == ""


def test_usage_errors_are_one_line_in_a_real_process(photos):
    result = _run(["similarity", str(photos[0]), "--text", "a", "--device", "banana"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "clipworks similarity: error: argument --device: 'banana': expected cpu, cuda, cuda:N or mps "
        "(see `clipworks similarity --help`)"]


def test_train_refuses_bad_runs_in_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("notes")
    code, err, _ = _cli(["train", "--out", str(afile), "--data", "world:size=64", "--steps", "5"], capsys)
    assert code == 1 and err == [f"clipworks: error: {afile}: a file, not a run directory (--out names a folder)"]
    assert afile.read_text() == "notes"
    code, err, _ = _cli(["train", "--out", str(tmp_path / "w"), "--steps", "20", "--warmup", "100"], capsys)
    assert code == 1 and len(err) == 1 and "warmup=100 is longer than the run (steps=20)" in err[0]
    assert not (tmp_path / "w").exists()


def test_serve_checks_the_port_before_loading_anything(tmp_path, capsys):
    import socket

    from clipworks.cli.search import free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        code, err, out = _cli(["serve", "--store", str(tmp_path / "no-store"), "--port", str(taken)], capsys)
        assert code == 1 and len(err) == 1 and f"127.0.0.1:{taken}: cannot serve there" in err[0], err
        assert out == ""  # nothing claims to be serving
    assert 0 < free_port("127.0.0.1", 0) <= 65535  # --port 0 is served (and shown) on a real port


def test_index_into_a_store_that_cannot_be_created_names_the_path(photos, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = blocker / "store"
    code, err, _ = _cli(["index", str(photos[0].parent), "--store", str(store)], capsys)
    assert code == 1 and err == [f"clipworks: error: {store}: cannot write the store here (Not a directory)"]


def test_output_piped_into_a_closed_reader_stops_quietly():
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "clipworks.cli.main", "models", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # like `| head` exiting before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_models_names_the_shipped_default(capsys):
    from clipworks.model.factory import shipped_model_path

    shipped = json.loads((shipped_model_path("default") / "clipworks_config.json").read_text())["model"]
    assert main(["models"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    tower = f"ResNet w{shipped['vision']['width']} {shipped['vision']['layers']}"  # the shipped one is a ResNet
    assert last.startswith(f"shipped trained weights: default ({shipped['name']}: {tower}"), last

