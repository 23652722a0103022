"""Questions and answers about generated scenes, derived from the scene facts alone (never from pixels).

Five question types, in equal numbers: attribute (the colour, shape or size of a referred object), existence,
counting, spatial relation and comparison. Answers come from one fixed vocabulary (`ANSWERS`). Yes/no
questions are balanced within their type. An object is referred to only by a description that fits it
alone in its scene ("the red star", "the star", "the red object"), so every question has one right answer.
The "heldout" split draws scenes whose main object is a colour–shape pair never seen in training. Scenes come
from the first world's look ("classic") or a style set of the styled world; in a style that draws no colour
(silhouettes) no question names or asks a colour.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from clipworks.data.styles import COLOURLESS_STYLES
from clipworks.data.world import COLOURS, SHAPES, SIZES, WorldDataset, item_seed, render

TYPES = ("attribute", "existence", "count", "relation", "compare")
YES_NO = ("yes", "no")
COUNTS = ("0", "1", "2", "3")
ANSWERS: tuple[str, ...] = (*COLOURS, *SHAPES, *SIZES, *YES_NO, *COUNTS)
VQA_SALT = 0x5651_4120  # questions draw from their own random stream, apart from the scenes
RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


@dataclass
class Question:
    """A question about one scene, its answer (a word of `ANSWERS`) and its type."""

    text: str
    answer: str
    type: str


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def _colourless(facts: dict) -> bool:
    """Whether the scene is drawn without colour (a silhouette), so no question may name or ask one."""
    return facts.get("style") in COLOURLESS_STYLES


def _references(objects: list[dict[str, Any]], i: int, colour: bool = True) -> list[str]:
    """The descriptions that pick out object i alone in its scene: "the star", "the red object", "the red star"
    (only the shape when `colour` is False)."""
    o = objects[i]
    options = []
    if sum(p["shape"] == o["shape"] for p in objects) == 1:
        options.append(f"the {o['shape']}")
    if not colour:
        return options
    if sum(p["colour"] == o["colour"] for p in objects) == 1:
        options.append(f"the {o['colour']} object")
    if sum(p["shape"] == o["shape"] and p["colour"] == o["colour"] for p in objects) == 1:
        options.append(f"the {o['colour']} {o['shape']}")
    return options


def _reference(objects: list[dict[str, Any]], i: int, rng: random.Random, colour: bool = True) -> str | None:
    options = _references(objects, i, colour)
    return rng.choice(options) if options else None


def _named(ref: str, o: dict[str, Any]) -> set[str]:
    """The attributes of object `o` that the reference names ("the red star" names colour and shape)."""
    words = ref.split()
    return {a for a in ("colour", "shape") if o[a] in words}


def _attribute(facts: dict, rng: random.Random) -> Question | None:
    objects = facts["objects"]
    i = rng.randrange(len(objects))
    attribute = rng.choice(("shape", "size") if _colourless(facts) else ("colour", "shape", "size"))
    options = [r for r in _references(objects, i, not _colourless(facts))
               if attribute not in _named(r, objects[i])]  # never what it says
    if not options:
        return None
    ref = rng.choice(options)
    text = {"colour": f"what colour is {ref}?", "shape": f"what shape is {ref}?", "size": f"what size is {ref}?"}
    return Question(text[attribute], objects[i][attribute], "attribute")


def _existence(facts: dict, rng: random.Random) -> Question:
    objects = facts["objects"]
    want = rng.choice(YES_NO)
    kind = "shape" if _colourless(facts) else rng.choice(("pair", "shape", "colour"))
    present = {"pair": {(o["colour"], o["shape"]) for o in objects}, "shape": {o["shape"] for o in objects},
               "colour": {o["colour"] for o in objects}}[kind]
    universe = {"pair": [(c, s) for c in COLOURS for s in SHAPES], "shape": list(SHAPES), "colour": list(COLOURS)}[kind]
    pool = sorted(present) if want == "yes" else [u for u in universe if u not in present]
    pick = rng.choice(pool)
    text = {"pair": lambda p: f"is there a {p[0]} {p[1]}?", "shape": lambda s: f"is there a {s}?",
            "colour": lambda c: f"is there a {c} object?"}[kind](pick)
    return Question(text, want, "existence")


def _count(facts: dict, rng: random.Random) -> Question:
    objects = facts["objects"]
    kind = rng.choice(("all", "shape") if _colourless(facts) else ("all", "shape", "colour"))
    if kind == "all":
        return Question("how many objects are there?", str(len(objects)), "count")
    # half the time a shape or colour that is in the scene, else any (often 0)
    values = list(SHAPES) if kind == "shape" else list(COLOURS)
    present = sorted({o[kind] for o in objects})
    value = rng.choice(present) if rng.random() < 0.5 else rng.choice(values)
    n = sum(o[kind] == value for o in objects)
    text = f"how many {_plural(value)} are there?" if kind == "shape" else f"how many {value} objects are there?"
    return Question(text, str(n), "count")


def _pair(facts: dict, rng: random.Random) -> tuple[int, int, str, str] | None:
    objects = facts["objects"]
    if len(objects) < 2:
        return None
    i, j = rng.sample(range(len(objects)), 2)
    colour = not _colourless(facts)
    a, b = _reference(objects, i, rng, colour), _reference(objects, j, rng, colour)
    if a is None or b is None:
        return None
    return i, j, a, b


def _relation(facts: dict, rng: random.Random) -> Question | None:
    pair = _pair(facts, rng)
    if pair is None:
        return None
    i, j, a, b = pair
    holds = {(r["subject"], r["relation"], r["object"]) for r in facts["relations"]}
    true = [r for r in RELATION_WORDS if (i, r, j) in holds]
    false = [r for r in RELATION_WORDS if (j, r, i) in holds]  # B is left of A: "is A left of B?" is clearly no
    want = rng.choice(YES_NO)
    choices = true if want == "yes" else false
    if not choices:
        return None
    relation = rng.choice(choices)
    return Question(f"is {a} {RELATION_WORDS[relation]} {b}?", want, "relation")


def _compare(facts: dict, rng: random.Random) -> Question | None:
    pair = _pair(facts, rng)
    if pair is None:
        return None
    i, j, a, b = pair
    objects = facts["objects"]
    kind = rng.choice(("bigger", "shape") if _colourless(facts) else ("bigger", "colour", "shape"))
    if kind == "bigger":
        holds = {(r["subject"], r["relation"], r["object"]) for r in facts["relations"]}
        if (i, "bigger than", j) in holds:
            answer = "yes"
        elif (j, "bigger than", i) in holds:
            answer = "no"
        else:
            return None  # too close in size to say
        return Question(f"is {a} bigger than {b}?", answer, "compare")
    same = objects[i][kind] == objects[j][kind]
    if kind in _named(a, objects[i]) | _named(b, objects[j]):
        return None  # "the red object and the blue star": the answer would be in the question
    text = f"are {a} and {b} the same {kind}?"
    return Question(text, "yes" if same else "no", "compare")


def _resolve(ref: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The one object that "the star", "the red object" or "the red star" fits."""
    words = ref.removeprefix("the ").split()
    if words[-1] == "object":
        fits = [o for o in objects if o["colour"] == words[0]]
    else:
        fits = [o for o in objects if o["shape"] == words[-1] and (len(words) == 1 or o["colour"] == words[0])]
    if len(fits) != 1:
        raise ValueError(f"{ref!r} fits {len(fits)} objects of the scene, not one")
    return fits[0]


def relation_truth(question: str, facts: dict) -> str:
    """The answer to "is A to the left of / to the right of / above / below B?" read from where the objects'
    centres are in `facts` (x right, y down), independently of how the question was made."""
    body = question.removeprefix("is ").removesuffix("?")
    for phrase, axis, sign in (("to the left of", "x", 1), ("to the right of", "x", -1), ("above", "y", 1),
                               ("below", "y", -1)):
        if f" {phrase} " in body:
            a, b = (_resolve(r, facts["objects"]) for r in body.split(f" {phrase} "))
            return "yes" if sign * (b[axis] - a[axis]) > 0 else "no"
    raise ValueError(f"not a relation question: {question!r}")


MAKERS = {"attribute": _attribute, "existence": _existence, "count": _count, "relation": _relation, "compare": _compare}


def question_for(facts: dict, kind: str, rng: random.Random, want: str | None = None, tries: int = 20) -> Question | None:
    """A question of type `kind` about a scene (with answer `want` if given), or None if the scene has none."""
    for _ in range(tries):
        q = MAKERS[kind](facts, rng)
        if q is not None and (want is None or q.answer == want):
            return q
    return None


@dataclass
class VQAItem:
    image: Any  # PIL image
    question: Question
    facts: dict
    key: str


class VQADataset:
    """`size` (image, question, answer) items; item i depends only on (seed, split, i).

    Item i asks a question of type TYPES[i % 5]; yes/no types alternate their answer, so both types and
    yes/no answers are balanced. Scenes come from the generated world (`split` "train" or "heldout") in
    `styles` ("classic", the first world's look, or a style set of `WorldDataset`: "train", "heldout", "all")."""

    def __init__(self, size: int, seed: int = 0, split: str = "train", image_size: int = 64,
                 styles: str = "classic") -> None:
        self.size, self.seed, self.split, self.image_size, self.styles = size, seed, split, image_size, styles
        # a scene pool far larger than needed: item i looks at scenes i, i + size, ... until one fits
        self._world = WorldDataset(size * 50 + 50, seed=seed, split=split, image_size=image_size, styles=styles)

    def __len__(self) -> int:
        return self.size

    def item(self, i: int) -> tuple[int, Question]:
        """(scene index, question) for item i, without rendering."""
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} is outside the VQA dataset of {self.size} items")
        kind = TYPES[i % len(TYPES)]
        rng = random.Random(item_seed(self.seed, self.split, i) ^ VQA_SALT)
        want = None
        if kind in ("existence", "relation", "compare"):
            want = YES_NO[(i // len(TYPES)) % 2]
        for attempt in range(50):
            scene_index = i + attempt * self.size
            q = question_for(self._world.scene(scene_index).facts(), kind, rng, want)
            if q is not None:
                return scene_index, q
        raise RuntimeError(f"no {kind} question found for item {i}")  # not reached for the world's scenes

    def __getitem__(self, i: int) -> VQAItem:
        scene_index, q = self.item(i)
        scene = self._world.scene(scene_index)
        key = f"vqa/{self.split}/{self.seed}/{i}" if self.styles == "classic" else f"vqa/{self.styles}/{self.split}/{self.seed}/{i}"
        return VQAItem(render(scene, self.image_size), q, scene.facts(), key)
