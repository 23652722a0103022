"""The generated world: deterministic items, held-out pairs kept out of training, captions and facts
that agree with each other and with the pixels, and a folder writer."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.utils.data
from PIL import Image

from clipworks.data import world
from clipworks.data.world import (
    COLOURS,
    HELDOUT_PAIRS,
    POSITIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    WorldDataset,
    captions,
    render,
    sample_scene,
    single_object_dataset,
    write_world,
)

REPO = Path(__file__).resolve().parents[1]


def pixels(sample) -> np.ndarray:
    return np.asarray(sample.image)


def pairs_of(facts: dict) -> set[tuple[str, str]]:
    return {(o["colour"], o["shape"]) for o in facts["objects"]}


def words(caption: str) -> list[str]:
    return re.findall(r"[a-z]+", caption.lower())


# ---------------------------------------------------------------- vocabulary and determinism


def test_vocabulary():
    assert SHAPES == ("circle", "square", "triangle", "star", "heart", "cross", "diamond", "hexagon")
    assert len(COLOURS) == 8 and len(SIZES) == 3 and len(POSITIONS) == 9
    assert len(HELDOUT_PAIRS) == 8
    assert sorted(c for c, _ in HELDOUT_PAIRS) == sorted(COLOURS)
    assert sorted(s for _, s in HELDOUT_PAIRS) == sorted(SHAPES)
    rgb = np.array(list(COLOURS.values()), float)
    distances = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb)) * 1e9
    assert distances.min() > 90, "object colours must stay well separated"


def test_items_are_deterministic_and_distinct():
    a, b = WorldDataset(20, seed=3), WorldDataset(20, seed=3)
    for i in (0, 7, 19):
        assert np.array_equal(pixels(a[i]), pixels(b[i]))
        assert a[i].captions == b[i].captions and a[i].facts == b[i].facts
        assert a[i].key == f"world/train/3/{i}"
    assert not np.array_equal(pixels(a[0]), pixels(a[1]))
    assert not np.array_equal(pixels(a[0]), pixels(WorldDataset(20, seed=4)[0]))
    assert not np.array_equal(pixels(a[0]), pixels(WorldDataset(20, seed=3, split="all")[0]))
    assert a.scene(7).facts() == a[7].facts
    assert np.array_equal(np.asarray(render(a.scene(7))), pixels(a[7]))


def test_items_do_not_depend_on_the_process_hash_seed():
    code = (
        "import hashlib, numpy as np; from clipworks.data.world import WorldDataset; s = WorldDataset(5, seed=1)[4]; "
        "print(hashlib.sha256(np.asarray(s.image).tobytes()).hexdigest(), s.captions)"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_numpy_generator_is_accepted():
    a = sample_scene(np.random.default_rng(5), "heldout")
    b = sample_scene(np.random.default_rng(5), "heldout")
    assert a == b and (a.objects[0].colour, a.objects[0].shape) in HELDOUT_PAIRS
    assert 4 <= len(captions(a, np.random.default_rng(1))) <= 6


def test_bad_split_is_named():
    with pytest.raises(ValueError, match="split"):
        WorldDataset(3, split="test")


# ---------------------------------------------------------------- splits


def test_train_never_shows_a_heldout_pair_and_covers_the_vocabulary():
    data = WorldDataset(3000, seed=0, split="train")
    seen = set()
    for i in range(len(data)):
        pairs = pairs_of(data.scene(i).facts())
        assert not pairs & set(HELDOUT_PAIRS), f"item {i} shows a held-out pair: {pairs}"
        seen |= pairs
    assert {c for c, _ in seen} == set(COLOURS)
    assert {s for _, s in seen} == set(SHAPES)
    assert seen == set(world.TRAIN_PAIRS)


def test_heldout_main_object_is_a_heldout_pair():
    data = WorldDataset(500, seed=0, split="heldout")
    mains = set()
    for i in range(len(data)):
        objects = data.scene(i).facts()["objects"]
        mains.add((objects[0]["colour"], objects[0]["shape"]))
        assert all((o["colour"], o["shape"]) not in HELDOUT_PAIRS for o in objects[1:])
    assert mains == set(HELDOUT_PAIRS)


def test_single_object_dataset_labels():
    data = single_object_dataset(40, seed=2, split="heldout")
    for i in range(len(data)):
        objects = data.scene(i).facts()["objects"]
        assert len(objects) == 1 and (objects[0]["colour"], objects[0]["shape"]) in HELDOUT_PAIRS


# ---------------------------------------------------------------- captions and facts


def test_captions_name_exactly_the_scene_objects():
    from clipworks.model.tokenizer import Tokenizer

    tokenizer = Tokenizer()
    data = WorldDataset(400, seed=1, split="all")
    for i in range(len(data)):
        rng = data._rng(i)
        scene = sample_scene(rng, data.split, data.n_objects)
        facts = scene.facts()
        texts = captions(scene, rng)
        present = pairs_of(facts)
        main = (facts["objects"][0]["colour"], facts["objects"][0]["shape"])
        assert 4 <= len(texts) <= 6 and len(set(texts)) == len(texts), texts
        if len(facts["objects"]) == 1:
            assert world._a(f"{main[0]} {main[1]}") in texts
        colours_present = {c for c, _ in present}
        shapes_present = {s for _, s in present}
        kinds = set()
        for text in texts:
            w = words(text)
            named, colours, shapes = set(), set(), set()
            for k, word in enumerate(w):
                if word in COLOURS:
                    colours.add(word)
                    if k + 1 < len(w) and w[k + 1] in SHAPES:
                        named.add((word, w[k + 1]))
                if word in SHAPES:
                    shapes.add(word)
            assert named <= present, f"{text!r} names {named}, scene has {present}"
            assert colours <= colours_present and shapes <= shapes_present, f"{text!r} names what is absent"
            assert colours or shapes, f"{text!r} names no object"
            if named:
                assert main in named, f"{text!r} does not mention the main object {main}"
                kinds.add("full")
            elif shapes and not colours:
                assert main[1] in shapes, f"{text!r} does not mention the main object's shape"
                kinds.add("shape only")
            else:
                assert main[0] in colours and not shapes, f"{text!r} does not mention the main object's colour"
                kinds.add("colour only")
            assert not re.search(r"\ba [aeiou]|\ban [^aeiou\W]", text), f"wrong article in {text!r}"
            assert len(tokenizer.encode(text)) + 2 <= 32, f"{text!r} does not fit 32 tokens"
        # Every scene has a caption that needs shape (no colour to lean on) and one with both.
        assert {"full", "shape only"} <= kinds, texts


def test_facts_are_geometrically_true():
    data = WorldDataset(500, seed=2, split="all")
    n_relations = 0
    for i in range(len(data)):
        facts = data.scene(i).facts()
        json.dumps(facts)
        objects = facts["objects"]
        for o in objects:
            assert o["shape"] in SHAPES and o["colour"] in COLOURS and o["size"] in SIZES
            assert o["radius"] <= o["x"] <= 1 - o["radius"] and o["radius"] <= o["y"] <= 1 - o["radius"]
            row, col = min(int(o["y"] * 3), 2), min(int(o["x"] * 3), 2)
            assert o["position"] == POSITIONS[3 * row + col]
        for a, b in zip(objects, objects[1:]):
            assert math.hypot(a["x"] - b["x"], a["y"] - b["y"]) >= 0.9 * (a["radius"] + b["radius"])
        for rel in facts["relations"]:
            a, b = objects[rel["subject"]], objects[rel["object"]]
            n_relations += 1
            assert rel["relation"] in RELATIONS
            check = {
                "left of": a["x"] < b["x"],
                "right of": a["x"] > b["x"],
                "above": a["y"] < b["y"],
                "below": a["y"] > b["y"],
                "bigger than": a["radius"] > 1.1 * b["radius"],
                "smaller than": a["radius"] * 1.1 < b["radius"],
            }[rel["relation"]]
            assert check, (rel, a, b)
        # Size words and "bigger than" agree: bigger exactly when the size classes differ.
        for k, a in enumerate(objects):
            for m, b in enumerate(objects):
                bigger = {"subject": k, "relation": "bigger than", "object": m} in facts["relations"]
                order = list(SIZES)
                assert bigger == (order.index(a["size"]) > order.index(b["size"]))
    assert n_relations > 500


# ---------------------------------------------------------------- pixels


def test_pixels_show_the_object_colour_on_a_muted_background():
    data = single_object_dataset(60, seed=4, split="all")
    for i in range(len(data)):
        sample = data[i]
        img = pixels(sample).astype(float)
        n = img.shape[0]
        o = sample.facts["objects"][0]
        yy, xx = np.mgrid[0:n, 0:n] + 0.5
        inside = np.hypot(xx - o["x"] * n, yy - o["y"] * n) <= 0.25 * o["radius"] * n
        median = np.median(img[inside], axis=0)
        assert np.abs(median - COLOURS[o["colour"]]).max() < 30, (o, median)
        for corner in (img[:3, :3], img[:3, -3:], img[-3:, :3], img[-3:, -3:]):
            c = corner.reshape(-1, 3).mean(0)
            assert c.max() - c.min() <= 0.25 * c.max() + 12, f"corner {c} is too saturated for a background"
            assert min(np.abs(c - np.array(rgb)).max() for rgb in COLOURS.values()) > 40, c


def test_image_size_and_mode():
    sample = WorldDataset(2, image_size=32)[1]
    assert sample.image.mode == "RGB" and sample.image.size == (32, 32)


# ---------------------------------------------------------------- loading and writing


def test_dataloader_with_workers():
    data = WorldDataset(8, seed=5)
    assert np.array_equal(pixels(pickle.loads(pickle.dumps(data))[3]), pixels(data[3]))
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2, collate_fn=list)
    keys = [s.key for batch in loader for s in batch]
    assert keys == [f"world/train/5/{i}" for i in range(8)]


def test_write_world(tmp_path):
    out = write_world(tmp_path / "w", size=5, seed=1, split="heldout", image_size=48)
    records = [json.loads(line) for line in (out / "facts.jsonl").read_text().splitlines()]
    data = WorldDataset(5, seed=1, split="heldout", image_size=48)
    assert len(records) == 5
    for i, record in enumerate(records):
        image = Image.open(out / record["image"])
        assert image.size == (48, 48) and image.mode == "RGB"
        assert np.array_equal(np.asarray(image), pixels(data[i]))
        assert (out / "images" / f"{i:06d}.txt").read_text().splitlines() == data[i].captions
        assert record["facts"] == data[i].facts and record["key"] == data[i].key


def test_preview(tmp_path):
    path = world.save_preview(tmp_path / "p.png", rows=2, cols=2)
    assert Image.open(path).size[0] > 100


def test_grayscale_items_name_no_colour():
    data = WorldDataset(300, seed=2, split="train", grayscale=0.3)
    gray = [data[i] for i in range(300) if data[i].facts.get("grayscale")]
    assert 50 <= len(gray) <= 130
    for sample in gray:
        pixels = np.asarray(sample.image).astype(int)
        assert np.abs(pixels[..., 0] - pixels[..., 1]).mean() < 4  # grayscale up to the faint per-pixel noise
        shapes = {o["shape"] for o in sample.facts["objects"]}
        for text in sample.captions:
            w = words(text)
            assert not set(w) & set(COLOURS), f"colour named in {text!r}"
            assert set(w) & shapes, f"{text!r} names no shape of the scene"
    # Without the option nothing is grayscale, so the default data and the held-out split are untouched.
    assert not any(WorldDataset(50, seed=2)[i].facts.get("grayscale") for i in range(50))


def test_hard_negatives_change_one_word_and_never_name_a_heldout_pair():
    data = WorldDataset(300, seed=4, split="train", grayscale=0.3, hard_negatives=True)
    colour_pattern = "|".join(COLOURS)
    made = 0
    for i in range(300):
        sample = data[i]
        assert len(sample.negatives) == len(sample.captions)
        present = {(o["colour"], o["shape"]) for o in sample.facts["objects"]}
        shapes = {o["shape"] for o in sample.facts["objects"]}
        for caption, negative in zip(sample.captions, sample.negatives):
            if not negative:
                continue
            made += 1
            a, b = caption.split(), negative.split()
            assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1, (caption, negative)
            new = next(y for x, y in zip(a, b) if x != y).strip(",")
            assert new not in shapes and not any(c == new for c, _ in present), (caption, negative)
            for colour, shape in re.findall(rf"\b({colour_pattern}) (\w+)", negative):
                assert (colour, shape) not in HELDOUT_PAIRS, negative
        if i < 50:  # the images and captions are those of the data set without negatives
            plain = WorldDataset(300, seed=4, split="train", grayscale=0.3)[i]
            assert plain.captions == sample.captions and np.array_equal(np.asarray(plain.image), np.asarray(sample.image))
    assert made > 1000
