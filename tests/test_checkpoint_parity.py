"""Numerical parity with the peers: checkpoints saved by open_clip (state dicts, config directories,
TorchScript archives) and by Hugging Face transformers load into clipworks and give the same embeddings."""

from __future__ import annotations

import importlib
import json

import open_clip  # the reference: without it the suite fails, it does not skip parity
import pytest
import torch

import clipworks
from clipworks.errors import CheckpointError

TOL = 1e-4


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Randomise every float parameter and buffer so no weight (zero-initialised BN gains included) goes untested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():  # persistent weights only, not e.g. attn_mask
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=g) * 0.02
            if name.endswith("running_var"):
                t.copy_(1.0 + noise.abs() * 10)
            elif "logit_scale" in name:
                t.fill_(4.6)
            else:
                t.add_(noise)


def _inputs(size: int, context_length: int = 77) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, size, size, generator=g)
    texts = clipworks.tokenize(["a photo of a cat", "a diagram of a tench, drawn in 2021 &amp; coloured"], context_length)
    return images, texts


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _openclip_model(arch: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    _perturb(model, seed)
    return model.eval()


def _assert_parity(ours: torch.nn.Module, theirs: torch.nn.Module, size: int) -> dict[str, float]:
    images, texts = _inputs(size)
    with torch.no_grad():
        diffs = {
            "image": _max_diff(ours.encode_image(images), theirs.encode_image(images)),
            "text": _max_diff(ours.encode_text(texts), theirs.encode_text(texts)),
        }
    assert diffs["image"] <= TOL and diffs["text"] <= TOL, diffs
    return diffs


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["RN50", "ViT-B-32"])
def test_openclip_state_dict_parity(arch, tmp_path):
    theirs = _openclip_model(f"{arch}-quickgelu", seed=7)
    path = tmp_path / f"{arch}.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in theirs.state_dict().items()}}, path)
    ours, _ = clipworks.create_model(arch, pretrained=path, device="cpu")
    diffs = _assert_parity(ours, theirs, 224)
    print(f"{arch} open_clip state dict: max abs diff image {diffs['image']:.2e} text {diffs['text']:.2e}")


@pytest.mark.slow
def test_openclip_config_directory_with_gelu(tmp_path):
    """open_clip's own directory format; its default activation is GELU, which the config records."""
    push = importlib.import_module("open_clip.push_to_hf_hub")
    from safetensors.torch import save_file

    theirs = _openclip_model("ViT-B-32", seed=3)
    save_file(theirs.state_dict(), str(tmp_path / "open_clip_model.safetensors"))
    push.save_config_for_hf(theirs, tmp_path / "open_clip_config.json", model_config=open_clip.get_model_config("ViT-B-32"))
    ours, preprocess = clipworks.create_model(tmp_path, device="cpu")
    assert ours.config.quick_gelu is False
    _assert_parity(ours, theirs, 224)
    # Naming the QuickGELU architecture for GELU weights is refused, not silently accepted.
    with pytest.raises(CheckpointError, match="GELU"):
        clipworks.create_model("ViT-B-32", pretrained=tmp_path, device="cpu")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_openai_torchscript_archive_fp16(tmp_path):
    """An OpenAI-style release: a TorchScript archive with fp16 weights, architecture inferred from shapes."""
    theirs = _openclip_model("ViT-B-32-quickgelu", seed=5)
    open_clip.convert_weights_to_lp(theirs, dtype=torch.float16)
    path = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(theirs), str(path))
    theirs = theirs.float()
    ours, _ = clipworks.create_model(path, device="cpu")
    assert ours.config.vision.patch_size == 32 and ours.config.quick_gelu is True
    assert ours.dtype == torch.float32
    _assert_parity(ours, theirs, 224)


def test_huggingface_clipmodel_directory(tmp_path):
    import transformers
    config = transformers.CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=256, num_attention_heads=4, num_hidden_layers=2,
                         max_position_embeddings=77, vocab_size=49408),
        vision_config=dict(hidden_size=96, intermediate_size=200, num_attention_heads=3, num_hidden_layers=2,
                           image_size=64, patch_size=16),
        projection_dim=48,
    )
    torch.manual_seed(11)
    theirs = transformers.CLIPModel(config).eval()
    _perturb(theirs, 11)
    theirs.save_pretrained(tmp_path)
    ours, _ = clipworks.create_model(tmp_path, device="cpu")
    assert ours.config.vision.num_heads == 3 and ours.config.text.heads == 4
    images, texts = _inputs(64)
    with torch.no_grad():
        ref_img = theirs.get_image_features(pixel_values=images)
        ref_txt = theirs.get_text_features(input_ids=texts)
        ref_img = ref_img if torch.is_tensor(ref_img) else ref_img.pooler_output
        ref_txt = ref_txt if torch.is_tensor(ref_txt) else ref_txt.pooler_output
        d_img = _max_diff(ours.encode_image(images), ref_img)
        d_txt = _max_diff(ours.encode_text(texts), ref_txt)
        assert abs(ours.logit_scale.item() - theirs.logit_scale.item()) < 1e-6
    assert d_img <= TOL and d_txt <= TOL, (d_img, d_txt)


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    model, _ = clipworks.create_model("RN-Tiny-64", device="cpu")
    _perturb(model, 0)
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "clipworks_config.json").read_text())
    assert saved["model"]["quick_gelu"] is False and saved["model"]["vision"]["layers"] == [1, 1, 1, 1]
    loaded, _ = clipworks.create_model(tmp_path / "saved", device="cpu")
    images, texts = _inputs(64, context_length=32)
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), loaded.encode_image(images))
        assert torch.equal(model.encode_text(texts), loaded.encode_text(texts))
    assert {**loaded.config.to_dict(), "name": None} == {**model.config.to_dict(), "name": None}


def test_wrong_architecture_names_the_mismatch(tmp_path):
    model, _ = clipworks.create_model("ViT-Tiny-8-64", device="cpu")
    path = tmp_path / "tiny.safetensors"
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(path))
    with pytest.raises(CheckpointError) as err:
        clipworks.create_model("RN-Tiny-64", pretrained=path, device="cpu")
    message = str(err.value)
    assert str(path) in message and "does not fit architecture RN-Tiny-64" in message
    assert "missing" in message and "unexpected" in message and "\n" not in message


def test_bare_state_dict_infers_architecture_and_warns(tmp_path):
    torch.manual_seed(2)
    model, _ = clipworks.create_model("ViT-Tiny-8-64", device="cpu")
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    with pytest.warns(UserWarning, match="assuming QuickGELU"):
        inferred, _ = clipworks.create_model(path, device="cpu")
    assert inferred.config.vision.image_size == 64 and inferred.config.vision.patch_size == 8
    assert inferred.config.text.context_length == 32 and inferred.config.embed_dim == 128
    explicit, _ = clipworks.create_model(path, device="cpu", quick_gelu=False)
    images, texts = _inputs(64, context_length=32)
    with torch.no_grad():
        assert torch.equal(explicit.encode_image(images), model.encode_image(images))


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        clipworks.create_model(path, device="cpu")
    assert "this must never run" not in capsys.readouterr().out


def test_unreadable_checkpoints_raise_one_line_errors(tmp_path):
    text_file = tmp_path / "notes.pt"
    text_file.write_text("not a checkpoint")
    truncated = tmp_path / "half.safetensors"
    truncated.write_bytes(b"\x10\x00\x00")
    for path in (text_file, truncated, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError) as err:
            clipworks.create_model("ViT-Tiny-8-64", pretrained=path, device="cpu")
        assert str(path) in str(err.value) and "\n" not in str(err.value)
