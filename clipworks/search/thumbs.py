"""Browser-ready copies of indexed images: small JPEG thumbnails for a results grid, and full-size JPEGs of the
formats browsers cannot show (TIFF), made on first request and cached in the store's `thumbs/` folder. A video
store's thumbnails are its videos' poster frames, made and cached the same way.

Made when first asked for, by default: indexing stays one embedding pass and only the images someone looks at
cost a thumbnail. `make_all` (`clipworks index --thumbs`) makes every missing one ahead, so that no page waits
for one, as photo managers do at import. A cached copy is keyed by the source file as it is now (path, size, mtime), so a file
changed on disk gets a new one even before it is re-indexed. Any format Pillow decodes (16-bit, CMYK, palette,
alpha, EXIF-rotated) goes through `decode_image`, with JPEGs decoded at a reduced scale and a pixel budget
checked from the header before decoding. A store in a folder the server cannot write still serves them, made
on every request.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tarfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clipworks.io import atomic_write
from clipworks.search.store import GONE, Item, inside_roots

if TYPE_CHECKING:
    from PIL import Image

THUMB_SIDE = 256  # longest side of a thumbnail, in pixels
MAX_PIXELS = 40_000_000  # decode budget of an image the server opens (uploads, thumbnail sources): 120 MB as RGB
THUMB_QUALITY = 85
FULL_QUALITY = 92
BROWSER_FORMATS = {"jpg", "jpeg", "png", "webp", "gif", "bmp"}  # shown by every current browser as they are
THUMBS_DIR = "thumbs"
_RECIPE = "1"  # bump when the way copies are made changes, so old cached copies are not served
# one copy made at a time per key: atomic_write's temporary name is per process, not per thread
_LOCKS = [threading.Lock() for _ in range(64)]


def _source_stamp(item: Item, roots: list[str]) -> str:
    """What identifies the source's current content: its path, size and mtime (of the tar for a member)."""
    outer, _, member = item.path.partition("::")
    if not inside_roots(outer, roots):
        raise PermissionError(f"{item.path}: outside the indexed folders")
    try:
        st = os.stat(outer)
    except OSError:
        raise FileNotFoundError(f"{item.path}: {GONE}") from None
    return f"{item.path}|{st.st_size}|{st.st_mtime_ns}"


def cache_path(store_dir: str | Path, item: Item, roots: list[str], side: int | None) -> Path:
    """Where the copy of `item` (longest side `side`, None: full size) is cached; the name changes with the source."""
    variant = f"{side}" if side else "full"
    key = hashlib.sha256(f"{_RECIPE}|{variant}|{_source_stamp(item, roots)}".encode()).hexdigest()[:20]
    return Path(store_dir) / THUMBS_DIR / str(item.id // 1000) / f"{item.id}.{variant}.{key}.jpg"


def render(item: Item, roots: list[str], side: int | None, max_pixels: int,
           poster: Callable[[str], Image.Image] | None = None) -> bytes:
    """A JPEG (RGB, EXIF orientation applied) of an indexed image, its longest side at most `side` (None: full size);
    with `poster` (an item that is not an image: a video), of the still `poster(path)` gives.

    Raises PermissionError outside `roots`, FileNotFoundError for a source gone since indexing, and
    InputFileError for one that no longer decodes (ImageTooLargeError: over `max_pixels`)."""
    from PIL import Image

    from clipworks.model.transforms import decode_image

    outer, _, member = item.path.partition("::")
    if not inside_roots(outer, roots):
        raise PermissionError(f"{item.path}: outside the indexed folders")
    if poster is not None and not os.path.exists(outer):
        raise FileNotFoundError(f"{item.path}: {GONE}")
    try:
        if poster is not None:
            image = poster(outer).convert("RGB")
        elif member:
            with tarfile.open(outer) as tar:
                info = tar.getmember(member)
                if not info.isfile():  # a link member could point anywhere
                    raise KeyError(member)
                image = decode_image(tar.extractfile(info), item.path, min_side=side, max_pixels=max_pixels)
        else:
            image = decode_image(outer, item.path, min_side=side, max_pixels=max_pixels)
    except (OSError, KeyError, tarfile.TarError):
        raise FileNotFoundError(f"{item.path}: {GONE}") from None
    if side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMB_QUALITY if side else FULL_QUALITY, optimize=bool(side))
    return out.getvalue()


@functools.cache
def placeholder() -> bytes:
    """The thumbnail of a video that no longer decodes: a plain grey JPEG (one object, made once)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (THUMB_SIDE, THUMB_SIDE), (200, 200, 200)).save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def cached_copy(store_dir: str | Path, item: Item, roots: list[str], side: int | None) -> Path | None:
    """The cached copy's path if it is there and current, else None."""
    path = cache_path(store_dir, item, roots, side)
    return path if path.is_file() else None


def make_copy(store_dir: str | Path, item: Item, roots: list[str], side: int | None, max_pixels: int,
              poster: Callable[[str], Image.Image] | None = None) -> Path | bytes:
    """Make the copy (once, however many ask at the same time) and cache it: its path, or its bytes when the
    store's folder is read-only. Older copies of the same item and size are removed. `poster`: see `render`."""
    path = cache_path(store_dir, item, roots, side)
    with _LOCKS[hash(path.name) % len(_LOCKS)]:
        if path.is_file():  # made while this request waited
            return path
        data = render(item, roots, side, max_pixels, poster)
        if not os.access(store_dir, os.W_OK):
            return data
        try:
            atomic_write(path, lambda tmp: tmp.write_bytes(data))
        except OSError:
            return data  # a full disk or a thumbs/ folder made read-only: serve it uncached
        for old in path.parent.glob(f"{item.id}.{path.name.split('.')[1]}.*.jpg"):
            if old != path:
                old.unlink(missing_ok=True)
        return path


@dataclass
class ThumbsReport:
    """What `make_all` did: thumbnails made, already current, and the items it could not make one for."""

    made: int = 0
    current: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def summary(self) -> str:
        gone = f", {len(self.failed)} failed" + "".join(f"\n  {p}: {why}" for p, why in self.failed[:10])
        return f"thumbnails: made {self.made}, current {self.current}" + (gone if self.failed else "")


def make_all(store_dir: str | Path, max_pixels: int = MAX_PIXELS, side: int = THUMB_SIDE, workers: int = 2,
             progress: bool = True) -> ThumbsReport:
    """Make the thumbnail of every image in the store that has no current one (`workers` threads; Pillow decodes
    and resizes outside the GIL). An image that is gone, outside the roots or no longer decodes is counted and
    listed, never fatal. For an image store (a video store's posters are made by the server as asked)."""
    from tqdm import tqdm

    from clipworks.errors import ClipworksError
    from clipworks.search.store import Store

    store = Store(store_dir, create=False)
    report = ThumbsReport()
    try:
        roots, ids = store.roots(), store.filter_ids()

        def one(item: Item) -> str | None:
            try:
                if cached_copy(store.directory, item, roots, side) is not None:
                    return "current"
                make_copy(store.directory, item, roots, side, max_pixels)
                return None
            except (OSError, ClipworksError) as exc:  # gone, outside the roots, unreadable, over the pixel budget
                return f"failed:{str(exc).removeprefix(item.path + ': ')}"

        with ThreadPoolExecutor(max(1, workers)) as pool, \
                tqdm(total=len(ids), desc="thumbnails", unit="img", disable=not progress) as bar:
            for start in range(0, len(ids), 512):
                items = store.items(ids[start:start + 512])
                for item, outcome in zip(items, pool.map(one, items)):
                    if outcome is None:
                        report.made += 1
                    elif outcome == "current":
                        report.current += 1
                    else:
                        report.failed.append((item.path, outcome.removeprefix("failed:")))
                    bar.update()
    finally:
        store.close()
    return report
