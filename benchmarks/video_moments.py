"""What a video's best-matching moment costs: kept at index time (each sampled frame's embedding, computed on the
way to the pooled one, stored in the store's moments table) against computed at query time (decode the page's
videos and embed their frames again, for every query).

Writes N generated world clips (upscaled to --side px and repeated to --seconds long, so decoding costs what a
small real video costs), indexes them twice with the shipped video model (with moments, as `clipworks video
index` does, and with them dropped, as before), then times text queries of one page (`-k`) both ways. Prints
figures only; it asserts nothing about time.

    nice -n 19 python benchmarks/video_moments.py --n 48 --side 256 --seconds 8 -k 24
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import clipworks.video.index as video_index
from clipworks.search.store import STORE_FILE
from clipworks.video.decode import read_video, write_video
from clipworks.video.index import index_videos, video_engine
from clipworks.video.model import preprocess_frames, video_model
from clipworks.video.world import VideoWorld

QUERIES = ["a red circle", "a blue square moves left", "a green triangle grows", "a yellow star rotates",
           "a purple heart bounces", "an orange square moves right"]


def write_clips(folder: Path, n: int, side: int, seconds: float, fps: float = 8.0) -> None:
    world = VideoWorld(n, seed=3, split="train", num_frames=8, group=1)
    repeat = max(1, round(seconds * fps / 8))
    for i in range(n):
        frames = np.concatenate([world[i].frames] * repeat)
        frames = np.stack([np.asarray(Image.fromarray(f).resize((side, side), Image.Resampling.BICUBIC)) for f in frames])
        write_video(folder / f"{i:04d}.mp4", frames, fps=fps)


def index_without_moments(folders: list[str], store: Path, net) -> float:
    """Index as before moments: the same embedding pass, the pooled embedding only."""
    real = video_index.sync

    def sync(roots, store_dir, media, *args, **kwargs):
        def embed(videos):
            return media.embed(videos)[0]
        return real(roots, store_dir, type(media)(media.unit, media.walk, media.prepare, embed, media.batch), *args, **kwargs)

    video_index.sync = sync
    try:
        start = time.perf_counter()
        index_videos(folders, store, net=net, progress=False)
        return time.perf_counter() - start
    finally:
        video_index.sync = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=48, help="videos")
    parser.add_argument("--side", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each video")
    parser.add_argument("-k", type=int, default=24, help="results per page (the server page's default)")
    args = parser.parse_args()
    net = video_model("default", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "v").mkdir()
        write_clips(tmp / "v", args.n, args.side, args.seconds)
        start = time.perf_counter()
        index_videos([str(tmp / "v")], tmp / "with", net=net, progress=False)
        with_s = time.perf_counter() - start
        without_s = index_without_moments([str(tmp / "v")], tmp / "without", net)
        size = {name: (tmp / name / STORE_FILE).stat().st_size for name in ("with", "without")}
        with sqlite3.connect(tmp / "with" / STORE_FILE) as db:
            rows = db.execute("SELECT COUNT(*) FROM moments").fetchone()[0]
        print(f"{args.n} videos of {args.seconds:g} s at {args.side}x{args.side}, {net.config.num_frames} frames sampled; "
              f"torch threads {torch.get_num_threads()}")
        print(f"index: {with_s:.1f} s with moments, {without_s:.1f} s without ({args.n / with_s:.2f} vs "
              f"{args.n / without_s:.2f} videos/s); store {size['with'] / 1024:.0f} KiB vs {size['without'] / 1024:.0f} KiB "
              f"({(size['with'] - size['without']) / args.n / 1024:.1f} KiB per video, {rows} moments)")

        engine = video_engine(tmp / "with", net=net)
        engine.search(engine.embed_text(QUERIES[0]), k=args.k)  # the index is built
        times, query_times, same, total = [], [], 0, 0
        size_px = net.clip.config.vision.image_size
        for q in QUERIES:
            start = time.perf_counter()
            query = engine.embed_text(q)
            hits = engine.search(query, k=args.k)
            times.append(time.perf_counter() - start)
            # the alternative: each hit's frames decoded and embedded again, now
            start = time.perf_counter()
            for hit in hits:
                video = read_video(hit.item.path, net.config.num_frames, size=(size_px, size_px))
                with torch.no_grad():
                    feats = net.encode_frames(preprocess_frames(net, video.frames[None]))[0]
                best = int(torch.argmax(F.normalize(feats, dim=-1)[torch.from_numpy(video.mask)] @ torch.from_numpy(query)))
                same += int(video.indices[best]) == hit.moment.frame  # the same moment either way
                total += 1
            query_times.append(time.perf_counter() - start)
        print(f"text query, page of {args.k}: {np.median(times) * 1000:.0f} ms median with stored moments "
              f"(embedding the text, ranking and the moments); computing the moments at query time adds "
              f"{np.median(query_times):.2f} s median ({np.median(query_times) / args.k * 1000:.0f} ms per video); "
              f"the same moment both ways for {same} of {total} hits")


if __name__ == "__main__":
    main()
