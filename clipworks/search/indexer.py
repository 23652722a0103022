"""`clipworks index`: walk folders and WebDataset tars, embed new or changed images, drop deleted ones.

Streaming and bounded: files are enumerated lazily and embedded `batch_size` at a time, so memory holds the
model, one batch of decoded images and the per-root table of (path, size, mtime) already known. Each batch
is committed in one transaction (see `store.py`): killing the process at any moment loses at most that
batch, and a re-run picks up exactly what is missing. Unchanged files (same size and mtime) are not read;
a file whose size or mtime changed is hashed and re-embedded only if its content changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipworks.data.readers import IMAGE_EXTENSIONS, _split_member_name, read_caption_file
from clipworks.errors import InputFileError
from clipworks.search.store import Store, inside_roots


@dataclass
class FileEntry:
    """One image found under a root: a file, or a member of a tar ("shard.tar::key.jpg")."""

    path: str
    root: str
    size: int
    mtime: float
    read: Callable[[], bytes]
    caption: Callable[[], str | None] = lambda: None
    extra: Callable[[], dict[str, Any]] = dict


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    unit: str = "images"

    def summary(self) -> str:
        rate = (self.added + self.updated) / self.seconds if self.seconds else 0.0
        line = (f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, removed {self.removed}, "
                f"skipped {len(self.skipped)} ({rate:.1f} {self.unit}/s embedded)")
        if self.skipped:
            line += "\n" + "\n".join(f"  skipped {p}: {r}" for p, r in self.skipped[:20])
            if len(self.skipped) > 20:
                line += f"\n  ... and {len(self.skipped) - 20} more (see `clipworks search --store DIR --stats`)"
        return line


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


def _walk_tar(tar_path: Path, root: str) -> Iterator[FileEntry]:
    """Image members of a tar, with same-key .txt/.json members as caption and extra fields."""
    try:
        archive = tarfile.open(tar_path)
        members = [m for m in archive.getmembers() if m.isfile()]
    except (OSError, tarfile.TarError) as exc:
        raise InputFileError(f"{tar_path}: unreadable tar ({exc})") from None
    by_key: dict[str, dict[str, tarfile.TarInfo]] = {}
    for m in members:
        key, suffix = _split_member_name(m.name)
        by_key.setdefault(key, {})[suffix] = m
    mtime = tar_path.stat().st_mtime

    def reader(member: tarfile.TarInfo) -> Callable[[], bytes]:
        return lambda: archive.extractfile(member).read()

    def text(member: tarfile.TarInfo | None) -> Callable[[], str | None]:
        return (lambda: archive.extractfile(member).read().decode("utf-8", "replace").strip() or None) if member else (lambda: None)

    def fields(member: tarfile.TarInfo | None) -> Callable[[], dict[str, Any]]:
        def load() -> dict[str, Any]:
            try:
                value = json.loads(archive.extractfile(member).read())
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
        return load if member else dict

    for key in sorted(by_key):
        group = by_key[key]
        for suffix, member in sorted(group.items()):
            if ("." + suffix).endswith(IMAGE_EXTENSIONS):
                yield FileEntry(f"{tar_path}::{member.name}", root, member.size, mtime, reader(member),
                                text(group.get("txt")), fields(group.get("json")))


def walk(root: str | Path) -> Iterator[FileEntry]:
    """Images under a folder (recursive, sorted; tars inside are expanded) or in one tar."""
    base = Path(root).expanduser().resolve()
    if not base.exists():
        raise InputFileError(f"{root}: no such file or folder")
    if base.is_file():
        if base.suffix.lower() != ".tar":
            raise InputFileError(f"{root}: give a folder or a .tar of images")
        yield from _walk_tar(base, str(base))
        return
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in sorted(files):
            p = Path(folder) / name
            lower = name.lower()
            if lower.endswith(".tar"):
                yield from _walk_tar(p, str(base))
            elif lower.endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                try:
                    st = p.stat()
                except OSError:
                    continue
                yield FileEntry(str(p), str(base), st.st_size, st.st_mtime, p.read_bytes,
                                lambda p=p: _sidecar_caption(p), lambda p=p: _sidecar_json(p))


def _row(entry: FileEntry, data: bytes, image) -> dict[str, Any]:
    inner = entry.path.split("::", 1)[-1]
    folder = os.path.dirname(entry.path) if "::" not in entry.path else entry.path.split("::", 1)[0]
    return {"path": entry.path, "root": entry.root, "folder": folder, "ext": Path(inner).suffix.lower().lstrip("."),
            "size": entry.size, "mtime": entry.mtime, "sha256": hashlib.sha256(data).hexdigest(),
            "width": image.width, "height": image.height, "caption": entry.caption(), "extra": entry.extra()}


def index(roots: Sequence[str | Path], store_dir: str | Path, model_name: str = "default", batch_size: int = 64,
          device: str | None = None, progress: bool = True, model=None, preprocess=None) -> IndexReport:
    """Bring the store in `store_dir` up to date with `roots`; returns what changed.

    Under `torchrun --nproc_per_node=N`, rank r embeds every N-th file (in walk order) and all ranks commit into
    the one store (SQLite serialises their transactions); rank 0 drops deleted files once every rank is done,
    and the returned report sums all ranks."""
    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    from clipworks.evaluation.features import embed_images
    from clipworks.model.transforms import decode_image
    from clipworks.training.distributed import init_distributed

    start = time.perf_counter()
    world = init_distributed(torch.device("cpu"))
    if model is None:
        from clipworks.model.factory import create_model

        model, preprocess = create_model(model_name, device=device)
    if world.distributed and not world.is_main:
        dist.barrier()  # rank 0 creates the store and binds the model first
    store = Store(store_dir)
    store.bind_model(model_name, model.config.embed_dim)
    if world.distributed and world.is_main:
        dist.barrier()
    report = IndexReport()
    bar = tqdm(desc="indexing", unit="img", disable=not (progress and world.is_main))
    try:
        for root in roots:
            root_key = str(Path(root).expanduser().resolve())
            known = store.known(root_key)
            seen: set[str] = set()
            pending: list[tuple[FileEntry, bytes, Any]] = []
            skipped: list[dict[str, Any]] = []

            def flush() -> None:
                rows = []
                if pending:
                    emb = embed_images(model, preprocess, [img for _, _, img in pending], batch_size=len(pending)).numpy()
                    for (entry, data, img), vec in zip(pending, emb):
                        rows.append({**_row(entry, data, img), "embedding": vec})
                        if entry.path in known:
                            report.updated += 1
                        else:
                            report.added += 1
                store.put(rows, skipped)
                report.skipped.extend((s["path"], s["reason"]) for s in skipped)
                bar.update(len(pending) + len(skipped))
                pending.clear()
                skipped.clear()

            for position, entry in enumerate(walk(root)):
                seen.add(entry.path)
                if position % world.world_size != world.rank:
                    continue
                before = known.get(entry.path)
                if before is not None and before[0] == entry.size and before[1] == entry.mtime:
                    report.unchanged += 1
                    if before[2] is None:
                        report.skipped.append((entry.path, "unchanged since it was skipped"))
                    continue
                if "::" not in entry.path and not inside_roots(entry.path, [root_key]):
                    skipped.append({"path": entry.path, "root": root_key, "size": entry.size, "mtime": entry.mtime,
                                    "reason": "a symlink to a file outside the indexed folder"})
                    continue
                try:
                    data = entry.read()
                except OSError as exc:
                    skipped.append({"path": entry.path, "root": root_key, "size": entry.size, "mtime": entry.mtime,
                                    "reason": f"cannot read ({exc.strerror or exc})"})
                    continue
                if before is not None and before[2] == hashlib.sha256(data).hexdigest():
                    store.touch(entry.path, entry.mtime)  # same content, new timestamp
                    report.unchanged += 1
                    continue
                try:
                    image = decode_image(io.BytesIO(data), entry.path)
                except InputFileError as exc:
                    skipped.append({"path": entry.path, "root": root_key, "size": entry.size, "mtime": entry.mtime,
                                    "reason": str(exc).removeprefix(entry.path + ": ")})
                    continue
                pending.append((entry, data, image))
                if len(pending) >= batch_size:
                    flush()
            flush()
            if world.distributed:
                dist.barrier()
            removed = [p for p in known if p not in seen]
            if removed and world.is_main:
                store.put([], removed=removed)
                report.removed += len(removed)
    finally:
        bar.close()
        store.close()
    report.seconds = time.perf_counter() - start
    if world.distributed:
        counts = torch.tensor([report.added, report.updated, report.unchanged, report.removed], dtype=torch.int64)
        dist.all_reduce(counts)
        report.added, report.updated, report.unchanged, report.removed = (int(c) for c in counts)
        gathered: list[list[tuple[str, str]]] = [[] for _ in range(world.world_size)]
        dist.all_gather_object(gathered, report.skipped)
        report.skipped = sorted(s for part in gathered for s in part)
    return report
