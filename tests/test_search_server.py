"""The search server over real HTTP on loopback: queries, path safety, upload limits, concurrency."""

from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

import clipworks
from clipworks.data.world import WorldDataset, write_world
from clipworks.search.engine import SearchEngine
from clipworks.search.indexer import index
from clipworks.search.server import create_app


@pytest.fixture(scope="module")
def server(tmp_path_factory, serve_app):
    tmp = tmp_path_factory.mktemp("srv")
    folder = write_world(tmp / "world", size=120, seed=5, split="train")
    outside = tmp / "secret.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside)
    os.symlink(outside, folder / "images" / "link_out.png")  # a symlink leaving the root
    # scenes without a caption file: the captioner writes their captions (image -> text)
    (folder / "uncaptioned").mkdir()
    scenes = WorldDataset(6, seed=31, split="train")
    for i in range(6):
        scenes[i].image.save(folder / "uncaptioned" / f"scene{i}.png")
    model, pre = clipworks.create_model("default", device="cpu")
    index([str(folder)], tmp / "store", model=model, preprocess=pre, progress=False)
    from clipworks.captioning.inference import Describer

    engine = SearchEngine(tmp / "store", model=model, preprocess=pre, tokenizer=clipworks.get_tokenizer(model),
                          describer=Describer("default", shared=("default", model, pre)))
    with serve_app(create_app(engine, max_upload_bytes=200_000)) as base:
        yield {"base": base, "folder": folder, "outside": outside, "engine": engine, "scenes": scenes}


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _upload(url: str, data: bytes, name: str = "q.png") -> tuple[int, bytes]:
    boundary = "clipworksboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_text_image_and_similar_search(server):
    base = server["base"]
    status, body = _get(base + "/api/search?" + urllib.parse.urlencode({"q": "a yellow square", "k": 5}))
    results = json.loads(body)["results"]
    assert status == 200 and len(results) == 5 and results[0]["score"] >= results[-1]["score"]
    status, img = _get(base + results[0]["url"])
    assert status == 200 and Image.open(io.BytesIO(img)).size == (64, 64)
    first = results[0]["id"]
    status, body = _get(base + f"/api/similar/{first}?k=3")
    assert status == 200 and first not in [r["id"] for r in json.loads(body)["results"]]
    status, body = _upload(base + "/api/search/image?k=1", img)
    assert status == 200 and json.loads(body)["results"][0]["id"] == first  # the same picture finds itself
    status, body = _get(base + "/api/stats")
    stats = json.loads(body)
    assert stats["items"] == 126 and stats["index"]["kind"] == "exact" and stats["skipped"] == 1  # the symlink out



def test_images_only_from_inside_the_root(server):
    base, folder, outside = server["base"], server["folder"], server["outside"]
    assert _get(base + "/api/file?path=" + urllib.parse.quote("images/000001.png"))[0] == 200
    # Every path that leaves the root, relative, absolute or through the symlink, is refused (403), not "not found".
    for path in ("../secret.png", "images/../../secret.png", str(outside), "/etc/passwd", "images/link_out.png",
                 str(folder / "images" / "link_out.png")):
        status, _ = _get(base + "/api/file?path=" + urllib.parse.quote(path, safe=""))
        assert status == 403, (path, status)
    # Percent signs arrive literally (decoded once): a missing file inside the root, not a way out.
    assert _get(base + "/api/file?path=" + urllib.parse.quote("images/%2e%2e/%2e%2e/secret.png", safe=""))[0] == 404
    assert _get(base + "/api/image/99999")[0] == 404


def test_upload_limits_and_validation(server):
    base = server["base"]
    big = os.urandom(300_000)
    assert _upload(base + "/api/search/image", big)[0] == 413
    assert _upload(base + "/api/search/image", b"not an image")[0] == 422
    assert _get(base + "/api/search?q=&k=5")[0] == 422
    assert _get(base + "/api/search?q=star&k=100000")[0] == 422
    assert _get(base + "/api/search?q=star&after=yesterday")[0] == 422
    spec = json.loads(_get(base + "/openapi.json")[1])
    assert {"/api/search", "/api/search/image", "/api/similar/{item_id}", "/api/image/{item_id}"} <= set(spec["paths"])


def test_200_concurrent_queries(server):
    base = server["base"]
    words = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "white"]
    urls = [base + "/api/search?" + urllib.parse.urlencode({"q": f"a {words[i % 8]} star", "k": 10}) for i in range(200)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(_get, urls))
    assert all(status == 200 for status, _ in results)
    assert all(len(json.loads(body)["results"]) == 10 for _, body in results)


def test_describe_writes_captions_for_uncaptioned_images(server):
    from clipworks.captioning.inference import caption_images
    from clipworks.captioning.model import load_captioner

    store, scenes = server["engine"].store, server["scenes"]
    captioner = load_captioner("default")
    named = 0
    for i in range(6):
        item = store.item_by_path(str((server["folder"] / "uncaptioned" / f"scene{i}.png").resolve()))
        assert item is not None and item.caption is None
        status, body = _get(server["base"] + f"/api/describe/{item.id}")
        answer = json.loads(body)
        assert status == 200 and answer["generated"] is True
        # the describer the engine was given captions the file as the library captions the image
        assert answer["caption"] == caption_images([scenes[i].image], captioner)[0]
        colours = {o["colour"] for o in scenes[i].facts["objects"]}
        named += any(c in answer["caption"].split() for c in colours)
    assert named >= 5  # the default captioner names a colour that is in the scene
    captioned = store.item_by_path(str((server["folder"] / "images" / "000000.png").resolve()))
    answer = json.loads(_get(server["base"] + f"/api/describe/{captioned.id}")[1])
    assert answer == {"id": captioned.id, "caption": captioned.caption.splitlines()[0], "generated": False}
    assert _get(server["base"] + "/api/describe/999999")[0] == 404


def test_page_is_served(server):
    status, body = _get(server["base"] + "/")
    assert status == 200 and b'id="q"' in body and b"/api/search" in body


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (./run.sh installs it with apt)")
def test_page_in_headless_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    base = server["base"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(base + "/")
        page.fill("#q", "a yellow square")
        page.press("#q", "Enter")
        page.wait_for_function("document.querySelectorAll('figure.result').length > 0")
        assert page.locator("figure.result").count() == 24
        assert "results for" in page.inner_text("#status")
        # the grid shows thumbnails, decoded by the browser
        page.wait_for_function("[...document.querySelectorAll('figure.result img')].slice(0, 4).every(i => i.complete && i.naturalWidth == 64)")
        assert all("/api/thumb/" in src for src in page.eval_on_selector_all("figure.result img", "els => els.map(e => e.src)"))
        first_ids = page.eval_on_selector_all("figure.result", "els => els.map(e => e.dataset.id)")
        # the next page: 24 more, none shown before, in the order of one larger query
        page.click("#more")
        page.wait_for_function("document.querySelectorAll('figure.result').length == 48")
        ids = page.eval_on_selector_all("figure.result", "els => els.map(e => e.dataset.id)")
        whole = json.loads(_get(base + "/api/search?" + urllib.parse.urlencode({"q": "a yellow square", "k": 48}))[1])
        assert ids[:24] == first_ids and ids == [str(r["id"]) for r in whole["results"]]
        first_id = first_ids[0]
        # click a thumbnail: the original in a viewer
        page.locator("figure.result img").first.click()
        page.wait_for_function("document.querySelector('#viewer').open && document.querySelector('#full').complete && document.querySelector('#full').naturalWidth == 64")
        assert page.get_attribute("#full", "src").endswith(f"/api/image/{first_id}")
        # from there: more like this, without the clicked image itself
        page.click("#viewer-like")
        page.wait_for_function("document.querySelector('#status').textContent.includes('images like')")
        ids = page.eval_on_selector_all("figure.result", "els => els.map(e => e.dataset.id)")
        assert first_id not in ids and len(ids) == 24
        # upload: an indexed picture finds itself first
        item = server["engine"].store.items([int(first_id)])[0]
        page.set_input_files("#file", item.path)
        page.wait_for_function(f"document.querySelector('figure.result') && document.querySelector('#status').textContent.includes('{Path(item.path).name}')")
        assert page.locator("figure.result").first.get_attribute("data-id") == first_id
        # an uncaptioned image finds itself, and its caption is written by the captioner
        page.set_input_files("#file", str(server["folder"] / "uncaptioned" / "scene0.png"))
        page.wait_for_function("document.querySelector('#status').textContent.includes('scene0.png')")
        page.wait_for_function("document.querySelector('figure.result .said').textContent.length > 0")
        said = page.locator("figure.result .said").first
        assert "generated" in said.get_attribute("class")
        assert said.inner_text() == server["engine"].describe(int(page.locator("figure.result").first.get_attribute("data-id")))
        # a filter that nothing matches
        page.click("summary")
        page.fill("#ext", "jpg")
        page.fill("#q", "a yellow square")
        page.press("#q", "Enter")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('0 results')")
        browser.close()


def test_query_algebra_and_photo_filters_through_the_json_api(server):
    base, engine = server["base"], server["engine"]
    url = lambda path, **params: base + path + "?" + urllib.parse.urlencode(params)  # noqa: E731
    ids = lambda body: [r["id"] for r in json.loads(body)["results"]]  # noqa: E731
    q = '"a yellow square" - 2:"a pink diamond"'
    status, body = _get(url("/api/search", q=q, k=10))
    assert status == 200 and ids(body) == [h.item.id for h in engine.search(engine.embed_query(q), k=10)]
    assert {r["date_source"] for r in json.loads(body)["results"]} == {"file"}  # generated PNGs carry no EXIF
    # more like this, and an upload, modified by terms
    first = ids(body)[0]
    status, body = _get(url(f"/api/similar/{first}", q='+ "a pink diamond"', k=5))
    start = engine.embedding_of(first)
    expected = engine.search(engine.embed_query('+ "a pink diamond"', start=start), k=5, exclude={first})
    assert status == 200 and ids(body) == [h.item.id for h in expected]
    picture = _get(base + f"/api/image/{first}")[1]
    status, body = _upload(url("/api/search/image", q='- "a yellow square"', k=5), picture)
    expected = engine.search(engine.embed_query('- "a yellow square"', start=start), k=5)
    assert status == 200 and ids(body) == [h.item.id for h in expected]
    # errors name the term; img: terms never read the server's disk
    status, body = _get(url("/api/search", q='"a yellow square" "a pink diamond"'))
    assert status == 422 and "term 2" in json.loads(body)["detail"]
    status, body = _get(url("/api/search", q="img:/etc/passwd + a cat"))
    assert status == 422 and "image paths are not read here" in json.loads(body)["detail"]
    # photo filters: the scenes are dated by their file time (today), with no camera and no GPS
    assert len(ids(_get(url("/api/search", q="a star", k=10, taken_after="2000-01-01"))[1])) == 10
    assert ids(_get(url("/api/search", q="a star", taken_before="2000-01-01"))[1]) == []
    assert ids(_get(url("/api/search", q="a star", has_gps="true"))[1]) == []
    assert len(ids(_get(url("/api/search", q="a star", k=10, has_gps="false"))[1])) == 10
    assert ids(_get(url(f"/api/similar/{first}", camera="pixel"))[1]) == []
    assert _get(url("/api/search", q="a star", taken_after="last summer"))[0] == 422
