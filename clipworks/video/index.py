"""Text->video search over a folder of videos, in the same SQLite store as image search: each video is one
item whose embedding is its video embedding (meanP over sampled frames for a plain CLIP model, or a trained
video model's). The walk and the embedding of videos; re-runs embed only new or changed videos, as image
indexing does (`search/incremental.py`); unreadable ones are skipped and listed. A video's caption is the first
line of its same-name .txt (`video.data.caption_file`). Each video's sampled frames are kept too, with their
times and own embeddings (the store's moments): a query's best-matching moment is the frame that matches it best."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clipworks.errors import ConfigError, InputFileError
from clipworks.search.incremental import Entry, IndexReport, Media, file_sha256, sidecar_stamp, sync
from clipworks.search.store import Moments, Store
from clipworks.video.data import caption_file, captions_of, list_videos
from clipworks.video.decode import read_video

MODEL_PREFIX = "video:"


def walk(root: str) -> Iterator[Entry]:
    """Video files and frame folders under `root`; a frame folder's size and mtime are its frames' sum and latest."""
    for path in list_videos(root):
        try:
            files = [path] if path.is_file() else sorted(f for f in path.iterdir() if f.is_file())
            stats = [f.stat() for f in files]
        except OSError:
            continue
        yield Entry(str(path), root, str(path.parent), path.suffix.lower().lstrip(".") if path.is_file() else "frames",
                    sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=0.0),
                    lambda path=path, files=files: (file_sha256(*files), path),
                    lambda path=path: {"caption": next(iter(captions_of(path)), None)}, sidecar_stamp([caption_file(path)]))


def index_videos(roots: Sequence[str | Path], store_dir: str | Path, model: str = "default", batch_size: int = 16,
                 device: str | None = None, progress: bool = True, net=None) -> IndexReport:
    """Bring the video store in `store_dir` up to date with the videos under `roots`; returns what changed.
    `model`: a CLIP model (name or path; meanP over frames) or a trained video model directory (`net`: that model,
    already loaded). Under `torchrun`, the ranks share the embedding (see `search/incremental.py`)."""
    from clipworks.video.model import preprocess_frames, video_model

    net = net if net is not None else video_model(model, device=device)
    if not net.has_video_embedding:
        raise ConfigError(f"{model}: a tightTransf model scores (text, video) pairs jointly and has no video "
                          "embedding to index; index with a meanP or seqTransf model")
    size = net.clip.config.vision.image_size

    def prepare(entry: Entry, path: Path) -> tuple[Any, dict[str, Any]]:
        video = read_video(path, net.config.num_frames, size=(size, size))
        return video, {"width": int(video.frames.shape[2]), "height": int(video.frames.shape[1]),
                       "extra": {"frames": video.source_frames, "fps": video.fps}}

    def embed(videos: list[Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        frames = np.stack([v.frames for v in videos])
        mask = torch.from_numpy(np.stack([v.mask for v in videos]))
        with torch.no_grad():
            feats = net.encode_frames(preprocess_frames(net, frames))
            pooled = net.encode_video(feats, mask.to(feats.device)).float().cpu().numpy()
        # each frame's own embedding, computed on the way to the pooled one: the video's moments, for free
        per_frame = F.normalize(feats.float(), dim=-1).cpu().numpy()
        return pooled, [{"moments": Moments(v.indices, v.seconds(), per_frame[b, v.mask])} for b, v in enumerate(videos)]

    return sync(roots, store_dir, Media("videos", walk, prepare, embed, batch_size, moments=True),
                MODEL_PREFIX + model, net.clip.config.embed_dim, progress=progress)


def is_video_store(store_dir: str | Path) -> bool:
    """Whether the store in `store_dir` was made by `clipworks video index` (its model is recorded as video:NAME)."""
    store = Store(store_dir, create=False)
    try:
        return (store.get_meta("model") or "").startswith(MODEL_PREFIX)
    finally:
        store.close()


def video_engine(store_dir: str | Path, device: str | None = None, net=None):
    """A video store opened for queries (a search `SearchEngine`): text is embedded by the store's video model
    (`net`: that model, already loaded) and thumbnails are the videos' poster frames."""
    from clipworks.model.factory import get_tokenizer
    from clipworks.search.engine import SearchEngine
    from clipworks.video.decode import poster_frame
    from clipworks.video.model import video_model

    if not is_video_store(store_dir):
        raise InputFileError(f"{store_dir}: not a video store (made by `clipworks index`; use `clipworks search`)")
    store = Store(store_dir, create=False)
    bound = (store.get_meta("model") or "").removeprefix(MODEL_PREFIX)
    store.close()
    net = net if net is not None else video_model(bound, device=device)
    return SearchEngine(store_dir, model=net, tokenizer=get_tokenizer(net.clip), poster=poster_frame)


def search_videos(store_dir: str | Path, text: str, k: int = 10, device: str | None = None):
    """The `k` videos of a video store best matching `text`, best first (search `Hit`s, with the best moment)."""
    engine = video_engine(store_dir, device=device)
    return engine.search(engine.embed_text(text), k=k, collapse=None)
