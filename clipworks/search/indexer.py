"""`clipworks index`: walk folders and WebDataset tars, embed new or changed images, drop deleted ones.

The walk and the embedding of images; the incremental bookkeeping (what changed, the lock, the shortcuts,
sharding, per-batch transactions) is `incremental.py`'s, shared with video search. Streaming and bounded: files
are enumerated lazily, and each image is decoded (JPEGs at a reduced scale) and preprocessed as soon as it is
read, so a pending batch holds only model-sized pixels (`batch_size` images and at most BATCH_BYTES), never file
bytes or full-resolution images. A same-name caption `.txt` or metadata `.json` gives the item's caption and
fields; a photo's EXIF header gives its date taken, camera model and whether it has GPS data. HEIC/HEIF files
decode through pillow-heif (the `heic` extra).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from clipworks.data.captions import member_captions, read_caption_file
from clipworks.data.folders import is_hidden, walk as walk_visible
from clipworks.data.images import IMAGE_EXTENSIONS, photo_metadata
from clipworks.data.shards import split_member_name
from clipworks.errors import InputFileError
from clipworks.search.incremental import Entry, IndexReport, Media, sidecar_stamp, sync

__all__ = ["BATCH_BYTES", "IndexReport", "index", "walk"]

BATCH_BYTES = 256 * 2**20  # preprocessed pixels held per batch, whatever --batch-size asks for


def _sidecar_caption(path: Path) -> str | None:
    txt = path.with_suffix(".txt")
    if not txt.is_file():
        return None
    try:
        return "\n".join(read_caption_file(txt))
    except InputFileError:
        return None


def _sidecar_json(path: Path) -> dict[str, Any]:
    side = path.with_suffix(".json")
    if not side.is_file():
        return {}
    try:
        value = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _hashed(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(data).hexdigest(), data


def _walk_tar(tar_path: Path, root: str) -> Iterator[Entry]:
    """Image members of a tar, with same-key .txt/.json members as caption and extra fields."""
    try:
        archive = tarfile.open(tar_path)
        members = [m for m in archive.getmembers() if m.isfile()]
    except (OSError, tarfile.TarError) as exc:
        raise InputFileError(f"{tar_path}: unreadable tar ({exc})") from None
    by_key: dict[str, dict[str, tarfile.TarInfo]] = {}
    for m in members:
        key, suffix = split_member_name(m.name)
        if is_hidden(m.name):
            continue
        by_key.setdefault(key, {})[suffix] = m
    mtime = tar_path.stat().st_mtime

    def content(member: tarfile.TarInfo) -> Callable[[], tuple[str, bytes]]:
        return lambda: _hashed(archive.extractfile(member).read())

    def metadata(group: dict[str, tarfile.TarInfo], image: tarfile.TarInfo) -> Callable[[], dict[str, Any]]:
        def load() -> dict[str, Any]:
            caption, extra = None, {}
            if "txt" in group:
                member = group["txt"]
                caption = "\n".join(member_captions(archive.extractfile(member).read(), member.name)) or None
            if "json" in group:
                with contextlib.suppress(ValueError):
                    extra = json.loads(archive.extractfile(group["json"]).read())
            photo = photo_metadata(archive.extractfile(image), f"{tar_path}::{image.name}", mtime)
            return {"caption": caption, "extra": extra if isinstance(extra, dict) else {}, **photo}
        return load

    for key in sorted(by_key):
        group = by_key[key]
        for suffix, member in sorted(group.items()):
            if ("." + suffix).endswith(IMAGE_EXTENSIONS):
                stamp = " ".join(f".{s}:{group[s].size}" for s in ("txt", "json") if s in group)
                yield Entry(f"{tar_path}::{member.name}", root, str(tar_path), Path(member.name).suffix.lower().lstrip("."),
                            member.size, mtime, content(member), metadata(group, member), stamp)


def walk(root: str | Path) -> Iterator[Entry]:
    """Images under a folder (recursive, sorted; tars inside are expanded) or in one tar."""
    base = Path(root).expanduser().resolve()
    if not base.exists():
        raise InputFileError(f"{root}: no such file or folder")
    if base.is_file():
        if base.suffix.lower() != ".tar":
            raise InputFileError(f"{root}: give a folder or a .tar of images")
        yield from _walk_tar(base, str(base))
        return
    for folder, _, files in walk_visible(base):
        for name in files:
            p = Path(folder) / name
            lower = name.lower()
            if lower.endswith(".tar"):
                yield from _walk_tar(p, str(base))
            elif lower.endswith(IMAGE_EXTENSIONS):
                try:
                    st = p.stat()
                except OSError:
                    continue
                yield Entry(str(p), str(base), folder, p.suffix.lower().lstrip("."), st.st_size, st.st_mtime,
                            lambda p=p: _hashed(p.read_bytes()),
                            lambda p=p, mtime=st.st_mtime: {"caption": _sidecar_caption(p), "extra": _sidecar_json(p),
                                                            **photo_metadata(p, str(p), mtime)},
                            sidecar_stamp([p.with_suffix(".txt"), p.with_suffix(".json")]))


def index(roots: Sequence[str | Path], store_dir: str | Path, model_name: str = "default", batch_size: int = 64,
          device: str | None = None, progress: bool = True, model=None, preprocess=None) -> IndexReport:
    """Bring the store in `store_dir` up to date with `roots`; returns what changed.

    Under `torchrun --nproc_per_node=N`, the ranks share the embedding (see `incremental.py`) and the returned
    report sums all ranks."""
    from clipworks.evaluation.features import embed_images
    from clipworks.model.transforms import decode_image

    if model is None:
        from clipworks.model.factory import create_model

        model, preprocess = create_model(model_name, device=device)
    size = model.config.preprocess.image_size

    def prepare(entry: Entry, data: bytes) -> tuple[Any, dict[str, Any]]:
        # JPEGs decode at a reduced scale that keeps twice the model's input; the batch keeps model-sized pixels only
        image = decode_image(io.BytesIO(data), entry.path, min_side=2 * size)
        width, height = image.info["full_size"]
        return preprocess(image), {"width": width, "height": height}

    def embed(pixels: list[Any]):
        return embed_images(model, lambda p: p, pixels, batch_size=len(pixels)).numpy()

    batch = max(1, min(batch_size, BATCH_BYTES // (3 * size * size * 4)))  # float32 pixels, bounded in bytes too
    return sync(roots, store_dir, Media("images", walk, prepare, embed, batch), model_name, model.config.embed_dim,
                progress=progress)
