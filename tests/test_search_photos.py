"""Photo metadata in the search store: EXIF date taken (or the file time), camera model and GPS presence read at
indexing, filters on them before ranking, the migration of a store made before them, and HEIC files."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clipworks
from clipworks.cli.main import main as cli
from clipworks.data.images import photo_metadata
from clipworks.search.engine import Filters, SearchEngine
from clipworks.search.indexer import index
from clipworks.search.store import STORE_FILE, Store

EXIF_IFD, GPS_IFD, MODEL, DATE_TIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 0x8769, 0x8825, 0x0110, 0x9003, 0x9011


def _exif(taken: str | None = None, model: str | None = None, gps: bool = False, offset: str | None = None) -> Image.Exif:
    """Real EXIF tags as a camera writes them: DateTimeOriginal in the Exif IFD, Model, a GPS IFD."""
    exif = Image.Exif()
    if model:
        exif[MODEL] = model
    if taken:
        exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = taken
    if offset:
        exif.get_ifd(EXIF_IFD)[OFFSET_TIME_ORIGINAL] = offset
    if gps:
        exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    return exif


def _photo(path: Path, colour: tuple[int, int, int], mtime: float, **tags) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (48, 48), colour)
    exif = _exif(**tags)
    image.save(path, **({"exif": exif.tobytes()} if tags else {}))
    os.utime(path, (mtime, mtime))
    return path


def _local(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


FILE_TIME = _local("2023-01-10 12:00:00")


def test_photo_metadata_reads_exif_and_falls_back_to_the_file_time(tmp_path):
    tagged = _photo(tmp_path / "a.jpg", (200, 0, 0), FILE_TIME, taken="2019:06:01 08:30:00", model="Pixel 9", gps=True)
    assert photo_metadata(tagged, str(tagged), FILE_TIME) == {
        "taken": _local("2019-06-01 08:30:00"), "date_source": "exif", "camera": "Pixel 9", "gps": True}
    zoned = _photo(tmp_path / "z.jpg", (0, 0, 200), FILE_TIME, taken="2019:06:01 08:30:00", offset="+02:00")
    assert photo_metadata(zoned, str(zoned), FILE_TIME)["taken"] == datetime.fromisoformat("2019-06-01T06:30:00+00:00").timestamp()
    bare = _photo(tmp_path / "b.png", (0, 200, 0), FILE_TIME)
    assert photo_metadata(bare, str(bare), FILE_TIME) == {"taken": FILE_TIME, "date_source": "file", "camera": None, "gps": False}
    placeholder = _photo(tmp_path / "c.jpg", (0, 200, 0), FILE_TIME, taken="0000:00:00 00:00:00", model="Canon EOS R5")
    assert photo_metadata(placeholder, str(placeholder), FILE_TIME) == {
        "taken": FILE_TIME, "date_source": "file", "camera": "Canon EOS R5", "gps": False}
    broken = tmp_path / "d.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    assert photo_metadata(broken, str(broken), FILE_TIME)["date_source"] == "file"


@pytest.fixture(scope="module")
def model():
    return clipworks.create_model("default", device="cpu")


def _album(folder: Path) -> dict[str, Path]:
    return {
        "pixel": _photo(folder / "pixel.jpg", (220, 30, 30), FILE_TIME, taken="2019:06:01 08:30:00", model="Pixel 9", gps=True),
        "canon": _photo(folder / "canon.jpg", (30, 90, 240), FILE_TIME, taken="2021:03:05 17:00:00", model="Canon EOS R5"),
        "plain": _photo(folder / "plain.png", (30, 170, 50), _local("2018-02-02 10:00:00")),  # no EXIF: its file time
        "old": _photo(folder / "old.jpg", (240, 200, 30), FILE_TIME, taken="2005:12:24 20:00:00", model="PIXEL 2"),
    }


def _names(hits) -> set[str]:
    return {Path(h.item.path).stem for h in hits}


def test_filters_on_date_taken_camera_and_gps_apply_before_ranking(tmp_path, model, capsys):
    _album(tmp_path / "album")
    index([str(tmp_path / "album")], tmp_path / "store", model=model[0], preprocess=model[1], progress=False)
    engine = SearchEngine(tmp_path / "store", model=model[0], preprocess=model[1], tokenizer=clipworks.get_tokenizer(model[0]))
    items = {Path(i.path).stem: i for i in engine.store.items(engine.store.filter_ids())}
    assert (items["pixel"].date_source, items["pixel"].camera, items["pixel"].gps) == ("exif", "Pixel 9", True)
    assert (items["plain"].date_source, items["plain"].taken, items["plain"].camera) == ("file", _local("2018-02-02 10:00:00"), None)
    query = engine.embed_query("a photo")
    search = lambda **f: _names(engine.search(query, k=10, filters=Filters(**f), collapse=None))  # noqa: E731
    assert search(taken_after=_local("2019-01-01")) == {"pixel", "canon"}  # EXIF dates, though every mtime is 2023
    assert search(taken_before=_local("2019-01-01")) == {"plain", "old"}
    assert search(taken_after=_local("2019-01-01"), taken_before=_local("2020-01-01")) == {"pixel"}
    assert search(camera="pixel") == {"pixel", "old"}  # a part of the model, any case
    assert search(has_gps=True) == {"pixel"} and search(has_gps=False) == {"canon", "plain", "old"}
    assert search(camera="pixel", has_gps=False) == {"old"}
    assert search(after=_local("2023-01-01")) == {"pixel", "canon", "old"}  # --after stays the modification time
    # the CLI: the same filters as flags, the metadata in --json
    store = str(tmp_path / "store")
    assert cli(["search", "--store", store, "a photo", "--taken-after", "2019-01-01", "--camera", "PIXEL", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(Path(r["path"]).stem, r["date_source"], r["camera"], r["gps"]) for r in out] == [("pixel", "exif", "Pixel 9", True)]
    assert cli(["search", "--store", store, "a photo", "--no-has-gps", "--taken-before", "2019-01-01", "--json"]) == 0
    assert {Path(r["path"]).stem for r in json.loads(capsys.readouterr().out)} == {"plain", "old"}
    assert cli(["search", "--store", store, "a photo", "--taken-after", "June 2019"]) == 1
    assert "--taken-after 'June 2019': expected a date" in capsys.readouterr().err


def test_a_store_from_before_photo_metadata_is_migrated_without_embedding_again(tmp_path, model):
    _album(tmp_path / "album")
    index([str(tmp_path / "album")], tmp_path / "store", model=model[0], preprocess=model[1], progress=False)
    ids, vectors = Store(tmp_path / "store").vectors()
    with sqlite3.connect(tmp_path / "store" / STORE_FILE) as db:  # the schema of the store before this change
        db.execute("DROP INDEX items_taken")
        for column in ("taken", "date_source", "camera", "gps"):
            db.execute(f"ALTER TABLE items DROP COLUMN {column}")
    old = Store(tmp_path / "store", create=False)  # queries open it read-only: not migrated, the columns read empty
    assert all(i.date_source is None and i.camera is None for i in old.items(ids))
    with pytest.raises(clipworks.errors.InputFileError, match="made before photo metadata.*clipworks index"):
        old.filter_ids(camera="pixel")
    report = index([str(tmp_path / "album")], tmp_path / "store", model=model[0], preprocess=model[1], progress=False)
    assert (report.added, report.updated, report.unchanged) == (0, 0, 4)
    store = Store(tmp_path / "store", create=False)
    after_ids, after_vectors = store.vectors()
    assert np.array_equal(after_ids, ids) and np.array_equal(after_vectors, vectors)  # no image embedded again
    items = {Path(i.path).stem: i for i in store.items(ids)}
    assert {k: (i.date_source, i.camera, i.gps) for k, i in items.items()} == {
        "pixel": ("exif", "Pixel 9", True), "canon": ("exif", "Canon EOS R5", False),
        "plain": ("file", None, False), "old": ("exif", "PIXEL 2", False)}
    assert list(store.filter_ids(taken_before=_local("2019-01-01"))) == sorted(items[k].id for k in ("plain", "old"))


def test_heic_photos_are_indexed_found_and_dated(tmp_path, model):
    import pillow_heif

    folder = tmp_path / "phone"
    heic = folder / "IMG_0001.HEIC"
    folder.mkdir()
    picture = Image.new("RGB", (64, 48), (220, 30, 30))
    pillow_heif.from_pillow(picture).save(heic, quality=95,
                                          exif=_exif(taken="2022:07:14 09:15:00", model="iPhone 15", gps=True).tobytes())
    for name, colour in (("blue", (30, 90, 240)), ("green", (30, 170, 50)), ("yellow", (240, 200, 30))):
        Image.new("RGB", (64, 48), colour).save(folder / f"{name}.png")
    report = index([str(folder)], tmp_path / "store", model=model[0], preprocess=model[1], progress=False)
    assert report.added == 4 and not report.skipped
    engine = SearchEngine(tmp_path / "store", model=model[0], preprocess=model[1], tokenizer=clipworks.get_tokenizer(model[0]))
    # the HEIC decoded as the picture it holds: the picture itself finds it first, at cosine about 1
    hits = engine.search(engine.embed_image(picture), k=2, collapse=None)
    assert Path(hits[0].item.path).name == "IMG_0001.HEIC" and hits[0].score > 0.99
    item = hits[0].item
    assert (item.ext, item.width, item.height) == ("heic", 64, 48)
    assert (item.taken, item.date_source, item.camera, item.gps) == (_local("2022-07-14 09:15:00"), "exif", "iPhone 15", True)
    assert _names(engine.search(engine.embed_query("a red square"), k=4, filters=Filters(camera="iphone"))) == {"IMG_0001"}
    # a page's total counts what the photo filters leave, as the ranking does
    assert engine.ranked_count(Filters(camera="iphone")) == 1 and engine.ranked_count(Filters(has_gps=False)) == 3
    assert engine.ranked_count(Filters(camera="iphone"), exclude={item.id}) == 0


def test_a_heic_without_pillow_heif_is_skipped_naming_the_extra(tmp_path, model, monkeypatch):
    import pillow_heif

    from clipworks.model import transforms

    folder = tmp_path / "phone"
    folder.mkdir()
    pillow_heif.from_pillow(Image.new("RGB", (32, 32), (200, 0, 0))).save(folder / "a.heic")
    Image.new("RGB", (32, 32), (0, 0, 200)).save(folder / "b.png")
    monkeypatch.setitem(__import__("sys").modules, "pillow_heif", None)  # as if the extra were not installed
    transforms._register_heif_opener.cache_clear()
    try:
        report = index([str(folder)], tmp_path / "store", model=model[0], preprocess=model[1], progress=False)
    finally:
        transforms._register_heif_opener.cache_clear()
    assert report.added == 1 and [(Path(p).name, r) for p, r in report.skipped] == [
        ("a.heic", "a HEIC/HEIF image needs pillow_heif, which clipworks installs only on request: pip install 'clipworks[heic]'")]
