"""Caption metrics: parity with pycocoevalcap (the COCO caption scorer), known answers, validation."""

from __future__ import annotations

import math
import random

import pytest
from pycocoevalcap.bleu.bleu import Bleu  # the reference: without it the suite fails, it does not skip parity
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from clipworks.captioning import metrics
from clipworks.captioning.metrics import (
    MeteorError, bleu, cider_d, evaluate_captions, meteor, meteor_unavailable_reason, rouge_l, tokenize,
)
from clipworks.errors import InputFileError

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
SHAPES = ["star", "circle", "square", "triangle", "hexagon", "cross"]
SIZES = ["small", "large", "tiny", "big"]
VPOS, HPOS = ["top", "bottom", "middle"], ["left", "right", "centre"]
FILLER = ["a", "the", "in", "at", "on", "of", "near", "image", "picture", "shape", "there", "is"]


def _describe(rng: random.Random, scene: tuple[str, ...]) -> list[str]:
    size, colour, shape, v, h = scene
    words = ["a"] + ([size] if rng.random() < 0.5 else []) + [colour, shape]
    words += [rng.choice(["in", "at", "on"]), "the", v, h] if rng.random() < 0.8 else [rng.choice(["here", "shown"])]
    if rng.random() < 0.3:
        words = rng.choice([["there", "is"], ["this", "image", "shows"]]) + words
    return words


def _edit(rng: random.Random, words: list[str]) -> list[str]:
    vocab = COLOURS + SHAPES + SIZES + VPOS + HPOS + FILLER
    words = list(words)
    for _ in range(rng.randint(0, 4)):
        op, i = rng.random(), rng.randrange(len(words))
        if op < 0.4:
            words[i] = rng.choice(vocab)
        elif op < 0.6 and len(words) > 1:
            del words[i]
        elif op < 0.8:
            words.insert(i, rng.choice(vocab))
        elif len(words) > 1:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    return words


def _corpus(seed: int, images: int = 200, clauses: tuple[int, int] = (1, 1)) -> tuple[dict, dict]:
    """Scene captions: 1-5 references per image; the hypothesis is an edited description of the same scene."""
    rng = random.Random(seed)
    refs, hyps = {}, {}
    for i in range(images):
        scenes = [(rng.choice(SIZES), rng.choice(COLOURS), rng.choice(SHAPES), rng.choice(VPOS), rng.choice(HPOS))
                  for _ in range(rng.randint(*clauses))]

        def sentence() -> list[str]:
            parts = [_describe(rng, s) for s in scenes]
            return [w for k, p in enumerate(parts) for w in (([rng.choice(["and", "next", "to"])] if k else []) + p)]

        refs[f"img{i}"] = [" ".join(sentence()) for _ in range(rng.randint(1, 5))]
        hyps[f"img{i}"] = " ".join(_edit(rng, sentence()))
    return refs, hyps


def _coco(refs: dict, hyps: dict) -> dict[str, float]:
    gts, res = {k: list(refs[k]) for k in hyps}, {k: [h] for k, h in hyps.items()}
    b = Bleu(4).compute_score(gts, res, verbose=0)[0]
    out = {f"BLEU-{k + 1}": float(s) for k, s in enumerate(b)}
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    return out


def _ours(refs: dict, hyps: dict) -> dict[str, float]:
    out = {f"BLEU-{k + 1}": s for k, s in enumerate(bleu(refs, hyps))}
    out["ROUGE-L"], out["CIDEr-D"] = rouge_l(refs, hyps), cider_d(refs, hyps)
    return out


def _assert_parity(ours: dict, ref: dict, tol: float = 1e-9) -> None:
    assert ours.keys() >= ref.keys()
    for name, value in ref.items():
        assert math.isclose(ours[name], value, rel_tol=0, abs_tol=tol), (name, ours[name], value)


@pytest.mark.parametrize("seed,clauses", [(0, (1, 1)), (1, (1, 1)), (2, (2, 4))])
def test_parity_with_pycocoevalcap_on_random_corpora(seed, clauses):
    refs, hyps = _corpus(seed, clauses=clauses)
    if clauses[0] > 1:
        assert sum(len(h.split()) for h in hyps.values()) / len(hyps) > 15  # the long-sentence corpus
    ours, ref = _ours(refs, hyps), _coco(refs, hyps)
    _assert_parity(ours, ref)
    for name, value in ours.items():  # non-trivial scores: the comparison means something
        assert 0.05 < value < (10.0 if name == "CIDEr-D" else 0.99), (name, value)


def test_parity_on_edge_cases():
    refs = {
        "no-overlap": ["a red star in the top left", "the red star at the top"],
        "one-word": ["a blue circle on the right", "blue circle"],
        "identical": ["a small green square in the middle"],
        "empty-hyp": ["a yellow cross"],
        "with-empty-ref": ["", "a big purple hexagon near the bottom"],
        "repeats": ["a star", "a red star and a blue star"],
    }
    hyps = {"no-overlap": "zebra umbrella dances", "one-word": "circle",
            "identical": "a small green square in the middle", "empty-hyp": "",
            "with-empty-ref": "purple hexagon at the bottom", "repeats": "star star star star star"}
    _assert_parity(_ours(refs, hyps), _coco(refs, hyps))
    for key in hyps:  # each image alone; a one-image corpus has idf 0 everywhere, so CIDEr-D is 0
        one = _ours({key: refs[key]}, {key: hyps[key]})
        _assert_parity(one, _coco({key: refs[key]}, {key: hyps[key]}))
        assert one["CIDEr-D"] == 0.0
    # one-word hypotheses only: no 2-grams anywhere in the hypotheses
    _assert_parity(_ours(refs, {"one-word": "circle", "identical": "square"}),
                   _coco(refs, {"one-word": "circle", "identical": "square"}))


def test_known_answers():
    same = {"x": ["a small green square in the middle of the picture"]}
    hyp = {"x": same["x"][0]}
    assert bleu(same, hyp)[3] == pytest.approx(1.0, abs=1e-9)
    assert rouge_l(same, hyp) == 1.0
    # hand-computed: matches 5/6, 3/5, 1/4, 0/3; equal lengths, so no brevity penalty
    refs, hyps = {"c": ["the cat is on the mat"]}, {"c": "the cat sat on the mat"}
    b = bleu(refs, hyps)
    assert b[0] == pytest.approx(5 / 6, abs=1e-9)
    assert b[1] == pytest.approx(math.sqrt(5 / 6 * 3 / 5), abs=1e-9)
    assert b[2] == pytest.approx((5 / 6 * 3 / 5 / 4) ** (1 / 3), abs=1e-9)
    assert 0 < b[3] < 1e-3  # COCO smooths a zero count to 1e-15 instead of giving exactly 0
    assert rouge_l(refs, hyps) == pytest.approx(5 / 6, abs=1e-12)  # LCS 5 of 6 both ways
    # brevity penalty from the closest reference length (4 here)
    b = bleu({"s": ["a red star in the corner", "a red star here"]}, {"s": "a red star"})
    assert b[0] == pytest.approx(math.exp(1 - 4 / 3), abs=1e-9)
    # a tie in closeness (3 and 5 around 4) goes to the shorter reference: no penalty
    assert bleu({"t": ["a b c", "a b c d e"]}, {"t": "a b c d"})[0] == pytest.approx(1.0, abs=1e-9)
    # CIDEr-D: two images, idf log 2 everywhere; 1- and 2-gram cosines are 1, no 3- or 4-grams
    refs2 = {"A": ["red star"], "B": ["blue circle"]}
    assert cider_d(refs2, {"A": "red star", "B": "blue circle"}) == pytest.approx(5.0, abs=1e-12)


def test_tokenize():
    assert tokenize('A man\'s dog, running (fast) on the "grass".') == \
        ["a", "man", "'s", "dog", "running", "fast", "on", "the", "grass"]
    assert tokenize("One isn't moving - see the top-left STAR!  3.5 ft...") == \
        ["one", "is", "n't", "moving", "see", "the", "top-left", "star", "3.5", "ft"]
    assert tokenize("'Hello' said the kids' boy; ok?") == ["hello", "said", "the", "kids", "boy", "ok"]
    assert tokenize(" ... ") == []


def test_evaluate_captions_tokenizes_and_matches_the_pure_metrics():
    refs, hyps = _corpus(3, images=30)
    raw_refs = {k: [r.capitalize() + "." for r in rs] for k, rs in refs.items()}
    raw_hyps = {k: h.upper() + " !" for k, h in hyps.items()}
    out = evaluate_captions(raw_refs, raw_hyps, with_meteor=False)
    assert list(out) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"]
    _assert_parity(out, _coco(refs, hyps))


def test_validation_names_the_bad_key():
    good = {"a": ["a red star"]}
    with pytest.raises(InputFileError, match="no hypotheses"):
        evaluate_captions(good, {}, with_meteor=False)
    with pytest.raises(InputFileError, match="'img7'"):
        evaluate_captions(good, {"a": "a star", "img7": "a circle"}, with_meteor=False)
    with pytest.raises(InputFileError, match="'img8'.*no non-empty reference"):
        evaluate_captions({**good, "img8": []}, {"a": "x", "img8": "a circle"}, with_meteor=False)
    with pytest.raises(InputFileError, match="'img9'.*no non-empty reference"):
        evaluate_captions({"img9": ["", "  "]}, {"img9": "a circle"}, with_meteor=False)
    with pytest.raises(InputFileError, match="'p'.*no non-empty reference"):  # only punctuation
        evaluate_captions({"p": ["...", "!"]}, {"p": "a circle"}, with_meteor=False)
    with pytest.raises(InputFileError, match="'s'.*list of reference strings"):
        bleu({"s": "a red star"}, {"s": "a star"})
    with pytest.raises(InputFileError, match="'h'.*not a string"):
        cider_d({"h": ["a red star"]}, {"h": ["a star"]})
    with pytest.raises(InputFileError, match="'r'"):
        rouge_l({}, {"r": "a star"})


def test_meteor_unavailable_without_java(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    assert "java" in meteor_unavailable_reason().lower()
    assert meteor({"a": ["a red star"]}, {"a": "a star"}) is None
    assert "METEOR" not in evaluate_captions({"a": ["a red star"]}, {"a": "a star"})


JAVA_SKIP = "METEOR needs Java and pycocoevalcap's meteor-1.5.jar: " + str(meteor_unavailable_reason())


@pytest.mark.skipif(meteor_unavailable_reason() is not None, reason=JAVA_SKIP)
def test_meteor_reports_a_broken_jar(monkeypatch, tmp_path):
    bogus = tmp_path / "meteor-1.5.jar"
    bogus.write_bytes(b"not a jar")
    monkeypatch.setattr(metrics, "_meteor_jar", lambda: bogus)
    with pytest.raises(MeteorError, match="METEOR"):
        meteor({"a": ["a red star"]}, {"a": "a star"}, timeout=60)


@pytest.mark.skipif(meteor_unavailable_reason() is not None, reason=JAVA_SKIP)
def test_meteor_parity_with_pycocoevalcap():
    from pycocoevalcap.meteor.meteor import Meteor

    refs, hyps = _corpus(4, images=20)
    out = evaluate_captions(refs, hyps)  # one JVM for ours ...
    scorer = Meteor()  # ... and one for the reference
    try:
        expected, _ = scorer.compute_score({k: list(refs[k]) for k in hyps}, {k: [h] for k, h in hyps.items()})
    finally:
        del scorer
    assert 0.05 < out["METEOR"] < 0.99
    assert out["METEOR"] == pytest.approx(expected, abs=1e-6)
    _assert_parity(out, _coco(refs, hyps))
