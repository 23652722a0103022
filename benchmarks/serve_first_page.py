"""Time to the first page of results with its thumbnails, through a real `clipworks serve` on loopback.

The store holds N items: seeded random unit vectors (the shipped default model's dimension) with metadata rows
inserted directly, whose files are hard links to a handful of real images (photo-sized JPEGs, a TIFF, a 16-bit
PNG, a CMYK JPEG, an RGBA PNG), so every result has a real file to thumbnail. For each text query the client
asks for one page (`k` results) and then fetches its thumbnails over 6 keep-alive connections, as a browser
does. "cold": the first time each page is shown (its thumbnails are made); "warm": the same queries again (the
thumbnails come from the cache). Prints figures only; it asserts nothing about time.

    nice -n 19 python benchmarks/serve_first_page.py --n 100000 --queries 10
    python benchmarks/serve_first_page.py --n 5000 --ahead      # thumbnails made ahead: every page is "cold" no more
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from _serving import start_server  # benchmarks/ is the script's folder, so on sys.path
from clipworks.model.factory import shipped_model_path
from clipworks.search.store import Store

QUERIES = ["a red star", "a blue circle", "two green squares", "a yellow triangle on the left", "a purple heart",
           "an orange square above a white circle", "a pink star", "a small black circle", "a large grey square",
           "three blue triangles", "a red circle next to a green star", "a white heart"]

SERVE_CLI = "import sys; from clipworks.cli.main import main; sys.exit(main(sys.argv[1:]))"  # `clipworks ARGS`


def _photo(size: tuple[int, int], seed: int) -> Image.Image:
    """A smooth random picture (compresses like a photo, not like a flat colour)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 64 + 1, size[0] // 64 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def write_sources(folder: Path) -> list[tuple[Path, int, int]]:
    """The real image files every item links to: (path, width, height)."""
    folder.mkdir(parents=True)
    out = []
    for i, size in enumerate([(4000, 3000), (3000, 4000), (1920, 1080), (1024, 768)]):
        path = folder / f"photo{i}.jpg"
        _photo(size, i).save(path, quality=88)
        out.append((path, *size))
    _photo((1200, 800), 10).save(folder / "scan.tif")
    ramp = (np.asarray(_photo((800, 600), 11).convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(ramp).save(folder / "depth16.png")
    _photo((1600, 1200), 12).convert("CMYK").save(folder / "print.jpg", quality=90)
    rgba = _photo((800, 800), 13).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "cutout.png")
    for name in ("scan.tif", "depth16.png", "print.jpg", "cutout.png"):
        with Image.open(folder / name) as im:
            out.append((folder / name, *im.size))
    return out


def build_store(tmp: Path, n: int, seed: int) -> Path:
    """A store of n items (random vectors, real files by hard link), written in batches of 10,000."""
    dim = json.loads((shipped_model_path("default") / "clipworks_config.json").read_text())["model"]["embed_dim"]
    sources = write_sources(tmp / "sources")
    root = tmp / "root"
    store = Store(tmp / "store")
    store.bind_model("default", dim)
    rng = np.random.default_rng(seed)
    for start in range(0, n, 10_000):
        rows = []
        vectors = rng.standard_normal((min(10_000, n - start), dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        folder = root / f"{start // 10_000:03d}"
        folder.mkdir(parents=True)
        for j, vector in enumerate(vectors):
            source, width, height = sources[(start + j) % len(sources)]
            path = folder / f"{start + j:07d}{source.suffix}"
            os.link(source, path)
            st = path.stat()
            rows.append({"path": str(path), "root": str(root), "folder": str(folder), "ext": source.suffix[1:],
                         "size": st.st_size, "mtime": st.st_mtime, "width": width, "height": height,
                         "sha256": hashlib.sha256(path.name.encode()).hexdigest(), "embedding": vector})
        store.put(rows)
    store.close()
    return tmp / "store"


class Client:
    """Keep-alive connections to the server, one per fetching thread (a browser opens 6 per host)."""

    def __init__(self, base: str, connections: int = 6) -> None:
        parts = urllib.parse.urlsplit(base)
        self.conns = [http.client.HTTPConnection(parts.hostname, parts.port, timeout=120) for _ in range(connections)]
        self.pool = ThreadPoolExecutor(connections)

    def get(self, path: str, conn: int = 0) -> bytes:
        c = self.conns[conn]
        try:
            c.request("GET", path)
            response = c.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):  # the server closed an idle keep-alive connection
            c.close()
            c.request("GET", path)
            response = c.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"{path}: HTTP {response.status}: {body[:200]!r}")
        return body

    def first_page(self, query: str, k: int) -> tuple[float, float, int]:
        """(seconds to the results, seconds to the results and every thumbnail, thumbnail bytes)."""
        start = time.perf_counter()
        page = json.loads(self.get("/api/search?" + urllib.parse.urlencode({"q": query, "k": k})))
        results = time.perf_counter() - start
        thumbs = [r["thumb"] for r in page["results"]]
        n = len(self.conns)
        sizes = self.pool.map(lambda c: sum(len(self.get(t, c)) for t in thumbs[c::n]), range(n))
        total = sum(sizes)
        return results, time.perf_counter() - start, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="items in the store")
    parser.add_argument("--queries", type=int, default=10, help=f"text queries (at most {len(QUERIES)})")
    parser.add_argument("--k", type=int, default=24, help="results in the first page (the page asks for 24)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ahead", action="store_true",
                        help="make every thumbnail before serving, as `clipworks index --thumbs` does, and time it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve-first-page-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        store = build_store(tmp, args.n, args.seed)
        print(f"store of {args.n} items built in {time.perf_counter() - t0:.1f} s", flush=True)
        if args.ahead:
            from clipworks.search.thumbs import make_all

            t0 = time.perf_counter()
            report = make_all(store, progress=False)
            seconds = time.perf_counter() - t0
            print(f"ahead: {report.summary()} in {seconds:.1f} s ({report.made / seconds:.0f} thumbnails/s, "
                  f"2 threads)", flush=True)
        t0 = time.perf_counter()
        proc, base = start_server(SERVE_CLI, ["serve", "--store", str(store), "--port", "0"], tmp / "serve.log")
        try:
            client = Client(base)
            stats = json.loads(client.get("/api/stats"))
            print(f"server up in {time.perf_counter() - t0:.1f} s (model load and {stats['index']['kind']} index of "
                  f"{stats['index']['vectors']} vectors)")
            client.first_page("warm-up query", args.k)  # the first text embedding pays one-off costs
            queries = QUERIES[:args.queries]
            for label in ("cold", "warm"):
                figures = [client.first_page(q, args.k) for q in queries]
                search_ms = np.array([f[0] for f in figures]) * 1e3
                page_ms = np.array([f[1] for f in figures]) * 1e3
                kb = np.mean([f[2] for f in figures]) / 1024
                print(f"{label}: results p50 {np.median(search_ms):.0f} ms; results + {args.k} thumbnails "
                      f"p50 {np.median(page_ms):.0f} ms, max {page_ms.max():.0f} ms ({kb:.0f} KB of thumbnails a page)")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
