"""Video decoding speed: clips of the generated video world written in each container, then read back as T
uniformly sampled frames cold (PyAV decode), from the frame cache, and, for comparison, decoding every frame
with PyAV directly.

    python benchmarks/video_decode.py --clips 50 --frames 96 --size 128
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--frames", type=int, default=96, help="frames per written clip")
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels")
    parser.add_argument("--sample", type=int, default=8, help="frames sampled per read")
    parser.add_argument("--formats", default="mp4,webm,avi,mkv")
    args = parser.parse_args()

    import av

    from clipworks.video.decode import read_video, write_video
    from clipworks.video.world import VideoWorld

    world = VideoWorld(5, num_frames=args.frames, image_size=args.size, group=1)
    sources = [world[i].frames for i in range(5)]
    print(f"{args.clips} clips of {args.frames} frames at {args.size} px; reading {args.sample} frames each")
    print(f"{'format':7} {'write clips/s':>13} {'read clips/s':>12} {'cached clips/s':>14} {'decode-all clips/s':>18} {'MB':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for fmt in args.formats.split(","):
            paths = []
            t0 = time.perf_counter()
            for i in range(args.clips):
                paths.append(write_video(root / fmt / f"{i:04d}.{fmt}", sources[i % len(sources)], fps=24))
            write = args.clips / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for p in paths:
                read_video(p, args.sample, cache_dir=root / f"cache-{fmt}")
            cold = args.clips / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for p in paths:
                read_video(p, args.sample, cache_dir=root / f"cache-{fmt}")
            cached = args.clips / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for p in paths:
                with av.open(str(p)) as container:
                    for frame in container.decode(video=0):
                        frame.to_ndarray(format="rgb24")
            full = args.clips / (time.perf_counter() - t0)
            mb = sum(p.stat().st_size for p in paths) / 2**20
            print(f"{fmt:7} {write:13.1f} {cold:12.1f} {cached:14.1f} {full:18.1f} {mb:6.1f}")


if __name__ == "__main__":
    main()
