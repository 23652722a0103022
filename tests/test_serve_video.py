"""`clipworks serve` over a video store, on real HTTP: poster frames as thumbnails (cached, remade when the file
changes, a placeholder for a video that no longer decodes), each text query's best-matching moment (near where
the generated video world put the queried object), the videos themselves from inside the indexed folder only."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipworks.search.server import create_app
from clipworks.video.decode import poster_frame, write_video
from clipworks.video.index import index_videos, video_engine
from clipworks.video.model import video_model
from clipworks.video.world import VideoWorld

FPS = 8.0
SEGMENT = 8  # frames of each world clip: a second at FPS


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def _name(obj: dict) -> str:
    return f"a {obj['colour']} {obj['shape']}"


def _distinct_pairs(world: VideoWorld, count: int) -> list[tuple[int, int]]:
    """`count` pairs of clips whose (single) objects differ in both shape and colour, from the world's order."""
    pairs, used = [], set()
    for i in range(len(world)):
        for j in range(i + 1, len(world)):
            a, b = world.clip(i).tracks[0], world.clip(j).tracks[0]
            if i in used or j in used or a.shape == b.shape or a.start_colour == b.start_colour:
                continue
            if {a.action, b.action} & {"changes colour", "appears", "disappears"}:
                continue  # the object is there, in its colour, from the first frame to the last
            pairs.append((i, j))
            used |= {i, j}
            break
        if len(pairs) == count:
            return pairs
    raise AssertionError("the world has too few distinct pairs")


@pytest.fixture(scope="module")
def served(tmp_path_factory, serve_app):
    """A folder of world videos indexed by the default video model, served on loopback. Each event video is one
    world clip, then another (from 1.0 s): the second one's object comes into the video at a known time."""
    tmp = tmp_path_factory.mktemp("video-srv")
    folder = tmp / "videos"
    folder.mkdir()
    world = VideoWorld(40, seed=11, split="train", num_frames=SEGMENT, n_objects=(1, 1), group=1)
    events = {}
    for k, (i, j) in enumerate(_distinct_pairs(world, 2)):
        first, second = world[i], world[j]
        for order, (x, y) in (("ab", (first, second)), ("ba", (second, first))):
            path = write_video(folder / f"event{k}_{order}.mp4", np.concatenate([x.frames, y.frames]), fps=FPS)
            # (object of the first second, object from 1.0 s on)
            events[path.name] = (_name(x.facts["objects"][0]), _name(y.facts["objects"][0]))
    for n in range(30, 34):  # plain one-second clips with their captions
        sample = world[n]
        write_video(folder / f"plain{n}.mp4", sample.frames, fps=FPS).with_suffix(".txt").write_text(sample.captions[0])
    frames = folder / "frames_clip"  # a folder of frames: no frame rate, so moments by frame number only
    frames.mkdir()
    for t, frame in enumerate(world[34].frames):
        Image.fromarray(frame).save(frames / f"{t:03d}.png")
    for name, n in (("mended.mp4", 35), ("broken.mp4", 36), ("escape.mp4", 37)):  # changed after indexing
        write_video(folder / name, world[n].frames, fps=FPS)
    outside = write_video(tmp / "secret.mp4", world[38].frames, fps=FPS)
    net = video_model("default", device="cpu")
    report = index_videos([str(folder)], tmp / "store", net=net, progress=False)
    assert report.added == 12 and not report.skipped
    engine = video_engine(tmp / "store", net=net)
    with serve_app(create_app(engine)) as base:
        yield {"base": base, "folder": folder.resolve(), "outside": outside, "engine": engine, "events": events,
               "world": world, "store": tmp / "store"}


def _search(base: str, q: str, k: int = 20) -> list[dict]:
    status, body, _ = _get(base + "/api/search?" + urllib.parse.urlencode({"q": q, "k": k}))
    assert status == 200, body
    return json.loads(body)["results"]


def test_a_text_query_finds_each_video_s_best_moment_where_the_world_put_it(served):
    base, events = served["base"], served["events"]
    for name, (first, second) in events.items():
        # the object of the second half is best matched in the second half, and the other way round
        for query, (low, high) in ((second, (1.0, 2.0)), (first, (0.0, 1.0))):
            hit = next(r for r in _search(base, query) if r["path"].endswith("/" + name))
            assert low <= hit["moment"]["seconds"] < high, (name, query, hit["moment"])
            assert hit["play"] == f"/api/video/{hit['id']}#t={hit['moment']['seconds']:.3f}"


def test_every_moment_lies_inside_its_video(served):
    results = _search(served["base"], "a red circle moves left", k=50)
    assert len(results) == 12  # every indexed video is ranked
    for r in results:
        moment, frames = r["moment"], r["extra"]["frames"]
        assert 0 <= moment["frame"] < frames and -1.0 <= moment["score"] <= 1.0
        if r["ext"] == "frames":  # a folder of frames: no frame rate, no time, nothing to play
            assert moment["seconds"] is None and r["url"] is None and r["play"] is None
            continue
        assert r["extra"]["fps"] == pytest.approx(FPS)
        # the sampled frame's own time, inside the video
        assert moment["seconds"] == pytest.approx(moment["frame"] / FPS, abs=1e-3)
        assert 0.0 <= moment["seconds"] < frames / FPS
        assert r["url"] == f"/api/video/{r['id']}"
    # the CLI's search shows the same moments
    engine = served["engine"]
    hits = engine.search(engine.embed_text("a red circle moves left"), k=50)
    assert {h.item.id: h.moment.frame for h in hits} == {r["id"]: r["moment"]["frame"] for r in results}


def test_posters_are_middle_frames_cached_in_the_store_and_remade_when_the_file_changes(served):
    base, folder, store = served["base"], served["folder"], served["store"]
    fetched = 0
    for r in _search(base, "a shape", k=50):
        if Path(r["path"]).name in ("broken.mp4", "escape.mp4", "mended.mp4"):
            continue  # changed by the tests below, in any order
        fetched += 1
        status, body, headers = _get(base + r["thumb"])
        poster = Image.open(io.BytesIO(body))
        assert status == 200 and headers["content-type"] == "image/jpeg" and poster.format == "JPEG"
        assert poster.size == (64, 64)  # the world's frames, not enlarged
        expected = np.asarray(poster_frame(r["path"]), dtype=np.float32)
        assert np.abs(np.asarray(poster.convert("RGB"), dtype=np.float32) - expected).mean() < 6  # JPEG's loss only
    cached = sorted((store / "thumbs").rglob("*.jpg"))  # in the store, like image thumbnails: one per video
    assert fetched == 9 and len(cached) == fetched
    # a file changed on disk gets a new poster, of its new content
    item = served["engine"].store.item_by_path(str(folder / "mended.mp4"))
    before = np.asarray(Image.open(io.BytesIO(_get(base + f"/api/thumb/{item.id}")[1])), dtype=np.float32)
    write_video(folder / "mended.mp4", served["world"][39].frames, fps=FPS)
    os.utime(folder / "mended.mp4", (time.time() + 5, time.time() + 5))
    after = np.asarray(Image.open(io.BytesIO(_get(base + f"/api/thumb/{item.id}")[1])), dtype=np.float32)
    now = np.asarray(poster_frame(folder / "mended.mp4"), dtype=np.float32)
    assert np.abs(after - now).mean() < 6 and np.abs(before - now).mean() > 3 * np.abs(after - now).mean()


def test_a_video_that_no_longer_decodes_gets_a_placeholder_and_is_counted(served):
    base, folder = served["base"], served["folder"]
    item = served["engine"].store.item_by_path(str(folder / "broken.mp4"))
    data = (folder / "broken.mp4").read_bytes()
    (folder / "broken.mp4").write_bytes(data[:48] + b"\0" * 64)  # a header, then nothing that decodes
    for _ in range(2):  # asked again, it is still the placeholder, counted once
        status, body, headers = _get(base + f"/api/thumb/{item.id}")
        assert status == 200 and headers["x-clipworks-placeholder"] == "unreadable video"
        assert headers["cache-control"] == "no-store" and Image.open(io.BytesIO(body)).size == (256, 256)
    stats = json.loads(_get(base + "/api/stats")[1])
    assert stats["kind"] == "videos" and stats["unreadable"] == 1
    assert [v["path"] for v in stats["unreadable_videos"]] == [str(folder / "broken.mp4")]
    assert stats["unreadable_videos"][0]["reason"]  # why, in FFmpeg's or our words
    # searching is unaffected: the embedding is the store's
    assert item.id in [r["id"] for r in _search(base, "a shape", k=50)]


def test_videos_are_served_from_inside_the_indexed_folder_only(served):
    base, folder, outside = served["base"], served["folder"], served["outside"]
    item = served["engine"].store.item_by_path(str(folder / "event0_ab.mp4"))
    original = (folder / "event0_ab.mp4").read_bytes()
    status, body, headers = _get(base + f"/api/video/{item.id}")
    assert status == 200 and body == original and headers["content-type"] == "video/mp4"
    # a Range request, as a browser seeking to #t= sends
    status, body, headers = _get(base + f"/api/video/{item.id}", {"Range": "bytes=100-199"})
    assert status == 206 and body == original[100:200] and headers["content-range"] == f"bytes 100-199/{len(original)}"
    assert _get(base + "/api/file?path=" + urllib.parse.quote("event0_ab.mp4"))[1] == original
    for path in ("../secret.mp4", "sub/../../secret.mp4", str(outside), "/etc/passwd"):
        assert _get(base + "/api/file?path=" + urllib.parse.quote(path, safe=""))[0] == 403, path
    # an indexed video swapped for a symlink leaving the folder: neither the file nor its poster is served
    escape = served["engine"].store.item_by_path(str(folder / "escape.mp4"))
    (folder / "escape.mp4").unlink()
    os.symlink(outside, folder / "escape.mp4")
    assert _get(base + f"/api/video/{escape.id}")[0] == 403
    assert _get(base + f"/api/thumb/{escape.id}")[0] == 403
    # a folder of frames has no file to play; ids that are not there are 404s
    frames = served["engine"].store.item_by_path(str(folder / "frames_clip"))
    assert _get(base + f"/api/video/{frames.id}")[0] == 404
    assert _get(base + "/api/video/99999")[0] == 404
    assert _get(base + f"/api/image/{item.id}")[0] == 404  # a video is not an image


def test_image_uploads_are_refused_with_a_reason(served):
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + b"\x89PNG" + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(served["base"] + "/api/search/image", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 422 and "searched by text" in json.loads(err.value.read())["detail"]
    # more like this: another video's embedding, with its own best moments
    first = _search(served["base"], "a shape")[0]
    status, body, _ = _get(served["base"] + f"/api/similar/{first['id']}?k=5")
    results = json.loads(body)["results"]
    assert status == 200 and first["id"] not in [r["id"] for r in results] and all(r["moment"] for r in results)


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (./run.sh installs it with apt)")
def test_page_shows_posters_moments_and_plays_from_the_moment(served):
    from playwright.sync_api import sync_playwright

    base = served["base"]
    name, (_, second) = next(iter(served["events"].items()))
    expected = {r["id"]: r for r in _search(base, second, k=24)}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(base + "/")
        page.wait_for_function("document.querySelector('#drop').hidden")  # a video store: no image upload
        page.fill("#q", second)
        page.press("#q", "Enter")
        page.wait_for_function("document.querySelectorAll('figure.result').length > 0")
        assert page.locator("figure.result").count() == 12
        # every poster decodes in the browser (the placeholder too, if a test above broke a video), but the one
        # that a test above swapped for a symlink out of the folder (refused)
        escape = served["engine"].store.item_by_path(str(served["folder"] / "escape.mp4")).id
        page.wait_for_function(f"[...document.querySelectorAll('figure.result')].filter(f => f.dataset.id != '{escape}')"
                               ".map(f => f.querySelector('img')).every(i => i.complete && i.naturalWidth > 0)")
        shown = page.eval_on_selector_all("figure.result", """els => els.map(e => [e.dataset.id,
            (e.querySelector('.moment') || {}).textContent || '', (e.querySelector('a.play') || {}).href || ''])""")
        for item_id, text, href in shown:
            r = expected[int(item_id)]
            if r["moment"]["seconds"] is None:
                assert text == f"best at frame {r['moment']['frame']}" and href == ""
            else:
                said = float(text.removeprefix("best at ").split(" s")[0])  # to a tenth of a second
                assert abs(said - r["moment"]["seconds"]) <= 0.05 + 1e-9 and href == base + r["play"]
        # click the event video's poster: it plays from its best moment, in the second half
        event_id = next(i for i, r in expected.items() if r["path"].endswith("/" + name))
        page.locator(f"figure.result[data-id='{event_id}'] img").click()
        page.wait_for_function("document.querySelector('#viewer').open && document.querySelector('#clip').readyState >= 1")
        assert page.eval_on_selector("#clip", "v => v.currentTime") == pytest.approx(expected[event_id]["moment"]["seconds"], abs=0.15)
        assert page.eval_on_selector("#clip", "v => v.currentTime") >= 1.0
        browser.close()


def test_clipworks_serve_detects_a_video_store(served, tmp_path):
    """The command itself: `clipworks serve --store VSTORE` opens it with its video model, says it serves videos,
    and answers with moments and posters (the store records `video:MODEL` as its model)."""
    code = "import sys; from clipworks.cli.main import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--store", str(served["store"]), "--port", "0",
                             "--device", "cpu"], stdout=open(out, "w"), stderr=open(err, "w"), env=env)
    try:
        for _ in range(1800):  # a loaded 2-core machine can take a minute to import and load the model
            url = next((w for w in out.read_text().split() if w.startswith("http://")), None)
            if url:
                break
            assert proc.poll() is None, err.read_text()
            time.sleep(0.1)
        assert url and "(12 videos)" in out.read_text()
        stats = json.loads(_get(url + "api/stats")[1])
        assert stats["kind"] == "videos" and stats["model"] == "video:default"
        results = _search(url.rstrip("/"), "a shape", k=3)
        assert len(results) == 3 and all(r["moment"] and r["thumb"] for r in results)
        first = next(r for r in results if Path(r["path"]).name not in ("broken.mp4", "escape.mp4"))
        status, body, _ = _get(url + first["thumb"].lstrip("/"))
        assert status == 200 and Image.open(io.BytesIO(body)).size == (64, 64)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
