"""Text->video search over a folder of videos, in the same SQLite store as image search: each video is one
item whose embedding is its video embedding (meanP over sampled frames for a plain CLIP model, or a trained
video model's). Re-runs embed only new or changed videos; unreadable ones are skipped and listed."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipworks.errors import ConfigError, InputFileError
from clipworks.search.indexer import IndexReport
from clipworks.search.store import Store
from clipworks.video.data import captions_of, list_videos
from clipworks.video.decode import read_video

MODEL_PREFIX = "video:"


def _fingerprint(path: Path) -> tuple[int, float, str]:
    """(size, mtime, sha256) of a video file, or of a frame folder's listing (names, sizes, mtimes)."""
    if path.is_file():
        stat = path.stat()
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return stat.st_size, stat.st_mtime, digest.hexdigest()
    files = sorted(f for f in path.iterdir() if f.is_file())
    listing = "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return sum(f.stat().st_size for f in files), max((f.stat().st_mtime for f in files), default=0.0), \
        hashlib.sha256(listing.encode()).hexdigest()


def index_videos(roots: Sequence[str | Path], store_dir: str | Path, model: str = "default", batch_size: int = 16,
                 device: str | None = None, progress: bool = True) -> IndexReport:
    """Bring the video store in `store_dir` up to date with the videos under `roots`; returns what changed.
    `model`: a CLIP model (name or path; meanP over frames) or a trained video model directory."""
    from tqdm import tqdm

    from clipworks.video.model import preprocess_frames, video_model

    start = time.perf_counter()
    net = video_model(model, device=device)
    if not net.has_video_embedding:
        raise ConfigError(f"{model}: a tightTransf model scores (text, video) pairs jointly and has no video "
                          "embedding to index; index with a meanP or seqTransf model")
    store = Store(store_dir)
    store.bind_model(MODEL_PREFIX + model, net.clip.config.embed_dim)
    report = IndexReport(unit="videos")
    size = net.clip.config.vision.image_size
    try:
        for root in roots:
            root_key = str(Path(root).expanduser().resolve())
            known = store.known(root_key)
            videos = list_videos(root_key)
            seen = {str(p) for p in videos}
            pending: list[tuple[dict[str, Any], Any]] = []
            skipped: list[dict[str, Any]] = []

            def flush() -> None:
                rows = []
                if pending:
                    frames = np.stack([v.frames for _, v in pending])
                    mask = torch.from_numpy(np.stack([v.mask for _, v in pending]))
                    with torch.no_grad():
                        feats = net.encode_frames(preprocess_frames(net, frames))
                        emb = net.encode_video(feats, mask.to(feats.device)).float().cpu().numpy()
                    for (row, _), vec in zip(pending, emb):
                        rows.append({**row, "embedding": vec})
                        report.updated += row["path"] in known
                        report.added += row["path"] not in known
                store.put(rows, skipped)
                report.skipped.extend((s["path"], s["reason"]) for s in skipped)
                pending.clear()
                skipped.clear()

            for path in tqdm(videos, desc="indexing videos", unit="video", disable=not progress):
                key = str(path)
                try:
                    nbytes, mtime, sha = _fingerprint(path)
                except OSError as exc:
                    skipped.append({"path": key, "root": root_key, "size": 0, "mtime": 0.0,
                                    "reason": f"cannot read ({exc.strerror or exc})"})
                    continue
                before = known.get(key)
                if before is not None and before[0] == nbytes and before[1] == mtime:
                    report.unchanged += 1
                    if before[2] is None:
                        report.skipped.append((key, "unchanged since it was skipped"))
                    continue
                try:
                    video = read_video(path, net.config.num_frames, size=(size, size))
                except InputFileError as exc:
                    skipped.append({"path": key, "root": root_key, "size": nbytes, "mtime": mtime,
                                    "reason": str(exc).removeprefix(f"{key}: ")})
                    continue
                row = {"path": key, "root": root_key, "folder": str(path.parent), "ext": path.suffix.lower().lstrip(".") or "frames",
                       "size": nbytes, "mtime": mtime, "sha256": sha, "width": int(video.frames.shape[2]),
                       "height": int(video.frames.shape[1]), "caption": next(iter(captions_of(path)), None),
                       "extra": {"frames": video.source_frames, "fps": video.fps}}
                pending.append((row, video))
                if len(pending) >= batch_size:
                    flush()
            flush()
            removed = [p for p in known if p not in seen]
            if removed:
                store.put([], removed=removed)
                report.removed += len(removed)
    finally:
        store.close()
    report.seconds = time.perf_counter() - start
    return report


def search_videos(store_dir: str | Path, text: str, k: int = 10, device: str | None = None):
    """The `k` videos of a video store best matching `text`, best first (search `Hit`s)."""
    from clipworks.model.factory import get_tokenizer
    from clipworks.search.engine import SearchEngine
    from clipworks.video.model import video_model

    store = Store(store_dir, create=False)
    bound = store.get_meta("model") or ""
    store.close()
    if not bound.startswith(MODEL_PREFIX):
        raise InputFileError(f"{store_dir}: not a video store (made by `clipworks index`; use `clipworks search`)")
    net = video_model(bound.removeprefix(MODEL_PREFIX), device=device)
    engine = SearchEngine(store_dir, model=net, tokenizer=get_tokenizer(net.clip))
    return engine.search(engine.embed_text(text), k=k, collapse=None)
