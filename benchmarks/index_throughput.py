"""Index build rate and peak memory: `clipworks index` vs a plain embed-and-save loop on the same files.

    python benchmarks/index_throughput.py --images 50000 --folder /tmp/world50k

Writes the generated world's images to --folder once (reused if it already holds enough), then runs, each in
its own process so peak RSS is its own: (1) `clipworks index` into a fresh store (hashing, metadata,
transactions, skipping); (2) a plain baseline that decodes, preprocesses and embeds the same files in the
same batches and saves one .npy at the end (what a throwaway script does, with nothing incremental or
crash-safe). Prints images/s and peak RSS side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = r"""
import sys, numpy as np, torch
from pathlib import Path
import clipworks
from clipworks.model.transforms import load_image
folder, out, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
model, pre = clipworks.create_model("default", device="cpu")
files = sorted(p for p in folder.rglob("*.png"))
chunks = []
with torch.inference_mode():
    for i in range(0, len(files), batch):
        pixels = torch.stack([pre(load_image(f)) for f in files[i:i + batch]])
        chunks.append(model.encode_image(pixels, normalize=True).numpy())
np.save(out, np.concatenate(chunks))
"""


PEAK = "import atexit, resource, sys; atexit.register(lambda: print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"


def _run(code: str, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and the child's own peak RSS (MiB), which it reports at exit."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK + code, *argv], env=env, check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    kib = int(done.stderr.rsplit("PEAK_KIB", 1)[1].split()[0])
    return seconds, kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "clipworks-world-bench")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    images = args.folder / "images"
    if not images.is_dir() or sum(1 for _ in images.glob("*.png")) < args.images:
        from clipworks.data.world import write_world

        shutil.rmtree(args.folder, ignore_errors=True)
        write_world(args.folder, size=args.images, seed=123, split="all")
    n = sum(1 for _ in images.glob("*.png"))
    work = Path(tempfile.mkdtemp(prefix="clipworks-bench-"))
    try:
        base_s, base_rss = _run(BASELINE, [str(images), str(work / "emb.npy"), str(args.batch_size)], env)
        cli = "import sys; from clipworks.cli.main import main; sys.exit(main(sys.argv[1:]))"
        ours_s, ours_rss = _run(cli, ["index", str(args.folder), "--store", str(work / "store"), "--batch-size",
                                      str(args.batch_size)], env)
        store_mb = sum(f.stat().st_size for f in (work / "store").iterdir()) / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{n} images of 64 px, batch {args.batch_size}, model default, {os.cpu_count()} CPUs")
    print(f"{'':28s}{'seconds':>10s}{'images/s':>10s}{'peak RSS MiB':>14s}")
    print(f"{'plain embed-and-save loop':28s}{base_s:10.1f}{n / base_s:10.1f}{base_rss:14.0f}")
    print(f"{'clipworks index':28s}{ours_s:10.1f}{n / ours_s:10.1f}{ours_rss:14.0f}  (store {store_mb:.0f} MiB)")
    print(f"ratio (clipworks / plain): {base_s / ours_s:.2f}x the rate")


if __name__ == "__main__":
    main()
