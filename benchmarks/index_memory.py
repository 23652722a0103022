"""Peak memory of `clipworks index` on phone-sized photos (4000×3000 JPEG) at the default batch size.

    python benchmarks/index_memory.py                      # 100 photos, batch 64, the default model
    python benchmarks/index_memory.py --folder /tmp/phone  # keep the generated photos for the next run

Generates the photos once (smooth random colour fields with fine grain, so they compress like real photos:
a few MB each), then runs `clipworks index` into a fresh store in a child process and prints its peak RSS
(getrusage of the child). Target: under 1.5 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_photos(folder: Path, count: int, width: int, height: int, seed: int = 0) -> None:
    """`count` distinct JPEGs of width×height: a bicubic-upsampled random field plus grain."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    grain = rng.normal(0, 6, size=(height, width, 1)).astype(np.int16)  # shared grain: generation stays fast
    for i in range(count):
        path = folder / f"photo_{i:04d}.jpg"
        if path.exists():
            continue
        field = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
        pixels = np.clip(np.asarray(field, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="default")
    parser.add_argument("--folder", type=Path, help="where the photos go (reused); default a temporary folder")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="clipworks-index-memory-"))
    folder = args.folder or work / "photos"
    try:
        start = time.perf_counter()
        write_photos(folder, args.images, width, height)
        mb = sum(p.stat().st_size for p in folder.glob("*.jpg")) / 2**20
        print(f"{args.images} photos of {width}x{height} ({mb:.0f} MiB of JPEG) ready in {time.perf_counter() - start:.0f} s")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "clipworks.cli.main", "index", str(folder), "--store", str(work / "store"),
                        "--batch-size", str(args.batch_size), "--model", args.model],
                       check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        seconds = time.perf_counter() - start
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        print(f"clipworks index, batch {args.batch_size}, model {args.model}: {seconds:.1f} s, "
              f"peak RSS {peak_mib:.0f} MiB ({'under' if peak_mib < 1536 else 'OVER'} the 1.5 GiB target)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
