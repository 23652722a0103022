"""Library-wide duplicates (`clipworks duplicates`, /api/duplicates): a real store of generated scenes and a photo,
with planted copies (resized, recompressed, cropped, byte-identical), indexed with the default model."""

from __future__ import annotations

import io
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clipworks
from clipworks.cli.main import main
from clipworks.data.world import WorldDataset
from clipworks.search.duplicates import (DETAIL_CORRELATION, LAYOUT_CORRELATION, LAYOUT_FILE, find_duplicates,
                                         layout_correlation, layout_of)
from clipworks.search.indexer import index
from clipworks.search.store import Store

SCENES = 30


def _jpeg(image: Image.Image, path: Path, quality: int) -> Path:
    image.save(path, format="JPEG", quality=quality)
    return path


def _plant(folder: Path) -> list[set[str]]:
    """Distinct scenes and a photo crop, and copies of five of them; returns the planted groups' file names."""
    from skimage import data

    folder.mkdir(parents=True)
    scenes = WorldDataset(SCENES, seed=41, split="train", image_size=128, styles="all")
    images = [scenes[i].image for i in range(SCENES)]
    for i, image in enumerate(images):
        image.save(folder / f"scene{i:02d}.png")
    photo = Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.LANCZOS)
    photo.save(folder / "astronaut.png")
    _jpeg(images[0].resize((77, 77), Image.Resampling.BICUBIC), folder / "scene00_small.jpg", 60)
    images[1].crop((6, 3, 122, 124)).save(folder / "scene01_cropped.png")
    _jpeg(images[2], folder / "scene02_q40.jpg", 40)
    images[2].resize((64, 64), Image.Resampling.BICUBIC).save(folder / "scene02_half.png")
    shutil.copyfile(folder / "scene03.png", folder / "scene03_same.png")
    _jpeg(photo.crop((10, 0, 250, 246)).resize((180, 185), Image.Resampling.BICUBIC), folder / "astronaut_copy.jpg", 50)
    return [{"scene00.png", "scene00_small.jpg"}, {"scene01.png", "scene01_cropped.png"},
            {"scene02.png", "scene02_q40.jpg", "scene02_half.png"}, {"scene03.png", "scene03_same.png"},
            {"astronaut.png", "astronaut_copy.jpg"}]


@pytest.fixture(scope="module")
def model():
    return clipworks.create_model("default", device="cpu")


@pytest.fixture(scope="module")
def planted(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("dups")
    groups = _plant(tmp / "photos")
    index([str(tmp / "photos")], tmp / "store", model=model[0], preprocess=model[1], progress=False)
    return {"store": tmp / "store", "folder": tmp / "photos", "groups": groups}


def _names(report) -> list[set[str]]:
    return [{Path(it.path).name for it in g.items} for g in report.groups]


def _sorted(groups: list[set[str]]) -> list[list[str]]:
    return sorted(sorted(g) for g in groups)


def test_layouts_ignore_brightness_and_contrast_but_not_arrangement():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, 64).astype(np.uint8)
    assert layout_correlation(a, (a * 0.5 + 60).astype(np.uint8)) == pytest.approx((1.0, 1.0), abs=0.02)
    assert max(layout_correlation(a, rng.permutation(a))) < 0.5
    # two plain images agree; a plain one and a varied one do not
    assert layout_correlation(np.full(64, 10, np.uint8), np.full(64, 200, np.uint8)) == (1.0, 1.0)
    assert layout_correlation(np.full(64, 10, np.uint8), a)[0] == 0.0
    # the same brightness gradient with different detail on it: the layouts agree, the details do not
    y, x = np.mgrid[0:8, 0:8]
    ramp = 20 * x + 5 * y
    one, two = (ramp + rng.normal(0, 6, (8, 8))).clip(0, 255), (ramp + rng.normal(0, 6, (8, 8))).clip(0, 255)
    whole, rest = layout_correlation(one.astype(np.uint8).ravel(), two.astype(np.uint8).ravel())
    assert whole > LAYOUT_CORRELATION and rest < DETAIL_CORRELATION
    image = Image.fromarray(np.kron(ramp, np.ones((16, 16))).astype(np.uint8)).convert("RGB")
    assert np.array_equal(layout_of(image), ramp.ravel().astype(np.uint8))


def test_planted_copies_are_grouped_and_distinct_images_are_not(planted):
    store = Store(planted["store"], create=False)
    report = find_duplicates(store)
    assert _sorted(_names(report)) == _sorted(planted["groups"])
    kinds = {frozenset(names): g.kind for names, g in zip(_names(report), report.groups)}
    assert kinds[frozenset({"scene03.png", "scene03_same.png"})] == "exact"
    assert sum(kind == "near" for kind in kinds.values()) == 4
    for group in report.groups:
        assert group.similarity >= 0.90 and (group.kind == "near" or group.similarity == 1.0)
        pixels = [it.width * it.height for it in group.items]
        assert pixels == sorted(pixels, reverse=True)  # the largest copy first
    assert report.images == SCENES + 1 + 6 and report.skipped == []
    assert (planted["store"] / LAYOUT_FILE).is_file()  # layouts kept for the next run
    again = find_duplicates(store)
    assert [g.to_json() for g in again.groups] == [g.to_json() for g in report.groups]
    (planted["store"] / LAYOUT_FILE).write_bytes(b"PK\x03\x04 damaged")  # a damaged cache is read again from the files
    assert [g.to_json() for g in find_duplicates(store).groups] == [g.to_json() for g in report.groups]
    assert len(np.load(planted["store"] / LAYOUT_FILE)["sha256"]) >= 10  # the ten contents of the planted groups, at least


def test_the_layout_check_rejects_similar_but_different_scenes(planted):
    store = Store(planted["store"], create=False)
    planted_pairs = {frozenset((a, b)) for g in planted["groups"] for a in g for b in g if a != b}
    checked = find_duplicates(store)
    alone = find_duplicates(store, layout=None, detail=None)
    pairs = lambda report: {frozenset((Path(a.path).name, Path(b.path).name))  # noqa: E731
                            for g in report.groups for a in g.items for b in g.items if a.id != b.id}
    assert pairs(checked) == planted_pairs and checked.rejected > 0
    # cosine alone groups different scenes of the same kind: the pairs the layout check rejected
    assert pairs(alone) > planted_pairs and alone.rejected == 0
    assert checked.candidates == alone.candidates
    # the layout correlation alone keeps fewer of those than cosine alone
    layout_only = find_duplicates(store, detail=None)
    assert planted_pairs <= pairs(layout_only) <= pairs(alone)


def test_exact_only_and_the_threshold(planted):
    store = Store(planted["store"], create=False)
    exact = find_duplicates(store, exact_only=True)
    assert _names(exact) == [{"scene03.png", "scene03_same.png"}] and exact.candidates == 0
    # a higher threshold keeps a subset of the groups' pairs; at cosine 1.0 only the byte-identical files remain
    loose, strict = find_duplicates(store, threshold=0.90), find_duplicates(store, threshold=0.995)
    assert strict.pairs() < loose.pairs() and strict.candidates < loose.candidates
    assert all(g.similarity >= 0.995 for g in strict.groups)
    assert _names(find_duplicates(store, threshold=1.0)) == _names(exact)
    with pytest.raises(ValueError, match="threshold"):
        find_duplicates(store, threshold=1.5)


def test_cli_json_out_and_text(planted, tmp_path, capsys):
    out = tmp_path / "dups.json"
    assert main(["duplicates", "--store", str(planted["store"]), "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    expected = find_duplicates(Store(planted["store"], create=False)).to_json()
    assert printed == expected and printed["threshold"] == 0.90 and printed["exact_only"] is False
    assert _sorted([{Path(it["path"]).name for it in g["items"]} for g in printed["groups"]]) == _sorted(planted["groups"])
    assert main(["duplicates", "--store", str(planted["store"]), "--exact-only"]) == 0
    text = capsys.readouterr().out
    assert "group 1: 2 images, exact" in text and "scene03_same.png" in text and "group 2" not in text
    assert text.rstrip().splitlines()[-1].startswith("1 groups of duplicates among 37 images")


def test_bad_store_paths_give_one_clear_line(tmp_path, capsys):
    assert main(["duplicates", "--store", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere: no clipworks store here" in err[0]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "store.sqlite").write_bytes(b"")
    assert main(["duplicates", "--store", str(tmp_path / "empty")]) == 1
    assert "empty file (0 bytes), not a store" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["duplicates", "--store", str(tmp_path), "--threshold", "1.5"])
    assert "argument --threshold: must be in (0, 1]" in capsys.readouterr().err


def test_missing_and_unreadable_files_are_skipped_and_counted(planted, tmp_path, model, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("scene00.png", "scene00_small.jpg", "scene01.png", "scene01_cropped.png", "astronaut.png",
                 "astronaut_copy.jpg", "scene03.png", "scene03_same.png"):
        shutil.copyfile(planted["folder"] / name, folder / name)
    index([str(folder)], tmp_path / "store", model=model[0], preprocess=model[1], progress=False)
    (folder / "scene00_small.jpg").unlink()  # gone since indexing
    (folder / "scene01_cropped.png").write_bytes(b"not an image any more")  # changed into something unreadable
    (folder / "scene03_same.png").unlink()  # a byte-identical copy gone: its group goes too
    report = find_duplicates(Store(tmp_path / "store", create=False))
    assert _names(report) == [{"astronaut.png", "astronaut_copy.jpg"}]
    reasons = {Path(p).name: r for p, r in report.skipped}
    assert set(reasons) == {"scene00_small.jpg", "scene01_cropped.png", "scene03_same.png"}
    assert "not found" in reasons["scene00_small.jpg"] and "not a recognised image" in reasons["scene01_cropped.png"]
    assert main(["duplicates", "--store", str(tmp_path / "store")]) == 0
    assert "3 files skipped" in capsys.readouterr().out


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def server(planted, model, serve_app):
    from clipworks.search.engine import SearchEngine
    from clipworks.search.server import create_app

    engine = SearchEngine(planted["store"], model=model[0], preprocess=model[1], tokenizer=clipworks.get_tokenizer(model[0]))
    with serve_app(create_app(engine)) as base:
        yield base


def test_api_pages_through_the_groups(server, planted):
    status, body = _get(server + "/api/duplicates?limit=2")
    first = json.loads(body)
    assert status == 200 and first["total"] == 5 and first["next"] == 2 and len(first["groups"]) == 2
    groups, offset = list(first["groups"]), first["next"]
    while offset is not None:
        page = json.loads(_get(server + f"/api/duplicates?limit=2&offset={offset}")[1])
        assert page["offset"] == offset
        groups += page["groups"]
        offset = page["next"]
    expected = find_duplicates(Store(planted["store"], create=False)).to_json()["groups"]
    assert [[it["id"] for it in g["items"]] for g in groups] == [[it["id"] for it in g["items"]] for g in expected]
    member = groups[0]["items"][0]
    status, thumb = _get(server + member["thumb"])
    assert status == 200 and Image.open(io.BytesIO(thumb)).format == "JPEG"
    exact = json.loads(_get(server + "/api/duplicates?exact_only=true")[1])
    assert exact["total"] == 1 and exact["groups"][0]["kind"] == "exact" and exact["next"] is None
    strict = json.loads(_get(server + "/api/duplicates?threshold=0.995")[1])
    assert strict["total"] < 5 and strict["threshold"] == 0.995
    for bad in ("limit=0", "limit=101", "offset=-1", "threshold=0", "threshold=1.5"):
        assert _get(server + "/api/duplicates?" + bad)[0] == 422, bad


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (./run.sh installs it with apt)")
def test_duplicates_view_in_headless_chromium(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server + "/")
        page.click("#duplicates")
        page.wait_for_function("document.querySelectorAll('section.group').length == 5")
        assert page.inner_text("#status").startswith("5 groups of duplicates among 37 images")
        assert page.locator("section.group figure.duplicate").count() == 11
        # each group's thumbnails, decoded by the browser
        page.wait_for_function("[...document.querySelectorAll('figure.duplicate img')].every(i => i.complete && i.naturalWidth > 0)")
        assert "byte-identical" in page.inner_text("section.group:has-text('scene03_same.png') h2")
        browser.close()
