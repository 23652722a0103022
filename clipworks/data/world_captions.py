"""Captions of a scene of the generated world, true of its facts: full ones, shape-only and colour-only ones,
colourless ones for grayscale renderings, and false ones close to a true one (hard negatives: one word
swapped, and NegCLIP's relation and attribute swaps)."""

from __future__ import annotations

import random
import re

import numpy as np

from clipworks.data import styles as style_lib
from clipworks.data.styles import BACKGROUND_WORDS
from clipworks.data.world_scenes import COLOURS, SHAPES, TRAIN_PAIRS, Scene, SceneObject, _as_random

def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _name(obj: SceneObject, size: bool = False) -> str:
    """'a red star', or with size 'a small red star'; colour always directly precedes shape."""
    words = f"{'large' if obj.size == 'large' else obj.size} {obj.colour} {obj.shape}" if size else f"{obj.colour} {obj.shape}"
    return _a(words)


_WHERE = {
    "top left": "in the top left", "top": "at the top", "top right": "in the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "in the bottom left", "bottom": "at the bottom", "bottom right": "in the bottom right",
}
_RELATION_PHRASES = {
    "left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below",
    "bigger than": "that is bigger than", "smaller than": "that is smaller than",
}
_COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _shape_only(obj: SceneObject, size: bool = False) -> str:
    """'a star' or 'a small star': the shape without its colour."""
    return _a(f"{'large' if obj.size == 'large' else obj.size} {obj.shape}" if size else obj.shape)


def _colour_only(obj: SceneObject) -> str:
    return f"{_a(obj.colour)} shape"


def _full_pool(scene: Scene, where: str, bg: str) -> list[str]:
    main = scene.objects[0]
    if len(scene.objects) == 1:
        return [
            f"a photo of {_name(main)}", f"a picture of {_name(main)}", f"a drawing of {_name(main)}",
            f"{_name(main)} shape", _name(main, size=True), f"{_name(main)} {where}",
            f"{_name(main, size=True)} {where}", f"{_name(main)} on {_a(bg)} background",
            f"{_name(main, size=True)} on {_a(bg)} background", f"an image of {_name(main, size=True)}",
        ]
    others = scene.objects[1:]
    everything = _listing([_name(o) for o in scene.objects])
    pool = [
        everything, f"{_COUNT_WORDS[len(scene.objects)]} shapes: {everything}", f"a photo of {everything}",
        f"{everything} on {_a(bg)} background", f"{_name(main, size=True)} {where}",
        f"{_name(main)} with {_listing([_name(o) for o in others])}",
    ]
    if len(scene.objects) == 2:
        other = scene.objects[1]
        pool.append(f"{_name(main, size=True)} {where} and {_name(other, size=True)} {_WHERE[other.position]}")
    for subject, phrase, obj, spatial in _main_relations(scene):
        pool.append(f"{_name(subject)} {phrase} {_name(obj)}")
        if spatial:
            pool.append(f"there is {_name(subject)} {phrase} {_name(obj)}")
            pool.append(f"{_name(subject, size=True)} {phrase} {_name(obj, size=True)}")
    return pool


def _main_relations(scene: Scene) -> list[tuple[SceneObject, str, SceneObject, bool]]:
    """Relations between the main object and the others, in either direction, between distinguishable objects."""
    out = []
    for i, relation, j in scene.relations():
        if 0 not in (i, j):
            continue
        subject, obj = scene.objects[i], scene.objects[j]
        if (subject.colour, subject.shape) == (obj.colour, obj.shape):
            continue  # "a red star above a red star" says nothing about which is which
        out.append((subject, _RELATION_PHRASES[relation], obj, relation not in ("bigger than", "smaller than")))
    return out


def _shape_pool(scene: Scene, where: str) -> list[str]:
    """Captions that name shapes but not colours: matching them needs shape, not just colour."""
    main = scene.objects[0]
    pool = [_shape_only(main), f"a photo of {_shape_only(main)}", f"{_shape_only(main, size=True)} {where}"]
    if len(scene.objects) > 1:
        shapes = _listing([_shape_only(o) for o in scene.objects])
        pool += [shapes, f"{_COUNT_WORDS[len(scene.objects)]} shapes: {shapes}"]
        for subject, phrase, obj, spatial in _main_relations(scene):
            if subject.shape != obj.shape and spatial:
                pool.append(f"there is {_shape_only(subject)} {phrase} {_shape_only(obj)}")
    return pool


def _colour_pool(scene: Scene) -> list[str]:
    """Captions that name colours but not shapes."""
    main = scene.objects[0]
    pool = [_colour_only(main), f"something {main.colour}"]
    if len(scene.objects) > 1:
        pool.append(_listing([_colour_only(o) for o in scene.objects]))
    return pool


def grayscale_captions(scene: Scene, rng: random.Random | np.random.Generator) -> list[str]:
    """Captions for a grayscale rendering: shapes, sizes, positions and relations, never a colour."""
    rng = _as_random(rng)
    main = scene.objects[0]
    pool = list(dict.fromkeys(_shape_pool(scene, _WHERE[main.position]) + [
        f"a grayscale picture of {_shape_only(main)}", f"a grey {main.shape}", f"{_shape_only(main, size=True)}",
    ]))
    rng.shuffle(pool)
    return pool[: rng.randint(3, 5)]


def scene_captions(scene: Scene, rng: random.Random | np.random.Generator, grey: bool = False) -> list[str]:
    """Captions for any scene: `captions` (or colourless ones for grey or colourless renderings), and in the
    styled world, half the time, one that names the style ("a sketch of a red star"), as real alt-text does."""
    rng = _as_random(rng)
    colourless = grey or not scene.has_colour
    chosen = grayscale_captions(scene, rng) if colourless else captions(scene, rng)
    if scene.style is not None and rng.random() < 0.5:
        main = scene.objects[0]
        words = main.shape if colourless else f"{main.colour} {main.shape}"
        styled = rng.choice(style_lib.STYLE_WORDS[scene.style]).format(a=_a(words), n=words)
        chosen[rng.randrange(len(chosen))] = styled
    return chosen


def captions(scene: Scene, rng: random.Random | np.random.Generator) -> list[str]:
    """4-6 distinct captions, all mentioning the main object: mostly by colour and shape, and (so that shape
    has to be learned, not inferred from colour alone) usually one naming shapes only and sometimes one
    naming colours only. Single-object scenes always include "a {colour} {shape}"."""
    rng = _as_random(rng)
    main = scene.objects[0]
    where = _WHERE[main.position]
    bg = BACKGROUND_WORDS[scene.background.kind]
    required = [_name(main)] if len(scene.objects) == 1 else []
    full = [c for c in dict.fromkeys(_full_pool(scene, where, bg)) if c not in required]
    shape_only = list(dict.fromkeys(_shape_pool(scene, where)))
    colour_only = list(dict.fromkeys(_colour_pool(scene)))
    for pool in (full, shape_only, colour_only):
        rng.shuffle(pool)
    total = rng.randint(4, 6)
    n_shape = 2 if rng.random() < 0.5 else 1
    n_colour = 1 if rng.random() < 0.4 else 0
    partial = shape_only[:n_shape] + colour_only[:n_colour]
    chosen = required + partial + full[: max(0, total - len(required) - len(partial))]
    rng.shuffle(chosen)
    return chosen


def _swap_word(caption: str, old: str, new: str, phrase: str) -> str | None:
    """The caption with `old` replaced by `new` inside the first `phrase` (which contains `old`), else in the
    first whole-word `old`; None when neither occurs. The phrase pins the main object's own mention."""
    for pattern in (phrase, old):
        found = re.search(rf"\b{re.escape(pattern)}\b", caption)
        if found is not None:
            start = found.start() + pattern.index(old)
            return caption[:start] + new + caption[start + len(old):]
    return None


def _word_swap(caption: str, scene: Scene, rng: random.Random, grayscale: bool = False) -> str:
    """A false caption one word away from `caption`: the main object's shape (else its colour) swapped for one
    that no object in the scene has. For a coloured scene the new colour-shape pair is a training pair, so a
    negative never names a held-out combination and never teaches "colour c is not shape s" for one.
    Returns "" when the caption names neither."""
    main = scene.objects[0]
    phrase = f"{main.colour} {main.shape}"
    shapes_present = {o.shape for o in scene.objects}
    shapes = [s for s in SHAPES if s not in shapes_present and (grayscale or (main.colour, s) in TRAIN_PAIRS)]
    if shapes and (swapped := _swap_word(caption, main.shape, rng.choice(shapes), phrase)) is not None:
        return swapped
    if grayscale:
        return ""
    colours_present = {o.colour for o in scene.objects}
    colours = [c for c in COLOURS if c not in colours_present and (c, main.shape) in TRAIN_PAIRS]
    if colours and (swapped := _swap_word(caption, main.colour, rng.choice(colours), phrase)) is not None:
        return swapped
    return ""


# NegCLIP-style negatives (for the ARO benchmark's failure modes): the same words in another order.
_NAME = re.compile(r"\b(an?) (?:(small|medium|large) )?(?:(" + "|".join(COLOURS) + r") )?(" + "|".join(SHAPES) + r")\b")
_PHRASE_RELATION = {phrase: relation for relation, phrase in _RELATION_PHRASES.items()}


def _names(caption: str) -> list[re.Match]:
    return list(_NAME.finditer(caption))


def _matches(obj: SceneObject, name: re.Match) -> bool:
    _, size, colour, shape = name.groups()
    return obj.shape == shape and colour in (None, obj.colour) and size in (None, obj.size)


def _true_of(scene: Scene, first: re.Match, relation: str, second: re.Match) -> bool:
    """Whether some object described by `first` stands in `relation` to one described by `second`."""
    return any(_matches(scene.objects[i], first) and _matches(scene.objects[j], second)
               for i, r, j in scene.relations() if r == relation)


def relation_swap(caption: str, scene: Scene) -> str:
    """"A to the left of B" -> "B to the left of A" when that is false of the scene; else ""."""
    for phrase in sorted(_PHRASE_RELATION, key=len, reverse=True):
        at = caption.find(f" {phrase} ")
        if at < 0:
            continue
        before = [m for m in _names(caption) if m.end() <= at]
        after = [m for m in _names(caption) if m.start() >= at + len(phrase) + 2]
        if not before or not after:
            return ""
        a, b = before[-1], after[0]
        swapped = caption[:a.start()] + b.group(0) + caption[a.end():b.start()] + a.group(0) + caption[b.end():]
        names = _names(swapped)
        new_a = next(m for m in names if m.start() == a.start())
        new_b = names[names.index(new_a) + 1]
        return "" if _true_of(scene, new_a, _PHRASE_RELATION[phrase], new_b) else swapped
    return ""


def attribute_swap(caption: str, scene: Scene, rng: random.Random) -> str:
    """Two named objects of different colours and shapes trade colours ("a red circle and a blue square" ->
    "a blue circle and a red square"), when some object so named is absent from the scene; else ""."""
    names = [m for m in _names(caption) if m.group(3)]
    pairs = [(a, b) for k, a in enumerate(names) for b in names[k + 1:]
             if a.group(3) != b.group(3) and a.group(4) != b.group(4)]
    if not pairs:
        return ""
    a, b = rng.choice(pairs)
    swapped = (caption[:a.start(3)] + b.group(3) + caption[a.end(3):b.start(3)] + a.group(3) + caption[b.end(3):])
    swapped = re.sub(r"\ban ([^aeiou])", r"a \1", re.sub(r"\ba ([aeiou])", r"an \1", swapped))
    named = _names(swapped)
    if all(any(_matches(o, m) for o in scene.objects) for m in named):
        return ""  # every object it names is there: not a negative
    if any(m.group(3) and (m.group(3), m.group(4)) not in TRAIN_PAIRS for m in named):
        return ""  # a negative never names a held-out pair, so it never teaches "c is not s" for one
    return swapped


_OPPOSITE = {"to the left of": "to the right of", "above": "below", "that is bigger than": "that is smaller than"}
_OPPOSITE.update({b: a for a, b in _OPPOSITE.items()})


def relation_flip(caption: str, scene: Scene) -> str:
    """"A to the left of B" -> "A to the right of B" (likewise above/below, bigger/smaller) when that is false."""
    for phrase in sorted(_OPPOSITE, key=len, reverse=True):
        at = caption.find(f" {phrase} ")
        if at < 0:
            continue
        flipped = caption[:at] + f" {_OPPOSITE[phrase]} " + caption[at + len(phrase) + 2:]
        before = [m for m in _names(flipped) if m.end() <= at]
        after = [m for m in _names(flipped) if m.start() >= at + len(_OPPOSITE[phrase]) + 2]
        if not before or not after:
            return ""
        return "" if _true_of(scene, before[-1], _PHRASE_RELATION[_OPPOSITE[phrase]], after[0]) else flipped
    return ""


def order_captions(scene: Scene, rng: random.Random) -> list[str]:
    """Up to 4 captions of a styled multi-object scene whose truth depends on word order: relations between
    named objects and listings of them ("a red circle to the left of a blue square", "a red circle and a blue
    square"); empty when the scene has none."""
    main = scene.objects[0]
    pool = [c for c in dict.fromkeys(_full_pool(scene, _WHERE[main.position], BACKGROUND_WORDS[scene.background.kind]))
            if len(_names(c)) >= 2 and all(m.group(3) for m in _names(c))]
    rng.shuffle(pool)
    return pool[:4]


def hard_negative(caption: str, scene: Scene, rng: random.Random, grayscale: bool = False,
                  flips: bool = False) -> str:
    """A false caption close to `caption`. In the first world: one word swapped (`_word_swap`). In the styled
    world, NegCLIP's swaps too: a relation's arguments (`relation_swap`) or two objects' colours
    (`attribute_swap`), preferred when possible so word order and binding must be read; with `flips`, also
    the relation's direction (`relation_flip`). "" when none applies."""
    if scene.style is None:
        return _word_swap(caption, scene, rng, grayscale)
    options = [relation_swap(caption, scene)] + ([relation_flip(caption, scene)] if flips else [])
    if not grayscale:
        options.append(attribute_swap(caption, scene, rng))
    options = [o for o in options if o]
    if options and rng.random() < 0.8:
        return rng.choice(options)
    return _word_swap(caption, scene, rng, grayscale) or (options[0] if options else "")
