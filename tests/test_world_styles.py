"""The styled world: every style renders deterministically and visibly, held-out styles and pairs never reach
the train split, backdrops span the brightness range, and NegCLIP-style negatives are never true of the scene."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from clipworks.data import styles as style_lib
from clipworks.data.world import (
    COLOURS,
    HELDOUT_PAIRS,
    SHAPES,
    WorldDataset,
    attribute_swap,
    relation_swap,
    render,
    sample_scene,
)

PHRASES = {"to the left of": "left of", "to the right of": "right of", "above": "above", "below": "below",
           "that is bigger than": "bigger than", "that is smaller than": "smaller than"}


@pytest.mark.parametrize("style", style_lib.STYLES)
def test_every_style_renders_deterministically_and_shows_the_object(style):
    for seed in range(3):
        scene = sample_scene(random.Random(seed), "train", (1, 1), styles=(style,))
        assert scene.style == style
        a, b = np.asarray(render(scene, 64)), np.asarray(render(scene, 64))
        assert a.shape == (64, 64, 3) and np.array_equal(a, b)
        # The object changes the picture: the same scene with the object faded out differs clearly.
        empty = np.asarray(render(scene, 64, opacity=[0.0])).astype(float)
        obj = scene.objects[0]
        x0, x1 = int(max(0, (obj.x - obj.radius) * 64)), int(min(64, (obj.x + obj.radius) * 64 + 1))
        y0, y1 = int(max(0, (obj.y - obj.radius) * 64)), int(min(64, (obj.y + obj.radius) * 64 + 1))
        changed = np.abs(a[y0:y1, x0:x1].astype(float) - empty[y0:y1, x0:x1]).sum(axis=2) > 60
        assert changed.mean() > 0.03, (style, seed, changed.mean())


def test_dataset_items_are_pure_functions_of_the_index():
    a = WorldDataset(50, seed=4, styles="all", grayscale=0.3, hard_negatives=True)
    b = WorldDataset(50, seed=4, styles="all", grayscale=0.3, hard_negatives=True)
    for i in (0, 7, 49):
        x, y = a[i], b[i]
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))
        assert x.captions == y.captions and x.negatives == y.negatives and x.facts == y.facts


def test_no_heldout_style_pair_or_photo_reaches_the_train_split():
    data = WorldDataset(3000, seed=11, styles="train", grayscale=0.3)
    seen_styles, seen_photos = set(), set()
    held_words = {w.split(" {")[0] for s in style_lib.HELDOUT_STYLES for w in style_lib.STYLE_WORDS[s]}
    for i in range(len(data)):
        scene = data.scene(i)
        seen_styles.add(scene.style)
        assert not {(o.colour, o.shape) for o in scene.objects} & set(HELDOUT_PAIRS)
        if scene.background.kind == "photo":
            seen_photos.add(scene.background.photo)
        if i < 600:  # captions of a sample of items: no held-out style's words
            assert not any(w in c for c in data[i].captions for w in held_words)
    assert seen_styles == set(style_lib.TRAIN_STYLES)
    assert seen_photos and not seen_photos & set(style_lib.HELDOUT_PHOTOS)


def test_heldout_styles_are_what_the_heldout_set_draws():
    data = WorldDataset(200, seed=2, styles="heldout")
    assert {data.scene(i).style for i in range(200)} == set(style_lib.HELDOUT_STYLES)
    with pytest.raises(ValueError, match="styles"):
        WorldDataset(10, styles="crayon")


def test_backdrops_span_the_brightness_range_and_keep_contrast():
    brightness, contrast, kinds = [], [], set()
    for seed in range(600):
        scene = sample_scene(random.Random(seed), "train", (1, 3), styles="train")
        bg = scene.background
        kinds.add(bg.kind)
        if bg.kind != "photo":
            brightness.append(np.mean(bg.colour))
            contrast.append(min(np.linalg.norm(np.subtract(c, ink)) for c in (bg.colour, bg.colour2) for ink in scene.inks))
    assert kinds == set(style_lib.BACKGROUNDS)
    assert np.mean(np.array(contrast) >= style_lib.MIN_CONTRAST) > 0.97
    assert min(brightness) < 30 and max(brightness) > 225
    assert np.mean(np.array(brightness) > 200) > 0.2 and np.mean(np.array(brightness) < 60) > 0.2


def test_colourless_styles_never_name_a_colour():
    data = WorldDataset(400, seed=5, styles=("silhouette",))
    colour_words = set(COLOURS)
    for i in range(0, 400, 7):
        for caption in data[i].captions:
            assert not colour_words & set(re.findall(r"[a-z]+", caption)), caption


def _objects_named(text: str) -> list[tuple[str | None, str | None, str]]:
    """(size or None, colour or None, shape) for each object named, read independently of the world's code."""
    tokens = re.findall(r"[a-z]+", text)
    out = []
    for k, tok in enumerate(tokens):
        if tok in SHAPES:
            colour = tokens[k - 1] if k and tokens[k - 1] in COLOURS else None
            before = tokens[k - 2] if colour else (tokens[k - 1] if k else None)
            out.append((before if before in ("small", "medium", "large") else None, colour, tok))
    return out


def _fits(o: dict, named) -> bool:
    size, colour, shape = named
    return o["shape"] == shape and colour in (None, o["colour"]) and size in (None, o["size"])


def _holds(facts: dict, first, relation: str, second) -> bool:
    objs = facts["objects"]
    return any(r["relation"] == relation and _fits(objs[r["subject"]], first) and _fits(objs[r["object"]], second)
               for r in facts["relations"])


def test_swap_negatives_are_never_true_of_the_scene():
    data = WorldDataset(1500, seed=8, styles="train", n_objects=(2, 3), hard_negatives=True)
    relation_swaps = attribute_swaps = 0
    for i in range(len(data)):
        sample = data[i]
        for caption, negative in zip(sample.captions, sample.negatives):
            if not negative or sorted(negative.split()) != sorted(caption.split()):
                continue  # empty, or one word replaced (checked in test_world)
            assert negative != caption
            named, named_before = _objects_named(negative), _objects_named(caption)
            if sorted(named, key=str) == sorted(named_before, key=str):  # the same objects, in swapped roles
                phrase = next(p for p in sorted(PHRASES, key=len, reverse=True) if f" {p} " in negative)
                left, right = negative.split(f" {phrase} ", 1)
                assert not _holds(sample.facts, _objects_named(left)[-1], PHRASES[phrase], _objects_named(right)[0]), \
                    (caption, negative, sample.facts)
                relation_swaps += 1
            else:  # objects that traded colours: at least one so named is absent, and none is a held-out pair
                assert any(not any(_fits(o, n) for o in sample.facts["objects"]) for n in named), (caption, negative)
                assert not {(c, s) for _, c, s in named} & set(HELDOUT_PAIRS)
                attribute_swaps += 1
    assert relation_swaps > 300 and attribute_swaps > 100, (relation_swaps, attribute_swaps)


def test_swap_functions_on_a_known_scene():
    scene = None
    rng = random.Random(0)
    while scene is None:
        s = sample_scene(rng, "train", (2, 2), styles="train")
        if len(s.objects) == 2 and s.objects[0].colour != s.objects[1].colour and s.objects[0].shape != s.objects[1].shape \
                and s.objects[1].x - s.objects[0].x > 0.2:
            scene = s
    a, b = scene.objects
    name = lambda o: ("an " if o.colour[0] in "aeiou" else "a ") + f"{o.colour} {o.shape}"  # noqa: E731
    caption = f"{name(a)} to the left of {name(b)}"
    assert relation_swap(caption, scene) == f"{name(b)} to the left of {name(a)}"
    assert relation_swap(f"{name(a)} and {name(b)}", scene) == ""
    traded = attribute_swap(f"{name(a)} and {name(b)}", scene, random.Random(0))
    if (b.colour, a.shape) in HELDOUT_PAIRS or (a.colour, b.shape) in HELDOUT_PAIRS:
        assert traded == ""
    else:
        assert _objects_named(traded) == [(None, b.colour, a.shape), (None, a.colour, b.shape)]


def test_order_focus_captions_depend_on_word_order_and_flipped_relations_are_false():
    data = WorldDataset(600, seed=9, styles="train", n_objects=(2, 3), hard_negatives=True, order_focus=1.0)
    opposite = {"to the left of": "to the right of", "above": "below", "that is bigger than": "that is smaller than"}
    opposite.update({b: a for a, b in opposite.items()})
    flips = focused = 0
    for i in range(len(data)):
        sample = data[i]
        if sample.facts.get("grayscale") or sample.facts["style"] in style_lib.COLOURLESS_STYLES:
            continue
        focused += all(len([n for n in _objects_named(c) if n[1]]) >= 2 for c in sample.captions)
        for caption, negative in zip(sample.captions, sample.negatives):
            phrase = next((p for p in sorted(opposite, key=len, reverse=True) if f" {p} " in caption), None)
            if phrase and negative == caption.replace(f" {phrase} ", f" {opposite[phrase]} ", 1):
                left, right = negative.split(f" {opposite[phrase]} ", 1)
                assert not _holds(sample.facts, _objects_named(left)[-1], PHRASES[opposite[phrase]],
                                  _objects_named(right)[0]), (caption, negative, sample.facts)
                flips += 1
    assert flips > 100 and focused > 300, (flips, focused)
