"""Thumbnails, browser-ready copies and paging of the search server, over real HTTP on loopback."""

from __future__ import annotations

import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clipworks
from clipworks.data.world import write_world
from clipworks.search.engine import SearchEngine
from clipworks.search.indexer import index
from clipworks.search.server import MAX_K, MAX_OFFSET, create_app
from clipworks.search.thumbs import THUMB_SIDE

PIXEL_BUDGET = 10_000_000  # the server's pixel budget in these tests (uploads, thumbnails, converted images)


def _formats(folder: Path, outside: Path) -> None:
    """One image per awkward format, each with a known colour or shape to check its thumbnail against."""
    folder.mkdir()
    Image.new("RGB", (300, 200), (200, 40, 40)).save(folder / "red.tif")  # browsers cannot show TIFF
    ramp = np.tile(np.linspace(0, 65535, 400).astype(np.uint16), (100, 1))  # 16-bit grey ramp, left to right
    Image.fromarray(ramp).save(folder / "ramp16.png")
    Image.new("CMYK", (320, 240), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)  # red in CMYK
    rgba = Image.new("RGBA", (200, 200), (0, 0, 255, 0))  # fully transparent blue: white once composited
    rgba.paste((0, 160, 0, 255), (0, 0, 100, 200))  # opaque green left half
    rgba.save(folder / "alpha.png")
    palette = Image.new("P", (120, 80), 1)
    palette.putpalette([0, 0, 0, 250, 200, 0] + [0] * 762)
    palette.save(folder / "palette.gif")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": a 300x100 file shows as 100x300
    Image.new("RGB", (300, 100), (40, 40, 200)).save(folder / "turned.jpg", exif=exif)
    wide = Image.new("RGB", (12_000, 3_000), (30, 120, 200))  # 36 Mpx: over the budget unless drafted
    wide.save(folder / "wide.jpg", quality=80)
    Image.new("RGB", (4_000, 3_000), (90, 90, 90)).save(folder / "big.png", compress_level=1)  # 12 Mpx PNG: no draft
    Image.new("RGB", (64, 64), (10, 200, 10)).save(folder / "changes.png")
    Image.new("RGB", (64, 64), (10, 10, 10)).save(folder / "escapes.png")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside)


@pytest.fixture(scope="module")
def server(tmp_path_factory, serve_app):
    tmp = tmp_path_factory.mktemp("thumbs")
    folder = write_world(tmp / "world", size=60, seed=9, split="train")
    _formats(folder / "formats", tmp / "secret.png")
    model, pre = clipworks.create_model("default", device="cpu")
    index([str(folder)], tmp / "store", model=model, preprocess=pre, progress=False)
    engine = SearchEngine(tmp / "store", model=model, preprocess=pre, tokenizer=clipworks.get_tokenizer(model))
    with serve_app(create_app(engine, max_upload_pixels=PIXEL_BUDGET)) as base:
        ids = {Path(it.path).name: it.id for it in engine.store.items(engine.store.vectors()[0].tolist())}
        yield {"base": base, "folder": folder, "store": tmp / "store", "ids": ids, "outside": tmp / "secret.png",
               "engine": engine}


def _get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _jpeg(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    assert image.format == "JPEG"
    image.load()
    return image


def _thumb(server, name: str) -> Image.Image:
    status, headers, body = _get(server["base"] + f"/api/thumb/{server['ids'][name]}")
    assert status == 200, (name, body[:300])
    assert headers["content-type"] == "image/jpeg"
    image = _jpeg(body)
    assert image.mode == "RGB" and max(image.size) <= THUMB_SIDE
    return image


def _near(pixel, want, tolerance: int = 12) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, want))


def test_thumbnails_of_every_format(server):
    tif = _thumb(server, "red.tif")
    assert tif.size == (256, 171) and _near(tif.getpixel((128, 85)), (200, 40, 40))
    ramp = _thumb(server, "ramp16.png")
    assert ramp.size == (256, 64)
    row = np.asarray(ramp)[32, :, 0].astype(int)
    assert row[2] < 15 and row[-3] > 240 and abs(row[128] - 128) < 15  # scaled from 16 bits, not clipped at 255
    cmyk = _thumb(server, "cmyk.jpg")
    assert cmyk.size == (256, 192) and _near(cmyk.getpixel((128, 96)), (255, 0, 0), 20)
    alpha = _thumb(server, "alpha.png")
    assert alpha.size == (200, 200)  # never enlarged
    assert _near(alpha.getpixel((40, 100)), (0, 160, 0)) and _near(alpha.getpixel((170, 100)), (255, 255, 255))
    palette = _thumb(server, "palette.gif")
    assert palette.size == (120, 80) and _near(palette.getpixel((60, 40)), (250, 200, 0))
    turned = _thumb(server, "turned.jpg")
    assert turned.size == (85, 256) and _near(turned.getpixel((42, 128)), (40, 40, 200))  # EXIF orientation applied
    # 12,000 px wide: decoded at 1/8 scale (1500x375, within the budget), never at full size
    wide = _thumb(server, "wide.jpg")
    assert wide.size == (256, 64) and _near(wide.getpixel((128, 32)), (30, 120, 200))
    world = _thumb(server, "000000.png")
    assert world.size == (64, 64)


def test_pixel_budget_and_bad_ids(server):
    base, ids = server["base"], server["ids"]
    status, _, body = _get(base + f"/api/thumb/{ids['big.png']}")  # 12 Mpx PNG: no reduced decode for PNG
    assert status == 413 and b"4000x3000" in body and str(PIXEL_BUDGET).encode() in body
    for path, want in (("/api/thumb/999999", 404), ("/api/thumb/-1", 404), ("/api/thumb/abc", 422),
                       (f"/api/thumb/{2**70}", 404)):
        assert _get(base + path)[0] == want, path


def test_full_image_is_browser_ready(server):
    base, ids = server["base"], server["ids"]
    status, headers, body = _get(base + f"/api/image/{ids['red.tif']}")  # TIFF: a converted full-size JPEG
    image = _jpeg(body)
    assert status == 200 and headers["content-type"] == "image/jpeg" and image.size == (300, 200)
    assert _near(image.getpixel((150, 100)), (200, 40, 40))
    status, headers, body = _get(base + "/api/file?path=" + urllib.parse.quote("formats/red.tif"))
    assert status == 200 and headers["content-type"] == "image/tiff"
    assert body == (server["folder"] / "formats" / "red.tif").read_bytes()
    status, headers, body = _get(base + f"/api/image/{ids['alpha.png']}")  # browsers show PNG: the file itself
    assert status == 200 and body == (server["folder"] / "formats" / "alpha.png").read_bytes()
    item = json.loads(_get(base + f"/api/items/{ids['red.tif']}")[2])
    assert item["url"] == f"/api/image/{ids['red.tif']}" and item["thumb"] == f"/api/thumb/{ids['red.tif']}"


def _cached(server, item_id: int) -> list[Path]:
    return sorted((server["store"] / "thumbs").rglob(f"{item_id}.{THUMB_SIDE}.*.jpg"))


def test_thumbnails_are_cached_and_follow_the_file(server):
    base, item_id = server["base"], server["ids"]["changes.png"]
    source = server["folder"] / "formats" / "changes.png"
    first = _get(base + f"/api/thumb/{item_id}")[2]
    [cached] = _cached(server, item_id)
    stamp = cached.stat().st_mtime_ns, cached.stat().st_ino
    assert cached.read_bytes() == first and _near(_jpeg(first).getpixel((32, 32)), (10, 200, 10))
    time.sleep(0.05)
    assert _get(base + f"/api/thumb/{item_id}")[2] == first
    assert _cached(server, item_id) == [cached]
    assert (cached.stat().st_mtime_ns, cached.stat().st_ino) == stamp  # served from the cache, not made again
    # the file changes on disk (content and mtime), not re-indexed: the next thumbnail shows the new content
    Image.new("RGB", (96, 48), (220, 30, 200)).save(source)
    os.utime(source, (time.time() + 5, time.time() + 5))
    changed = _jpeg(_get(base + f"/api/thumb/{item_id}")[2])
    assert changed.size == (96, 48) and _near(changed.getpixel((48, 24)), (220, 30, 200))
    [fresh] = _cached(server, item_id)
    assert fresh != cached and not cached.exists()  # the stale copy is removed


def test_thumbnails_only_from_inside_the_root(server):
    base, item_id = server["base"], server["ids"]["escapes.png"]
    source = server["folder"] / "formats" / "escapes.png"
    source.unlink()
    assert _get(base + f"/api/thumb/{item_id}")[0] == 404  # gone since indexing
    os.symlink(server["outside"], source)  # an indexed file replaced by a symlink leaving the root
    assert _get(base + f"/api/thumb/{item_id}")[0] == 403
    assert _get(base + f"/api/image/{item_id}")[0] == 403
    assert not _cached(server, item_id)


def _page(base: str, route: str, **params) -> dict:
    status, _, body = _get(base + route + "?" + urllib.parse.urlencode(params))
    assert status == 200, body[:300]
    return json.loads(body)


@pytest.mark.parametrize("route, params", [("/api/search", {"q": "a red star"}),
                                           ("/api/search", {"q": "a blue circle", "folder": "images"}),
                                           ("/api/similar/{first}", {})])
def test_pages_are_slices_of_one_ranking(server, route, params):
    base = server["base"]
    route = route.format(first=server["ids"]["000003.png"])
    if "folder" in params:
        params = {**params, "folder": str(server["folder"] / params["folder"])}
    whole = _page(base, route, k=40, **params)
    pages, offset = [], 0
    while offset is not None and offset < 40:
        page = _page(base, route, k=7, offset=offset, **params)
        assert page["offset"] == offset and page["total"] == whole["total"]
        pages.append(page)
        offset = page["next"]
    ids = [[r["id"] for r in p["results"]] for p in pages]
    flat = [i for p in ids for i in p]
    assert len(flat) == len(set(flat))  # disjoint
    assert flat[:40] == [r["id"] for r in whole["results"]]
    assert [r["score"] for p in pages for r in p["results"]][:40] == [r["score"] for r in whole["results"]]
    assert all(p["next"] == p["offset"] + 7 for p in pages[:-1])
    assert all("thumb" in r for r in whole["results"])


def test_last_page_and_totals(server):
    base, engine = server["base"], server["engine"]
    n = len(engine.store)
    images = str(server["folder"] / "images")
    page = _page(base, "/api/search", q="a red star", folder=images, k=MAX_K)
    assert page["total"] == 60 and page["next"] is None and 0 < len(page["results"]) <= 60
    page = _page(base, "/api/search", q="a red star", k=5, offset=n - 3)
    assert page["total"] == n and len(page["results"]) <= 3 and page["next"] is None
    page = _page(base, f"/api/similar/{server['ids']['000003.png']}", k=5)
    assert page["total"] == n - 1  # the item itself is left out


def test_paging_limits_are_validated(server):
    base = server["base"]
    for query in ("q=star&offset=-1", f"q=star&offset={MAX_OFFSET + 1}", "q=star&offset=two", "q=star&k=0",
                  f"q=star&k={MAX_K + 1}", "q=star&offset=1.5"):
        status, _, body = _get(base + "/api/search?" + query)
        assert status == 422, query
        assert json.loads(body)["detail"][0]["loc"][0] == "query"  # FastAPI's validation answer, as for k
    assert _get(base + f"/api/search?q=star&offset={MAX_OFFSET}&k=5")[0] == 200
    assert _get(base + f"/api/similar/{server['ids']['000003.png']}?offset=-2")[0] == 422


def test_index_thumbs_makes_every_thumbnail_ahead(tmp_path, capsys):
    from clipworks.cli.main import main
    from clipworks.search.store import Store
    from clipworks.search.thumbs import MAX_PIXELS, cached_copy, make_all, render

    folder = write_world(tmp_path / "world", size=10, seed=4, split="train")
    Image.new("RGB", (640, 480), (200, 40, 40)).save(folder / "red.tif")  # a format browsers cannot show
    store_dir = tmp_path / "store"
    assert main(["index", str(folder), "--store", str(store_dir), "--thumbs"]) == 0
    assert "thumbnails: made 11, current 0" in capsys.readouterr().out
    store = Store(store_dir, create=False)
    roots, items = store.roots(), store.items(store.filter_ids())
    store.close()
    assert len(items) == 11
    for item in items:  # each cached thumbnail is exactly what the server would make, at most THUMB_SIDE
        path = cached_copy(store_dir, item, roots, THUMB_SIDE)
        assert path is not None and path.read_bytes() == render(item, roots, THUMB_SIDE, MAX_PIXELS)
        with Image.open(path) as thumb:
            assert thumb.format == "JPEG" and max(thumb.size) <= THUMB_SIDE
    again = make_all(store_dir, progress=False)
    assert (again.made, again.current, again.failed) == (0, 11, [])

    changed, gone = sorted(folder.rglob("*.png"))[:2]
    Image.new("RGB", (64, 64), (0, 0, 0)).save(changed)  # new content: its cached thumbnail is no longer current
    os.utime(changed, (time.time() + 5, time.time() + 5))
    gone.unlink()
    report = make_all(store_dir, progress=False)
    assert (report.made, report.current) == (1, 9)
    assert [p for p, _ in report.failed] == [str(gone)] and "1 failed" in report.summary()
