"""Inference speed-ups that must not change a number: text passes trimmed at the last end-of-text token,
inputs following the model's device, and half-precision autocast for embeddings."""

from __future__ import annotations

import open_clip
import pytest
import torch

import clipworks
from clipworks.evaluation.features import embed_texts
from clipworks.model.config import get_model_config
from clipworks.model.text_transformer import TextTransformer

TEXTS = [
    "a cat",
    "a photo of a red square above a blue circle on a grey background",
    "",  # start and end tokens only
    " ".join(["a small green triangle left of a large yellow star"] * 12),  # truncated: end-of-text at position 76
]


def _text_tower(seed: int = 0) -> TextTransformer:
    torch.manual_seed(seed)
    config = get_model_config("ViT-B-32")
    return TextTransformer(config.text, config.embed_dim, config.quick_gelu).eval()


def test_trimmed_text_pass_equals_the_full_length_pass():
    tower = _text_tower()
    tokens = clipworks.tokenize(TEXTS)
    assert tokens.argmax(dim=-1).tolist()[3] == 76  # the batch holds one full-length text
    with torch.no_grad():
        full = tower(tokens, trim=False)
        trimmed = tower(tokens)
        # Without the full-length text the batch runs 17 positions instead of 77; each row's output is unchanged.
        short = tower(tokens[:3])
    assert (trimmed - full).abs().max().item() <= 1e-5
    assert (short - full[:3]).abs().max().item() <= 1e-5
    assert not torch.equal(full[0], full[1])  # the rows differ, so equal rows above are not a degenerate pass


def test_trimmed_training_pass_has_the_full_length_gradients():
    tower = _text_tower(seed=1).train()
    tokens = clipworks.tokenize(TEXTS[:2])
    grads = []
    for trim in (False, True):
        tower.zero_grad()
        tower(tokens, trim=trim).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in tower.parameters() if p.grad is not None]))
    used = int(tokens.argmax(dim=-1).max()) + 1
    assert tower.positional_embedding.grad[used:].abs().max().item() == 0  # rows past the last end-of-text: none
    assert grads[0].shape == grads[1].shape
    assert (grads[0] - grads[1]).abs().max().item() <= 1e-5 * grads[0].abs().max().item()


def test_text_embeddings_of_mixed_lengths_match_open_clip(tmp_path):
    """open_clip runs all 77 positions; ours stops at the batch's last end-of-text token."""
    torch.manual_seed(3)
    theirs = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    torch.save(theirs.state_dict(), tmp_path / "weights.pt")
    ours, _ = clipworks.create_model("ViT-B-32", pretrained=tmp_path / "weights.pt", device="cpu")
    tokens = clipworks.tokenize(TEXTS)
    with torch.no_grad():
        for batch in (tokens, tokens[:2]):
            diff = (ours.encode_text(batch) - theirs.encode_text(batch)).abs().max().item()
            assert diff <= 1e-4, diff


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_inputs_reach_a_cuda_model():
    """The README's example: a model created on CUDA (the default when present) takes CPU tensors."""
    model, _ = clipworks.create_model("ViT-Tiny-8-64")
    assert model.device.type == "cuda"
    images = torch.randn(2, 3, 64, 64)
    tokens = clipworks.get_tokenizer(model)(["a red star", "a blue square"])
    with torch.no_grad():
        on_gpu = model.encode_text(tokens)
        logits, _ = model(images, tokens)
        reference = model.to("cpu").encode_text(tokens)
    assert on_gpu.device.type == "cuda" and logits.shape == (2, 2)
    assert (on_gpu.cpu() - reference).abs().max().item() <= 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_resnet_on_cuda_runs_channels_last_with_the_cpu_result():
    torch.manual_seed(0)
    model, _ = clipworks.create_model("RN-Tiny-64", device="cuda")
    assert model.image_tower.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        on_gpu = model.encode_image(images).cpu()
        reference = model.to("cpu").encode_image(images)
    cosine = torch.nn.functional.cosine_similarity(on_gpu, reference, dim=-1)  # cuDNN convolutions may use TF32
    assert cosine.min().item() > 0.9999


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_embeddings_are_close_to_float32(dtype):
    model, _ = clipworks.create_model("ViT-Tiny-8-64")
    tokenizer = clipworks.get_tokenizer(model)
    texts = ["a red star", "a blue square below a green circle", "two yellow triangles"]
    exact = embed_texts(model, tokenizer, texts)
    half = embed_texts(model, tokenizer, texts, autocast=dtype)
    assert half.dtype == torch.float32 and half.shape == exact.shape
    cosine = (half * exact).sum(dim=-1)
    assert cosine.min().item() > 0.99
    assert not torch.equal(half, exact)  # autocast did run in lower precision
