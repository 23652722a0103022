"""`clipworks export-model`: models written as open_clip and Hugging Face CLIPModel directories load in those
libraries with the same embeddings, and load back into clipworks unchanged."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import open_clip  # the references: without them the suite fails, it does not skip
import pytest
import torch
import transformers
from PIL import Image

import clipworks
from clipworks.cli.main import build_parser, main
from clipworks.errors import ConfigError, InputFileError
from clipworks.model.checkpoint.export import export_model
from clipworks.model.clip import CLIP
from clipworks.model.config import ModelConfig, PreprocessConfig, TextConfig, VisionConfig, get_model_config

TOL = 1e-5
CAPTIONS = ["a red star above a blue circle", "two green triangles", "a photo of a cat, drawn in 2021"]


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Randomise every float parameter and buffer so that no weight (BN statistics included) goes untested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=g) * 0.02
            if name.endswith("running_var"):
                t.copy_(1.0 + noise.abs() * 10)
            elif name == "logit_scale":
                t.fill_(3.1)
            else:
                t.add_(noise)


def _small_vit() -> CLIP:
    """A ViT unlike the defaults everywhere a config field could be dropped: 32-wide heads, MLP ratios 2.5 and
    3, QuickGELU, its own logit scale init and preprocessing (bilinear, squash, other mean/std)."""
    config = ModelConfig(
        embed_dim=48, quick_gelu=True, init_logit_scale=math.log(20.0),
        vision=VisionConfig(image_size=48, layers=2, width=96, patch_size=16, heads=3, mlp_ratio=2.5),
        text=TextConfig(context_length=24, width=64, heads=4, layers=2, mlp_ratio=3.0),
        preprocess=PreprocessConfig(image_size=48, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
                                    interpolation="bilinear", resize_mode="squash"),
    )
    torch.manual_seed(5)
    model = CLIP(config).eval()
    _perturb(model, 5)
    return model


def _small_resnet() -> CLIP:
    """RN-Tiny-64 with 4 attention-pool heads rather than its default 8 (open_clip's head_width 128)."""
    config = get_model_config("RN-Tiny-64")
    config = replace(config, vision=replace(config.vision, heads=4))
    torch.manual_seed(6)
    model = CLIP(config).eval()
    _perturb(model, 6)
    return model


def _inputs(model: CLIP) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    size = model.config.vision.image_size
    return torch.randn(3, 3, size, size, generator=g), clipworks.tokenize(CAPTIONS, model.config.text.context_length)


def _photo(seed: int = 2) -> Image.Image:
    """A smooth, non-square RGB picture (resizing a smooth image is where resamplers agree best)."""
    y, x = np.mgrid[0:90, 0:130] / 40.0
    rng = np.random.default_rng(seed)
    channels = [np.sin(x * rng.uniform(1, 3) + y * rng.uniform(1, 3) + rng.uniform(0, 6)) for _ in range(3)]
    return Image.fromarray(((np.stack(channels, -1) + 1) * 127.5).astype(np.uint8))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _assert_clipworks_round_trip(model: CLIP, directory) -> None:
    """clipworks' own loader reads the export back bit for bit, with the same config."""
    loaded, _ = clipworks.create_model(directory, device="cpu")
    images, texts = _inputs(model)
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), model.encode_image(images))
        assert torch.equal(loaded.encode_text(texts), model.encode_text(texts))
    assert loaded.logit_scale.item() == model.logit_scale.item()
    assert replace(loaded.config, name=None) == replace(model.config, name=None)


def _assert_open_clip_equal(model: CLIP, directory) -> torch.nn.Module:
    theirs, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{directory}")
    theirs.eval()
    images, texts = _inputs(model)
    their_tokens = open_clip.get_tokenizer(f"local-dir:{directory}")(CAPTIONS)
    assert torch.equal(their_tokens, texts)  # open_clip's tokenizer, bound to the exported context length
    with torch.no_grad():
        d_img = _max_diff(theirs.encode_image(images), model.encode_image(images))
        d_txt = _max_diff(theirs.encode_text(texts), model.encode_text(texts))
    assert d_img <= TOL and d_txt <= TOL, (d_img, d_txt)
    assert theirs.logit_scale.item() == pytest.approx(model.logit_scale.item(), abs=1e-6)
    # The preprocessing travels too: open_clip's transform of a photo equals clipworks' own.
    ours = clipworks.image_transform(model.config.preprocess, train=False)
    assert _max_diff(preprocess(_photo()), ours(_photo())) <= 1e-6
    return theirs


def test_vit_to_open_clip(tmp_path):
    model = _small_vit()
    files = export_model(model, tmp_path / "oc", "open_clip")
    assert sorted(p.name for p in files) == ["open_clip_config.json", "open_clip_model.safetensors"]
    theirs = _assert_open_clip_equal(model, tmp_path / "oc")
    assert theirs.visual.transformer.resblocks[0].attn.num_heads == 3
    _assert_clipworks_round_trip(model, tmp_path / "oc")


def test_modified_resnet_to_open_clip(tmp_path):
    model = _small_resnet()
    export_model(model, tmp_path / "oc", "open_clip")
    assert json.loads((tmp_path / "oc" / "open_clip_config.json").read_text())["model_cfg"]["vision_cfg"]["head_width"] == 128
    theirs = _assert_open_clip_equal(model, tmp_path / "oc")
    assert theirs.visual.attnpool.num_heads == 4
    _assert_clipworks_round_trip(model, tmp_path / "oc")


def test_default_model_to_open_clip_from_the_cli(tmp_path, capsys):
    assert main(["export-model", "--format", "open_clip", "default", str(tmp_path / "default")]) == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / "default" / n) for n in ("open_clip_config.json", "open_clip_model.safetensors")]
    assert f"local-dir:{tmp_path / 'default'}" in err
    model, _ = clipworks.create_model("default", device="cpu")
    _assert_open_clip_equal(model, tmp_path / "default")
    _assert_clipworks_round_trip(model, tmp_path / "default")


def test_vit_to_huggingface(tmp_path):
    model = _small_vit()
    export_model(model, tmp_path / "hf", "hf")
    theirs = transformers.CLIPModel.from_pretrained(tmp_path / "hf").eval()
    images, texts = _inputs(model)
    with torch.no_grad():
        img = theirs.get_image_features(pixel_values=images)
        txt = theirs.get_text_features(input_ids=texts)
        img = img if torch.is_tensor(img) else img.pooler_output
        txt = txt if torch.is_tensor(txt) else txt.pooler_output
        d_img, d_txt = _max_diff(img, model.encode_image(images)), _max_diff(txt, model.encode_text(texts))
    assert d_img <= TOL and d_txt <= TOL, (d_img, d_txt)
    assert theirs.logit_scale.item() == pytest.approx(model.logit_scale.item(), abs=1e-6)
    assert theirs.config.vision_config.hidden_act == "quick_gelu"

    # Tokenizer: transformers' CLIPTokenizer from the written vocab and merges gives clipworks' ids (it pads
    # with end-of-text where clipworks pads with 0; pooling reads the first end-of-text either way).
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tokenizer.model_max_length == model.config.text.context_length
    hf_ids = torch.tensor(tokenizer(CAPTIONS, padding="max_length", max_length=texts.shape[1])["input_ids"])
    eot = texts.argmax(dim=-1)
    for row, end in enumerate(eot.tolist()):
        assert torch.equal(hf_ids[row, : end + 1], texts[row, : end + 1])
    with torch.no_grad():
        assert _max_diff(theirs.get_text_features(input_ids=hf_ids).pooler_output, model.encode_text(texts)) <= TOL

    # Preprocessing: squash and bilinear are written as a 48x48 resize without a crop.
    processor = transformers.AutoProcessor.from_pretrained(tmp_path / "hf")
    pixels = processor(images=_photo(), return_tensors="pt")["pixel_values"][0]
    ours = clipworks.image_transform(model.config.preprocess, train=False)(_photo())
    assert pixels.shape == ours.shape == (3, 48, 48)
    # PIL's and torchvision's bilinear resizes may round a pixel to the neighbouring 8-bit level, no further.
    assert _max_diff(pixels, ours) <= 1 / 255 / min(model.config.preprocess.std) + 1e-6

    _assert_clipworks_round_trip(model, tmp_path / "hf")


def test_huggingface_refuses_a_modified_resnet(tmp_path, capsys):
    with pytest.raises(ConfigError, match="ModifiedResNet.*Hugging Face CLIPModel"):
        export_model(_small_resnet(), tmp_path / "hf", "hf")
    assert not (tmp_path / "hf").exists()
    assert main(["export-model", "--format", "hf", "default", str(tmp_path / "hf")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ModifiedResNet" in err[0] and "Hugging Face CLIPModel" in err[0], err
    assert not (tmp_path / "hf").exists()


def test_existing_directory_needs_force(tmp_path, capsys):
    model = _small_vit()
    out = tmp_path / "model"
    out.mkdir()
    export_model(model, out, "open_clip")  # an empty directory is fine
    with pytest.raises(InputFileError, match="not empty.*--force"):
        export_model(model, out, "hf")
    assert main(["export-model", "--format", "hf", "default", str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["open_clip_config.json", "open_clip_model.safetensors"]

    # --force replaces the whole model directory: no stale open_clip file is left beside the new HF files.
    export_model(model, out, "hf", force=True)
    assert not (out / "open_clip_config.json").exists() and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary directory left behind
    _assert_clipworks_round_trip(model, out)

    # A folder that is not a model directory is never replaced.
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(InputFileError, match="not a model directory"):
        export_model(model, other, "open_clip", force=True)
    assert (other / "todo.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputFileError, match="not a directory"):
        export_model(model, tmp_path / "file", "open_clip", force=True)


def test_bare_state_dict_needs_its_activation(tmp_path, capsys):
    model = _small_vit()
    torch.save({"state_dict": {k.replace("image_tower.", "visual.").replace("text_tower.", ""): v
                               for k, v in model.state_dict().items()}}, tmp_path / "bare.pt")
    assert main(["export-model", "--format", "open_clip", str(tmp_path / "bare.pt"), str(tmp_path / "a")]) == 1
    assert "--gelu" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert main(["export-model", "--format", "open_clip", "--quick-gelu", str(tmp_path / "bare.pt"),
                 str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "open_clip_config.json").read_text())["model_cfg"]["quick_gelu"] is True
    # An architecture name has no trained weights to export.
    assert main(["export-model", "--format", "open_clip", "ViT-B-32", str(tmp_path / "b")]) == 1
    assert "without trained weights" in capsys.readouterr().err


def test_export_model_arguments(capsys):
    parser = build_parser()
    args = parser.parse_args(["export-model", "--format", "hf", "run/ckpt", "out", "--force", "--gelu"])
    assert (args.model, args.dir, args.format, args.force, args.quick_gelu) == ("run/ckpt", "out", "hf", True, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["export-model", "--format", "onnx", "default", "out"])
    assert "invalid choice: 'onnx'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["export-model", "default", "out"])
    assert "required: --format" in capsys.readouterr().err
