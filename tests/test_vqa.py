"""VQA: generated questions are answered correctly by the scene facts, grid features have the right shapes
(and position embeddings interpolate as open_clip's do), and a tiny model trains, saves, resumes and answers."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

import clipworks
from clipworks.data.world import BIGGER_RATIO, HELDOUT_PAIRS, RELATION_MARGIN
from clipworks.model.layers import resize_position_embedding
from clipworks.vqa.questions import ANSWERS, TYPES, VQADataset

REPO = Path(__file__).resolve().parents[1]


def _resolve(ref: str, objects: list[dict]) -> dict:
    """An independent reading of "the star" / "the red object" / "the red star": the one object it fits."""
    words = ref.removeprefix("the ").split()
    if words[-1] == "object":
        fits = [o for o in objects if o["colour"] == words[0]]
    elif len(words) == 2:
        fits = [o for o in objects if o["colour"] == words[0] and o["shape"] == words[1]]
    else:
        fits = [o for o in objects if o["shape"] == words[0]]
    assert len(fits) == 1, (ref, objects)
    return fits[0]


def _oracle(question: str, facts: dict) -> str:
    objects = facts["objects"]
    q = question.rstrip("?")
    if q.startswith("what "):
        attribute, ref = q.split(" is ", 1)
        return _resolve(ref, objects)[attribute.split()[1]]
    if q.startswith("is there a "):
        words = q.removeprefix("is there a ").split()
        if words[-1] == "object":
            return "yes" if any(o["colour"] == words[0] for o in objects) else "no"
        if len(words) == 2:
            return "yes" if any(o["colour"] == words[0] and o["shape"] == words[1] for o in objects) else "no"
        return "yes" if any(o["shape"] == words[0] for o in objects) else "no"
    if q.startswith("how many "):
        what = q.removeprefix("how many ").removesuffix(" are there")
        if what == "objects":
            return str(len(objects))
        if what.endswith(" objects"):
            return str(sum(o["colour"] == what.split()[0] for o in objects))
        shape = what[:-2] if what.endswith("sses") else what[:-1]
        return str(sum(o["shape"] == shape for o in objects))
    if q.startswith("are "):
        body, kind = q.removeprefix("are ").rsplit(" the same ", 1)
        a, b = body.split(" and ")
        return "yes" if _resolve(a, objects)[kind] == _resolve(b, objects)[kind] else "no"
    body = q.removeprefix("is ")
    if " bigger than " in body:
        a, b = (_resolve(r, objects) for r in body.split(" bigger than "))
        assert a["radius"] >= BIGGER_RATIO * b["radius"] or b["radius"] >= BIGGER_RATIO * a["radius"]
        return "yes" if a["radius"] >= BIGGER_RATIO * b["radius"] else "no"
    for words, axis, sign in ((" to the left of ", "x", 1), (" to the right of ", "x", -1), (" above ", "y", 1),
                              (" below ", "y", -1)):
        if words in body:
            a, b = (_resolve(r, objects) for r in body.split(words))
            gap = sign * (b[axis] - a[axis])
            assert abs(gap) >= RELATION_MARGIN - 1e-3  # never asked about objects too close to tell
            return "yes" if gap > 0 else "no"
    raise AssertionError(f"unparsed question {question!r}")


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_questions_are_answered_by_the_scene_facts_and_balanced(split):
    data = VQADataset(600, seed=4, split=split)
    types, yes_no = Counter(), Counter()
    for i in range(600):
        scene_index, q = data.item(i)
        facts = data._world.scene(scene_index).facts()
        assert q.answer in ANSWERS and q.answer == _oracle(q.text, facts), q
        types[q.type] += 1
        if q.answer in ("yes", "no"):
            yes_no[(q.type, q.answer)] += 1
        if split == "heldout":
            main = facts["objects"][0]
            assert (main["colour"], main["shape"]) in HELDOUT_PAIRS
    assert set(types.values()) == {120} and set(types) == set(TYPES)
    assert all(yes_no[(t, "yes")] == yes_no[(t, "no")] == 60 for t in ("existence", "relation", "compare"))
    item = data[7]
    assert item.image.size == (64, 64) and item.question == data.item(7)[1]


def test_grid_feature_shapes_and_position_interpolation():
    import open_clip

    resnet, _ = clipworks.create_model("RN-Tiny-64", device="cpu")
    for size, side in ((64, 2), (128, 4)):
        x = torch.randn(2, 3, size, size)
        assert resnet.image_tower.grid_shape(size) == (side, side, 512)
        assert resnet.image_tower.forward_grid(x).shape == (2, side * side, 512)
        assert resnet.encode_image(x).shape == (2, 128)  # attention pooling interpolates its embedding
    pool = resnet.image_tower.attnpool
    assert resize_position_embedding(pool.positional_embedding, (2, 2)) is pool.positional_embedding  # unchanged
    # the pooled output at 128 px equals attention pooling with the interpolated embedding put in by hand
    x = torch.randn(1, 3, 128, 128)
    manual = copy.deepcopy(pool)
    manual.positional_embedding = torch.nn.Parameter(resize_position_embedding(pool.positional_embedding, (4, 4)))
    with torch.no_grad():
        torch.testing.assert_close(resnet.encode_image(x), manual(resnet.image_tower.forward_trunk(x)))

    # ViT: patch tokens; the interpolated embedding equals open_clip's resize_pos_embed
    vit, _ = clipworks.create_model("ViT-Tiny-8-64", device="cpu")
    width = vit.image_tower.ln_post.normalized_shape[0]
    assert vit.image_tower.grid_shape(96) == (12, 12, width)
    assert vit.image_tower.forward_grid(torch.randn(1, 3, 96, 96)).shape == (1, 144, width)
    reference = open_clip.create_model("ViT-B-32", pretrained=None, force_image_size=320)  # a 10 x 10 grid
    original = torch.randn(50, 768, generator=torch.Generator().manual_seed(0))  # 1 + 7 x 7, as at 224 px
    state = {"visual.positional_embedding": original.clone()}
    open_clip.model.resize_pos_embed(state, reference)
    torch.testing.assert_close(resize_position_embedding(original, (10, 10)), state["visual.positional_embedding"])


def test_tiny_training_resumes_exactly_saves_and_answers(tmp_path):
    from clipworks.vqa.config import VQATrainConfig
    from clipworks.model.transforms import load_image
    from clipworks.vqa.data import render_items, to_input
    from clipworks.vqa.inference import ask, predict
    from clipworks.vqa.model import load_vqa
    from clipworks.vqa.train import train_vqa

    base = dict(train_size=40, steps=6, batch_size=8, width=32, layers=1, heads=2, image_size=64, checkpoint_every=3,
                warmup=1)
    full = train_vqa(VQATrainConfig(out=str(tmp_path / "full"), **base), progress=False)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    split = VQATrainConfig(out=str(tmp_path / "split"), **base)
    train_vqa(split, progress=False, stop_after=3)
    resumed = train_vqa(split, resume=True, progress=False)
    assert resumed["final_loss"] == pytest.approx(full["final_loss"], rel=1e-6)
    assert [json.loads(x)["loss"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()] == losses
    assert full["parameters"]["trainable"] < full["parameters"]["total"]  # the CLIP towers stay frozen
    # the saved head (without the frozen CLIP weights) answers as the trained model does
    model = load_vqa(tmp_path / "full" / "model")
    data = render_items(12, 1, "heldout", 64)
    answers = predict(model, data.images, data.questions)
    assert len(answers) == 12 and set(answers) <= set(ANSWERS)
    # the resumed run ends with the same weights, so its saved head gives the same answers, and so do the logits
    resumed_model = load_vqa(tmp_path / "split" / "model")
    assert predict(resumed_model, data.images, data.questions) == answers
    with torch.no_grad():
        x = to_input(data.images, *model.normalisation())
        torch.testing.assert_close(resumed_model(x, resumed_model.tokenize(data.questions)),
                                   model(x, model.tokenize(data.questions)), rtol=1e-5, atol=1e-5)
    import safetensors.torch

    saved = safetensors.torch.load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    assert not any(k.startswith(("image_tower.", "text_tower.")) for k in saved)
    # a scratch encoder trains its image tower, which is then saved with the head
    scratch = train_vqa(VQATrainConfig(out=str(tmp_path / "scratch"), encoder="scratch", freeze_encoder=False,
                                       **{**base, "steps": 2}), progress=False)
    saved = safetensors.torch.load_file(str(tmp_path / "scratch" / "model" / "model.safetensors"))
    assert any(k.startswith("image_tower.") for k in saved)
    clip_tower = clipworks.create_model("default", device="cpu")[0].image_tower.state_dict()
    again = load_vqa(tmp_path / "scratch" / "model").image_tower.state_dict()
    assert not torch.equal(again["conv1.weight"], clip_tower["conv1.weight"]) and scratch["steps"] == 2

    # the CLI: an answer list for a good image, one-line errors for bad input
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    image = tmp_path / "scene.png"
    VQADataset(1, seed=2)[0].image.save(image)
    cli = [sys.executable, "-m", "clipworks.cli.main", "vqa", "ask"]
    proc = subprocess.run([*cli, str(image), "what colour is the star?", "--model", str(tmp_path / "full" / "model")],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    # the CLI prints what the Python API answers for the same image and question, best first
    expected = ask(load_vqa(tmp_path / "full" / "model"), load_image(image), "what colour is the star?", top=3)
    assert [a for _, a in lines] == [a for a, _ in expected], (lines, expected)
    assert [float(p) for p, _ in lines] == pytest.approx([p for _, p in expected], abs=1e-3)
    assert [float(p) for p, _ in lines] == sorted((float(p) for p, _ in lines), reverse=True)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    for args, expected in (([str(tmp_path / "bad.png"), "what shape?"], "bad.png"),
                           ([str(image), "what shape?", "--model", str(tmp_path)], "no vqa_config.json"),
                           ([str(image), " ", "--model", str(tmp_path / "full" / "model")], "empty question"),
                           ([str(image), "why " * 40, "--model", str(tmp_path / "full" / "model")], "context length")):
        proc = subprocess.run([*cli, *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 1 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
