"""Query algebra: the parser, the weighted sum it stands for, and search with it through the engine, the CLI
and the server, judged against the generated scenes' own objects."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest

import clipworks
from clipworks.cli.main import main as cli
from clipworks.data.world_render import render
from clipworks.data.world_scenes import ALL_PAIRS, sample_scene
from clipworks.model.transforms import load_image
from clipworks.search.engine import SearchEngine
from clipworks.search.indexer import index
from clipworks.search.query import QueryError, QueryTerm, combine, parse_query

RED_STAR, BLUE_CIRCLE = ("red", "star"), ("blue", "circle")


# ------------------------------------------------------------ the parser


@pytest.mark.parametrize("query, terms", [
    ("a red star", [(1, "text", "a red star")]),
    ('"beach" - "people"', [(1, "text", "beach"), (-1, "text", "people")]),
    ('2:"sunset" + "boat"', [(2, "text", "sunset"), (1, "text", "boat")]),
    ('"a"-"b"', [(1, "text", "a"), (-1, "text", "b")]),
    ("a red star - a blue circle", [(1, "text", "a red star"), (-1, "text", "a blue circle")]),
    ("2:sunset + 0.5:boat - .25:people", [(2, "text", "sunset"), (0.5, "text", "boat"), (-0.25, "text", "people")]),
    ('img:q.jpg + "at night"', [(1, "image", "q.jpg"), (1, "text", "at night")]),
    ('img:"my photos/q 1.jpg" - 3:img:b.png', [(1, "image", "my photos/q 1.jpg"), (-3, "image", "b.png")]),
    ('+ "at night"', [(1, "text", "at night")]),  # a modifier of an --image query
    ("- people", [(-1, "text", "people")]),
    # hyphens, colons and apostrophes inside words are text, not operators or weights
    ("black-and-white t-shirt", [(1, "text", "black-and-white t-shirt")]),
    ("a clock at 2:30 pm", [(1, "text", "a clock at 2:30 pm")]),
    ("a dog's toy + a ball", [(1, "text", "a dog's toy"), (1, "text", "a ball")]),
])
def test_parser_reads_quotes_weights_signs_and_image_terms(query, terms):
    assert parse_query(query) == [QueryTerm(float(w), kind, value) for w, kind, value in terms]


@pytest.mark.parametrize("query, names", [
    ('"a" "b"', ["term 2", '\'"b"\'', 'expected "+" or "-"']),
    ('"beach" - "people', ["term 2", "unclosed quote"]),
    ('"beach" +', ["term 2", "ends with"]),
    ('"beach" + - "people"', ["term 2", "two operators"]),
    ('0:"beach"', ["term 1", "weight 0"]),
    ('"beach" - img:', ["term 2", "img: needs a path"]),
    ('"beach" + ""', ["term 2", "empty term"]),
    ("cat img:x.jpg", ["term 2", "'img:x.jpg'", 'expected "+" or "-"']),
    ("   ", ["empty query"]),
])
def test_parse_errors_name_the_bad_term(query, names):
    with pytest.raises(QueryError) as raised:
        parse_query(query)
    assert all(name in str(raised.value) for name in names), str(raised.value)


def test_combine_is_the_renormalised_weighted_sum_of_normalised_embeddings():
    a, b = np.array([3.0, 4.0, 0.0]), np.array([0.0, 0.0, 2.0])
    got = combine([2.0, -1.0], np.stack([a, b]))
    expected = np.array([1.2, 1.6, -1.0]) / np.linalg.norm([1.2, 1.6, -1.0])  # 2·(0.6, 0.8, 0) - (0, 0, 1)
    assert np.allclose(got, expected, atol=1e-6) and np.isclose(np.linalg.norm(got), 1.0)
    with pytest.raises(QueryError, match="cancel out"):
        combine([1.0, -1.0], np.stack([a, 2 * a]), '"x" - "x"')


# ------------------------------------------------------------ search with it, on scenes we made


def _scenes(folder: Path, per_group: int = 8, seed: int = 0) -> dict[str, set[tuple[str, str]]]:
    """Rendered scenes whose objects we choose: red star with a blue circle, each alone, and neither (twice
    as many); returns each file's (colour, shape) objects, the truth results are judged by."""
    rng = random.Random(seed)
    others = [p for p in ALL_PAIRS if p not in (RED_STAR, BLUE_CIRCLE)]
    folder.mkdir(parents=True)
    facts = {}
    for group, wanted in {"both": (RED_STAR, BLUE_CIRCLE), "star": (RED_STAR,), "circle": (BLUE_CIRCLE,), "none": ()}.items():
        for n in range(per_group * (2 if group == "none" else 1)):
            scene = sample_scene(rng, split="all", n_objects=(2, 3))
            objects = [dataclasses.replace(o, colour=c, shape=s, rotation=0.0 if s == "circle" else o.rotation)
                       for o, (c, s) in zip(scene.objects, [*wanted, *(rng.choice(others) for _ in range(3))])]
            path = folder / f"{group}_{n}.png"
            render(dataclasses.replace(scene, objects=objects), 64).save(path)
            facts[str(path.resolve())] = {(o.colour, o.shape) for o in objects}
    return facts


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("algebra")
    facts = _scenes(tmp / "pics")
    model, pre = clipworks.create_model("default", device="cpu")
    index([str(tmp / "pics")], tmp / "store", model=model, preprocess=pre, progress=False)
    engine = SearchEngine(tmp / "store", model=model, preprocess=pre, tokenizer=clipworks.get_tokenizer(model))
    return {"facts": facts, "engine": engine, "store": tmp / "store", "pics": tmp / "pics"}


def _share(hits, facts, test) -> float:
    return float(np.mean([test(facts[h.item.path]) for h in hits]))


def _before(ranked: list[str], first: str, then: str) -> float:
    """How often a `first` scene ranks above a `then` scene (1: always, 0.5: as by chance)."""
    return float(np.mean([ranked.index(a) < ranked.index(b) for a in ranked if a.startswith(first)
                          for b in ranked if b.startswith(then)]))


def test_subtracting_a_blue_circle_puts_red_stars_without_one_first(scenes):
    engine, facts = scenes["engine"], scenes["facts"]
    plain = engine.search(engine.embed_query('"a red star"'), k=40, collapse=None)
    minus = engine.search(engine.embed_query('"a red star" - "a blue circle"'), k=40, collapse=None)
    alone = lambda objects: RED_STAR in objects and BLUE_CIRCLE not in objects  # noqa: E731
    circle = lambda objects: BLUE_CIRCLE in objects  # noqa: E731
    # the plain query mixes the red stars with a blue circle among those without one; the difference does not
    assert _share(plain[:8], facts, circle) >= 0.25
    assert _share(minus[:8], facts, circle) == 0.0
    # 8 of the 40 scenes hold a red star and no blue circle: chance is 0.2
    assert _share(minus[:8], facts, alone) >= 0.5  # measured 0.62
    names = {q: [Path(h.item.path).stem for h in hits] for q, hits in (("plain", plain), ("minus", minus))}
    assert _before(names["plain"], "star", "both") <= 0.75  # measured 0.58
    assert _before(names["minus"], "star", "both") >= 0.9  # measured 0.92


def test_the_query_vector_is_the_weighted_sum_of_normalised_term_embeddings(scenes):
    engine = scenes["engine"]
    star, circle = engine.embed_text("a red star"), engine.embed_text("a blue circle")
    expected = 2 * star / np.linalg.norm(star) - circle / np.linalg.norm(circle)
    got = engine.embed_query('2:"a red star" - "a blue circle"')
    assert np.allclose(got, expected / np.linalg.norm(expected), atol=1e-5)
    assert np.allclose(engine.embed_query("a red star"), star / np.linalg.norm(star), atol=1e-6)  # plain text as before
    # an image term and a text: img:PATH in the query, or the image as the start of a modifier
    path = next(p for p in scenes["facts"] if Path(p).name.startswith("both_"))
    image = engine.embed_image(load_image(path))
    mixed = image / np.linalg.norm(image) + 0.5 * circle / np.linalg.norm(circle)
    assert np.allclose(engine.embed_query(f'img:"{path}" + 0.5:"a blue circle"'), mixed / np.linalg.norm(mixed), atol=1e-5)
    assert np.allclose(engine.embed_query('+ 0.5:"a blue circle"', start=image), mixed / np.linalg.norm(mixed), atol=1e-5)
    with pytest.raises(QueryError, match="image paths are not read here"):
        engine.embed_query(f"img:{path}", read_files=False)


def test_the_cli_takes_the_algebra_as_the_shell_leaves_it(scenes, capsys):
    engine, store = scenes["engine"], str(scenes["store"])
    # the shell strips the quotes: "a red star" - "a blue circle" arrives as three words
    assert cli(["search", "--store", store, "a red star", "-", "a blue circle", "-k", "8", "--no-collapse", "--json"]) == 0
    got = [r["id"] for r in json.loads(capsys.readouterr().out)]
    api = engine.search(engine.embed_query('"a red star" - "a blue circle"'), k=8, collapse=None)
    assert got == [h.item.id for h in api]
    # an image with a text modifier: --image FILE + "a blue circle" is img:FILE + "a blue circle"
    path = next(p for p in scenes["facts"] if Path(p).name.startswith("star_"))
    assert cli(["search", "--store", store, "--image", path, "+", "a blue circle", "-k", "5", "--json"]) == 0
    got = [r["id"] for r in json.loads(capsys.readouterr().out)]
    assert got == [h.item.id for h in engine.search(engine.embed_query(f'img:"{path}" + "a blue circle"'), k=5)]
    # a bad query is one error line naming the term
    assert cli(["search", "--store", store, "a red star", "+", "-", "a blue circle"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "term 2" in err and "two operators" in err
