"""`clipworks finetune`: locking freezes exactly what it says, layer-wise lr decay, WiSE-FT's end points and
midpoint, a tiny run through the CLI that ends with its results, and a resumed run with bit-identical weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipworks.cli.main import main
from clipworks.evaluation.tasks import zeroshot
from clipworks.model.clip import CLIP
from clipworks.model.config import get_model_config
from clipworks.model.factory import create_model, get_tokenizer
from clipworks.training.finetune import (FinetuneConfig, finetune, layerwise_param_groups, lock_towers,
                                         towers, wise_ft)
from clipworks.training.run import read_checkpoint, read_metrics


def _class_folder(root: Path, per_class: tuple[int, int] = (12, 4)) -> Path:
    """train/ and test/ folders of two classes, red and blue squares on noisy grey (64 px)."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_class):
        for name, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(90, 160, (64, 64, 3)).astype(np.uint8)
                x, y, s = rng.integers(4, 30), rng.integers(4, 30), rng.integers(16, 30)
                pixels[y:y + s, x:x + s] = colour
                Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root


def _cfg(out: Path, classes: Path, **kw) -> FinetuneConfig:
    base = dict(out=str(out), model="ViT-Tiny-8-64", classes=str(classes), templates="plain", steps=4,
                batch_size=8, lr=1e-3, warmup=1, eval_every=2, log_every=1, eval_out=(), alphas=(0.0, 0.5, 1.0),
                checkpoint_every=100, device="cpu")
    return FinetuneConfig(**{**base, **kw})


def _initial(cfg: FinetuneConfig) -> dict[str, torch.Tensor]:
    """The weights a run starts from: the architecture initialised under the run's seed."""
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, device="cpu")[0].state_dict()


@pytest.mark.parametrize("arch", ["ViT-Tiny-8-64", "RN-Tiny-64"])
def test_layer_groups_split_each_tower_by_depth(arch):
    clip = CLIP(get_model_config(arch))
    for name, tower in (("image", clip.image_tower), ("text", clip.text_tower)):
        groups = towers(clip)[name]
        ids = [id(p) for group in groups for p in group]
        assert sorted(ids) == sorted(id(p) for p in tower.parameters()), name  # each parameter exactly once
        assert len(groups) == (tower.num_blocks() if name == "image" else len(tower.transformer.resblocks)) + 2
    image = towers(clip)["image"]
    assert any(p is clip.image_tower.conv1.weight for p in image[0])  # the stem first
    pool = clip.image_tower.head_parameters(clip.image_tower.num_blocks())
    assert {id(p) for p in image[-1]} == {id(p) for p in pool}
    assert towers(clip)["text"][-1][-1] is clip.text_tower.text_projection


def test_layerwise_lr_decay_assigns_each_depth_its_lr():
    clip = CLIP(get_model_config("ViT-Tiny-8-64"))  # 4 blocks a tower: 6 depths, the top at 5
    lock_towers(clip, lock_text=True, unlock_last=1)  # text: only its last block and projection train
    groups = layerwise_param_groups(clip, lr=1e-3, lr_decay=0.5, weight_decay=0.1)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    placed = [id(p) for g in groups for p in g["params"]]
    assert sorted(placed) == sorted(id(p) for p in clip.parameters() if p.requires_grad)  # each trainable once
    image, text = clip.image_tower, clip.text_tower
    expected = {image.conv1.weight: 1e-3 * 0.5**5, image.positional_embedding: 1e-3 * 0.5**5,
                image.transformer.resblocks[0].attn.in_proj_weight: 1e-3 * 0.5**4,
                image.transformer.resblocks[3].mlp.c_fc.weight: 1e-3 * 0.5,
                image.proj: 1e-3, image.ln_post.weight: 1e-3,
                text.transformer.resblocks[3].ln_1.bias: 1e-3 * 0.5, text.text_projection: 1e-3, clip.logit_scale: 1e-3}
    for p, lr in expected.items():
        assert lr_of[id(p)] == pytest.approx(lr, rel=1e-12)
    assert id(text.token_embedding.weight) not in lr_of and id(text.transformer.resblocks[2].ln_1.weight) not in lr_of
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(image.ln_post.weight) in no_decay and id(clip.logit_scale) in no_decay and id(image.proj) not in no_decay


@pytest.mark.parametrize("locks", [dict(lock_image=True), dict(lock_text=True, unlock_last=1)])
def test_locking_freezes_weights_and_buffers(tmp_path, locks):
    classes = _class_folder(tmp_path / "colours")
    cfg = _cfg(tmp_path / "run", classes, model="RN-Tiny-64", steps=3, alphas=(1.0,), **locks)  # BatchNorm
    finetune(cfg, progress=False)
    before, after = _initial(cfg), read_checkpoint(cfg.out)["model"]
    probe = create_model(cfg.model, device="cpu")[0]
    lock_towers(probe, cfg.lock_image, cfg.lock_text, cfg.unlock_last)
    trainable = {n for n, p in probe.named_parameters() if p.requires_grad}
    locked_prefix = "image_tower." if cfg.lock_image else "text_tower."
    frozen = [k for k in before if k.startswith(locked_prefix) and k not in trainable]
    assert frozen
    for key in frozen:  # weights and BatchNorm statistics, bit for bit
        assert torch.equal(before[key], after[key]), key
    # Every trainable tensor moved, but an attention pool's key bias: softmax ignores it, so its gradient is 0.
    assert trainable and all(not torch.equal(before[n], after[n]) for n in trainable if not n.endswith("k_proj.bias"))
    if cfg.unlock_last:
        assert trainable >= {"text_tower.text_projection", "text_tower.transformer.resblocks.3.mlp.c_fc.weight"}
        assert "text_tower.transformer.resblocks.2.mlp.c_fc.weight" not in trainable
    else:
        assert not any(k.startswith("image_tower.") for k in trainable)
        moved = [k for k in before if k.startswith("image_tower.") and "running_" in k]
        assert all(torch.equal(before[k], after[k]) for k in moved)


def test_wise_ft_end_points_are_exact_and_half_is_the_midpoint():
    torch.manual_seed(0)
    a, b = CLIP(get_model_config("RN-Tiny-64")).state_dict(), CLIP(get_model_config("RN-Tiny-64")).state_dict()
    b = {k: (v + 1 if k.endswith("num_batches_tracked") else v) for k, v in b.items()}
    for alpha, expected in ((0.0, a), (1.0, b)):
        mixed = wise_ft(a, b, alpha)
        assert all(torch.equal(mixed[k], expected[k]) for k in a), alpha
    half = wise_ft(a, b, 0.5)
    floats = [k for k in a if a[k].is_floating_point()]
    assert all(torch.equal(half[k], (a[k] + b[k]) / 2) for k in floats)
    assert torch.equal(half["image_tower.bn1.num_batches_tracked"], b["image_tower.bn1.num_batches_tracked"])
    quarter = wise_ft(a, b, 0.25)
    assert all(torch.allclose(quarter[k], 0.75 * a[k] + 0.25 * b[k], atol=1e-7) for k in floats)
    # The model at α = 0 is the zero-shot model, output for output.
    model, other = CLIP(get_model_config("RN-Tiny-64")).eval(), CLIP(get_model_config("RN-Tiny-64")).eval()
    model.load_state_dict(a)
    other.load_state_dict(wise_ft(a, b, 0.0))
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model.encode_image(x), other.encode_image(x))


def test_a_tiny_finetune_through_the_cli_ends_with_its_results(tmp_path, capsys):
    classes = _class_folder(tmp_path / "colours")
    run = tmp_path / "run"
    code = main(["finetune", "--out", str(run), "--model", "ViT-Tiny-8-64", "--classes", str(classes),
                 "--templates", "plain", "--steps", "4", "--batch-size", "8", "--lr", "1e-3", "--warmup", "1",
                 "--lr-decay", "0.8", "--eval-every", "2", "--log-every", "1", "--eval-out", "world-shape",
                 "--eval-n", "20", "--alphas", "0,0.5,1", "--save-alpha", "0.5", "--device", "cpu"])
    assert code == 0
    results = json.loads((run / "results.json").read_text())
    assert [r["alpha"] for r in results["wise_ft"]] == [0.0, 0.5, 1.0]
    assert results["in_domain"] == [str(classes)] and results["out_of_domain"] == ["world-shape"]
    assert [r["step"] for r in results["curve"]] == [2, 4]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if "eval" in r] == [2, 4]
    # α = 0 is the model before fine-tuning and α = 1 the saved one, as `clipworks eval zeroshot` scores them.
    torch.manual_seed(0)
    start, preprocess = create_model("ViT-Tiny-8-64", device="cpu")
    tuned, _ = create_model(str(run / "model"), device="cpu")
    for alpha, model in ((0.0, start), (1.0, tuned)):
        reference = zeroshot(model, preprocess, get_tokenizer(model), str(classes), templates="plain")
        row = next(r for r in results["wise_ft"] if r["alpha"] == alpha)
        assert row["in"][str(classes)] == round(reference["metrics"]["top1"], 5)
    last = {k: v for k, v in results["curve"][-1].items() if k != "step"}
    assert {k: v for k, v in row.items() if k != "alpha"} == last  # the last evaluation in training is α = 1
    half = create_model(str(run / "model-wise"), device="cpu")[0].state_dict()
    assert all(torch.allclose(half[k], (start.state_dict()[k] + tuned.state_dict()[k]) / 2, atol=1e-6)
               for k in half if half[k].is_floating_point())
    assert "| α |" in capsys.readouterr().out


def test_resume_gives_bit_identical_weights(tmp_path, capsys):
    classes = _class_folder(tmp_path / "colours")
    straight = _cfg(tmp_path / "straight", classes, lr_decay=0.7, lock_image=True, unlock_last=2, steps=5)
    finetune(straight, progress=False)
    split = _cfg(tmp_path / "split", classes, lr_decay=0.7, lock_image=True, unlock_last=2, steps=5)
    finetune(split, progress=False, stop_after=3)
    assert read_checkpoint(split.out)["step"] == 3 and not (Path(split.out) / "results.json").exists()
    assert main(["finetune", "--out", split.out, "--resume"]) == 0
    a, b = read_checkpoint(straight.out), read_checkpoint(split.out)
    assert a["step"] == b["step"] == 5
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    drop = lambda rows: [{k: v for k, v in r.items() if k != "samples_per_s"} for r in rows]  # noqa: E731
    rows = [drop(read_metrics(Path(cfg.out) / "metrics.jsonl")) for cfg in (straight, split)]
    assert rows[0] == rows[1] and [r["step"] for r in rows[0]] == [1, 2, 3, 4, 5]
    assert "| α |" in capsys.readouterr().out
    # A resumed run refuses a flag that would change its weights.
    assert main(["finetune", "--out", split.out, "--resume", "--lr", "0.5"]) == 1
    assert "--lr 0.5: the run" in capsys.readouterr().err
