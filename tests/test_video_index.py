"""Video indexing behaves like image indexing (one incremental indexer, `search/incremental.py`): an unchanged
video is not read again, a touched one is not embedded again, a symlink out of the folder is refused, a caption
edit is picked up without embedding, a second indexer waits for the first, and torchrun ranks share the work."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clipworks.video.index as video_index
from clipworks.search.store import STORE_FILE, Store, indexing_lock
from clipworks.video.decode import read_video, write_video
from clipworks.video.index import index_videos
from clipworks.video.model import preprocess_frames, video_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def net():
    return video_model("default", device="cpu")


def _clip(seed: int) -> np.ndarray:
    """8 frames of 32 px: a square of a seed's colour moving right."""
    frames = np.full((8, 32, 32, 3), 30, np.uint8)
    colour = np.random.default_rng(seed).integers(60, 255, 3)
    for i in range(8):
        frames[i, 8:20, 2 * i:2 * i + 12] = colour
    return frames


def _library(folder: Path, count: int = 3) -> list[Path]:
    """`count` small .mp4 files and one frame folder."""
    videos = [write_video(folder / f"{k}.mp4", _clip(k)) for k in range(count)]
    frames = folder / "frames_clip"
    frames.mkdir()
    for i, frame in enumerate(_clip(99)):
        Image.fromarray(frame).save(frames / f"{i:03d}.png")
    return [*videos, frames]


def _index(folder: Path, store_dir: Path, net):
    return index_videos([str(folder)], store_dir, net=net, progress=False)


def _counts(report) -> tuple[int, int, int, int, int]:
    return report.added, report.updated, report.unchanged, report.refreshed, report.removed


def _rows(store_dir: Path) -> dict[str, tuple[str, bytes, str | None, str | None]]:
    """path -> (sha256, embedding, caption, extra)."""
    with sqlite3.connect(store_dir / STORE_FILE) as db:
        return {r[0]: r[1:] for r in db.execute("SELECT path, sha256, embedding, caption, extra FROM items")}


@pytest.fixture
def hashed(monkeypatch) -> list[tuple[str, ...]]:
    """The files each content hash reads, as they are hashed (the real hash still runs)."""
    calls = []
    real = video_index.file_sha256

    def counting(*paths):
        calls.append(tuple(Path(p).name for p in paths))
        return real(*paths)

    monkeypatch.setattr(video_index, "file_sha256", counting)
    return calls


def test_a_re_index_reads_no_unchanged_video_and_hashes_only_what_changed(tmp_path, net, hashed):
    videos = _library(tmp_path / "v")
    store_dir = tmp_path / "store"
    assert _counts(_index(tmp_path / "v", store_dir, net)) == (4, 0, 0, 0, 0)
    assert len(hashed) == 4 and len(hashed[-1]) == 8  # a frame folder's hash covers its 8 frames
    hashed.clear()
    assert _counts(_index(tmp_path / "v", store_dir, net)) == (0, 0, 4, 0, 0)
    assert hashed == []  # nothing was read: size and mtime were enough
    before = _rows(store_dir)
    write_video(videos[1], _clip(7))  # new content
    r = _index(tmp_path / "v", store_dir, net)
    assert _counts(r) == (0, 1, 3, 0, 0) and hashed == [("1.mp4",)]
    after = _rows(store_dir)
    assert after[str(videos[1])][:2] != before[str(videos[1])][:2]
    assert all(after[str(p)] == before[str(p)] for p in (videos[0], videos[2], videos[3]))
    videos[0].unlink()
    assert _counts(_index(tmp_path / "v", store_dir, net)) == (0, 0, 3, 0, 1)


def _moments(store_dir: Path) -> dict[str, list[tuple[int, float | None]]]:
    """path -> [(frame, seconds)] of its moments, in frame order."""
    with sqlite3.connect(store_dir / STORE_FILE) as db:
        out: dict[str, list] = {}
        for path, frame, seconds in db.execute("SELECT path, frame, seconds FROM moments JOIN items ON items.id = item_id"
                                               " ORDER BY path, frame"):
            out.setdefault(path, []).append((frame, seconds))
        return out


def test_each_video_keeps_its_frames_moments_and_a_store_from_before_them_gets_them_on_re_index(tmp_path, net):
    videos = _library(tmp_path / "v")
    write_video(videos[2], np.concatenate([_clip(2), _clip(3)]), fps=4.0)  # 16 frames at 4 fps: 4 s
    store_dir = tmp_path / "store"
    _index(tmp_path / "v", store_dir, net)
    moments = _moments(store_dir)
    # the 8 sampled frames: each the centre of an equal segment, at its own time (8 fps, as write_video's default)
    assert moments[str(videos[0])] == [(f, f / 8.0) for f in range(8)]
    assert moments[str(videos[2])] == [(f, f / 4.0) for f in range(1, 16, 2)]
    assert moments[str(videos[3])] == [(f, None) for f in range(8)]  # a frame folder has no frame rate
    store = Store(store_dir, create=False)
    ids = {it.path: it.id for it in store.items(store.vectors()[0])}
    got = store.moments(list(ids.values()))
    store.close()
    size = net.clip.config.vision.image_size
    for path in videos:  # each sampled frame's own embedding from the model, unit length
        video = read_video(path, 8, size=(size, size))
        with torch.no_grad():
            frames = net.encode_frames(preprocess_frames(net, video.frames[None]))[0][torch.from_numpy(video.mask)]
        assert np.allclose(got[ids[str(path)]].embeddings, F.normalize(frames, dim=-1).numpy(), atol=1e-5)
    # a store from before moments: read-only, it serves without them; indexed again, every video gets them
    with sqlite3.connect(store_dir / STORE_FILE) as db:
        db.execute("DROP TABLE moments")
    assert Store(store_dir, create=False).moments(list(ids.values())) == {}
    before = _rows(store_dir)
    r = _index(tmp_path / "v", store_dir, net)
    assert _counts(r) == (0, 4, 0, 0, 0) and _moments(store_dir) == moments
    assert _rows(store_dir) == before  # the same embeddings, computed again
    assert _counts(_index(tmp_path / "v", store_dir, net)) == (0, 0, 4, 0, 0)
    # a changed video's moments are replaced, a removed one's go with it
    write_video(videos[0], _clip(5)[:4])
    videos[1].unlink()
    assert _counts(_index(tmp_path / "v", store_dir, net)) == (0, 1, 2, 0, 1)
    after = _moments(store_dir)
    assert after[str(videos[0])] == [(f, f / 8.0) for f in range(4)] and str(videos[1]) not in after
    with sqlite3.connect(store_dir / STORE_FILE) as db:
        assert db.execute("SELECT COUNT(*) FROM moments").fetchone()[0] == 4 + 8 + 8


def test_a_touched_video_or_frame_folder_is_hashed_but_not_embedded_again(tmp_path, net, hashed):
    videos = _library(tmp_path / "v")
    store_dir = tmp_path / "store"
    _index(tmp_path / "v", store_dir, net)
    before = _rows(store_dir)
    hashed.clear()
    later = time.time() + 10
    os.utime(videos[2], (later, later))
    videos[0].write_bytes(videos[0].read_bytes())  # rewritten, same bytes
    os.utime(videos[3] / "004.png", (later, later))
    r = _index(tmp_path / "v", store_dir, net)
    assert _counts(r) == (0, 0, 4, 0, 0)
    assert hashed == [("0.mp4",), ("2.mp4",), tuple(f"{i:03d}.png" for i in range(8))]
    assert _rows(store_dir) == before  # same hashes, same embeddings
    hashed.clear()
    assert _counts(_index(tmp_path / "v", store_dir, net)) == (0, 0, 4, 0, 0) and hashed == []  # new mtimes recorded


def test_a_symlink_out_of_the_folder_is_refused_and_counted(tmp_path, net):
    _library(tmp_path / "v", count=1)
    secret = write_video(tmp_path / "elsewhere" / "secret.mp4", _clip(5))
    (tmp_path / "v" / "escape.mp4").symlink_to(secret)
    (tmp_path / "v" / "alias.mp4").symlink_to(tmp_path / "v" / "0.mp4")  # a link inside the folder is fine
    store_dir = tmp_path / "store"
    r = _index(tmp_path / "v", store_dir, net)
    escape = str((tmp_path / "v").resolve() / "escape.mp4")
    assert _counts(r) == (3, 0, 0, 0, 0)
    assert r.skipped == [(escape, "a symlink to a file outside the indexed folder")] and "skipped 1" in r.summary()
    assert escape not in _rows(store_dir) and len(_rows(store_dir)) == 3
    r = _index(tmp_path / "v", store_dir, net)
    assert r.unchanged == 4 and r.skipped == [(escape, "unchanged since it was skipped")]


def test_a_caption_edit_is_picked_up_without_embedding_again(tmp_path, net):
    videos = _library(tmp_path / "v")
    videos[0].with_suffix(".txt").write_text("a red square slides right\nanother caption\n")
    store_dir = tmp_path / "store"
    _index(tmp_path / "v", store_dir, net)
    first = _rows(store_dir)
    assert first[str(videos[0])][2] == "a red square slides right" and first[str(videos[1])][2] is None
    assert '"frames": 8' in first[str(videos[0])][3]
    later = time.time() + 10
    videos[0].with_suffix(".txt").write_text("an edited caption\n")  # edited
    os.utime(videos[0].with_suffix(".txt"), (later, later))
    (tmp_path / "v" / "frames_clip.txt").write_text("a frame folder's caption")  # added beside the folder
    r = _index(tmp_path / "v", store_dir, net)
    assert _counts(r) == (0, 0, 2, 2, 0) and "captions/metadata refreshed 2" in r.summary()
    second = _rows(store_dir)
    assert second[str(videos[0])][2] == "an edited caption" and second[str(videos[3])][2] == "a frame folder's caption"
    for p in videos:  # same embedding, and what decoding found (frames, fps) is kept
        assert second[str(p)][:2] == first[str(p)][:2] and second[str(p)][3] == first[str(p)][3]
    videos[0].with_suffix(".txt").unlink()  # removed
    r = _index(tmp_path / "v", store_dir, net)
    assert _counts(r) == (0, 0, 3, 1, 0) and _rows(store_dir)[str(videos[0])][2] is None


def test_a_second_indexer_waits_for_the_first_then_finds_everything_unchanged(tmp_path, net, capsys):
    _library(tmp_path / "v")
    store_dir = tmp_path / "store"
    reports = []
    with indexing_lock(store_dir):  # an indexer at work
        threads = [threading.Thread(target=lambda: reports.append(_index(tmp_path / "v", store_dir, net)))
                   for _ in range(2)]
        for t in threads:
            t.start()
        waiting, deadline = "", time.monotonic() + 300
        while waiting.count("waiting for another indexer") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            waiting += capsys.readouterr().err
        assert waiting.count(f"{store_dir}: waiting for another indexer of this store to finish") == 2
        assert not reports and not (store_dir / STORE_FILE).exists()
    for t in threads:
        t.join(timeout=600)
    assert sorted((r.added, r.unchanged) for r in reports) == [(0, 4), (4, 0)]


RANKS = """import sys
import torch.distributed as dist
from clipworks.video.index import index_videos
r = index_videos([sys.argv[1]], sys.argv[2], progress=False)
if dist.get_rank() == 0:
    print("REPORT", r.added, r.updated, r.unchanged, len(r.skipped))
dist.destroy_process_group()
"""


def test_torchrun_ranks_share_the_videos_and_build_the_same_store(tmp_path, net):
    import socket

    _library(tmp_path / "v", count=5)
    (tmp_path / "v" / "broken.mp4").write_bytes(b"\x00" * 300)
    one = _index(tmp_path / "v", tmp_path / "one", net)
    assert _counts(one) == (6, 0, 0, 0, 0) and len(one.skipped) == 1
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", port,
                          str(script), str(tmp_path / "v"), str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=1200)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "REPORT 6 0 0 1" in two.stdout
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) == 6
    for path in a:
        assert a[path][0] == b[path][0]
        assert np.abs(np.frombuffer(a[path][1], np.float32) - np.frombuffer(b[path][1], np.float32)).max() < 1e-5
