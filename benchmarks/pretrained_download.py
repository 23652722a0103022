"""What a checked download and a checked load cost: clipworks.io.download from a loopback HTTP server (chunked
write, fsync, SHA-256 of the whole file, rename) and sha256_file alone (what every later load of a cached tag
pays before reading the weights). The file is seeded random bytes of --mb MiB (ViT-B/32's OpenAI file is
338 MiB, ViT-L/14's 890 MiB). Prints figures only; it asserts nothing about time.

    python benchmarks/pretrained_download.py --mb 256 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from clipworks.io import download, sha256_file


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="file size in MiB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "serve").mkdir()
        source = root / "serve" / "weights.pt"
        source.write_bytes(np.random.default_rng(0).bytes(args.mb << 20))
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root / "serve")))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/weights.pt"
        t, c = time.perf_counter(), time.process_time()
        expected = sha256_file(source)
        hash_s, hash_cpu = time.perf_counter() - t, time.process_time() - c
        downloads, cpu = [], []
        for i in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            download(url, root / f"copy{i}.pt", expected, progress=False)
            downloads.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            (root / f"copy{i}.pt").unlink()
        server.shutdown()
        best = min(downloads)
        # CPU seconds as well as wall seconds: on a shared machine the wall figure mostly measures the others.
        print(f"file {args.mb} MiB; sha256 alone {hash_s:.2f} s wall, {hash_cpu:.2f} s CPU "
              f"({args.mb / max(hash_cpu, 1e-9):.0f} MiB per CPU second)")
        print(f"loopback download + fsync + sha256 + rename (server in this process): best of {args.repeats} "
              f"{best:.2f} s wall ({args.mb / best:.0f} MiB/s), {min(cpu):.2f} s CPU; "
              f"all: {', '.join(f'{d:.2f}' for d in downloads)} s")


if __name__ == "__main__":
    main()
