"""`clipworks index`: walk folders and WebDataset tars, embed new or changed images, drop deleted ones.

Streaming and bounded: files are enumerated lazily, and each image is decoded (JPEGs at a reduced scale) and
preprocessed as soon as it is read, so a pending batch holds only model-sized pixels (`batch_size` images and
at most BATCH_BYTES), never file bytes or full-resolution images. Each batch is committed in one transaction
(see `store.py`): killing the process at any moment loses at most that batch, and a re-run picks up exactly
what is missing. Unchanged files (same size and mtime) are not read; a file whose size or mtime changed is
hashed and re-embedded only if its content changed. A same-name caption `.txt` or metadata `.json` that is
edited, added or removed updates the item's caption and fields without re-embedding the image. A path is one
item whichever root it was indexed from (a sub-folder, then its parent): it moves, it is not embedded again.
One indexer at a time per store: a second one waits for the first, then finds its work done.
"""

from __future__ import annotations

import contextlib
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

from clipworks.data.captions import member_captions, read_caption_file
from clipworks.data.folders import is_hidden, walk as walk_visible
from clipworks.data.images import IMAGE_EXTENSIONS
from clipworks.data.shards import split_member_name
from clipworks.errors import InputFileError
from clipworks.search.store import Store, indexing_lock, inside_roots

BATCH_BYTES = 256 * 2**20  # preprocessed pixels held per batch, whatever --batch-size asks for


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
    sidecars: str = ""  # size and mtime of the caption/metadata files read with it: their change detection


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    refreshed: int = 0  # caption or metadata re-read from a changed sidecar; the image was not embedded again
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    unit: str = "images"

    def summary(self) -> str:
        rate = (self.added + self.updated) / self.seconds if self.seconds else 0.0
        line = (f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, removed {self.removed}, "
                f"skipped {len(self.skipped)}" + (f", captions/metadata refreshed {self.refreshed}" if self.refreshed else "")
                + f" ({rate:.1f} {self.unit}/s embedded)")
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


def _sidecar_stamp(path: Path) -> str:
    """Size and mtime of the image's .txt and .json, if any: editing, adding or removing one changes it."""
    stamps = []
    for suffix in (".txt", ".json"):
        with contextlib.suppress(OSError):
            st = path.with_suffix(suffix).stat()
            stamps.append(f"{suffix}:{st.st_size}:{st.st_mtime_ns}")
    return " ".join(stamps)


def _walk_tar(tar_path: Path, root: str) -> Iterator[FileEntry]:
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

    def reader(member: tarfile.TarInfo) -> Callable[[], bytes]:
        return lambda: archive.extractfile(member).read()

    def text(member: tarfile.TarInfo | None) -> Callable[[], str | None]:
        return (lambda: "\n".join(member_captions(archive.extractfile(member).read(), member.name)) or None) if member else (lambda: None)

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
                stamp = " ".join(f".{s}:{group[s].size}" for s in ("txt", "json") if s in group)
                yield FileEntry(f"{tar_path}::{member.name}", root, member.size, mtime, reader(member),
                                text(group.get("txt")), fields(group.get("json")), stamp)


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
                yield FileEntry(str(p), str(base), st.st_size, st.st_mtime, p.read_bytes,
                                lambda p=p: _sidecar_caption(p), lambda p=p: _sidecar_json(p), _sidecar_stamp(p))


def _metadata(entry: FileEntry) -> dict[str, Any]:
    """What an item takes from its file's stat and its sidecars (not from the image)."""
    return {"path": entry.path, "root": entry.root, "mtime": entry.mtime, "caption": entry.caption(), "extra": entry.extra(),
            "sidecars": entry.sidecars}


def _row(entry: FileEntry, sha256: str, full_size: tuple[int, int]) -> dict[str, Any]:
    inner = entry.path.split("::", 1)[-1]
    folder = os.path.dirname(entry.path) if "::" not in entry.path else entry.path.split("::", 1)[0]
    return {**_metadata(entry), "folder": folder, "ext": Path(inner).suffix.lower().lstrip("."),
            "size": entry.size, "sha256": sha256, "width": full_size[0], "height": full_size[1]}


def index(roots: Sequence[str | Path], store_dir: str | Path, model_name: str = "default", batch_size: int = 64,
          device: str | None = None, progress: bool = True, model=None, preprocess=None) -> IndexReport:
    """Bring the store in `store_dir` up to date with `roots`; returns what changed.

    Under `torchrun --nproc_per_node=N`, rank r embeds every N-th file (in walk order) and all ranks commit into
    the one store (SQLite serialises their transactions); rank 0 drops deleted files once every rank is done,
    and the returned report sums all ranks."""
    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    from clipworks.training.distributed import init_distributed

    start = time.perf_counter()
    world = init_distributed(torch.device("cpu"))
    if model is None:
        from clipworks.model.factory import create_model

        model, preprocess = create_model(model_name, device=device)
    report = IndexReport()
    # Rank 0 holds the store's lock for the whole run (the other ranks are part of it) and opens the store first.
    with indexing_lock(store_dir) if world.is_main else contextlib.nullcontext():
        if world.distributed and not world.is_main:
            dist.barrier()
        store = Store(store_dir)
        bar = tqdm(desc="indexing", unit="img", disable=not (progress and world.is_main))
        try:
            store.bind_model(model_name, model.config.embed_dim)
            if world.distributed and world.is_main:
                dist.barrier()
            for root in roots:
                _index_root(str(Path(root).expanduser().resolve()), store, model, preprocess, batch_size, world, report, bar)
        finally:
            bar.close()
            store.close()
    report.seconds = time.perf_counter() - start
    if world.distributed:
        counts = torch.tensor([report.added, report.updated, report.unchanged, report.removed, report.refreshed],
                              dtype=torch.int64)
        dist.all_reduce(counts)
        report.added, report.updated, report.unchanged, report.removed, report.refreshed = (int(c) for c in counts)
        gathered: list[list[tuple[str, str]]] = [[] for _ in range(world.world_size)]
        dist.all_gather_object(gathered, report.skipped)
        report.skipped = sorted(s for part in gathered for s in part)
    return report


def _index_root(root: str, store: Store, model, preprocess, batch_size: int, world, report: IndexReport, bar) -> None:
    import torch.distributed as dist

    from clipworks.evaluation.features import embed_images
    from clipworks.model.transforms import decode_image

    known = store.known(root)
    seen: set[str] = set()
    pending: list[tuple[FileEntry, str, tuple[int, int], Any]] = []  # (entry, sha256, full size, pixels)
    skipped: list[dict[str, Any]] = []
    refreshed: list[dict[str, Any]] = []
    size = model.config.preprocess.image_size
    min_side = 2 * size  # JPEGs decode at a reduced scale that keeps twice the model's input
    batch = max(1, min(batch_size, BATCH_BYTES // (3 * size * size * 4)))  # float32 pixels, bounded in bytes too

    def skip(entry: FileEntry, reason: str) -> None:
        skipped.append({"path": entry.path, "root": root, "size": entry.size, "mtime": entry.mtime, "reason": reason})

    def flush() -> None:
        rows = []
        if pending:  # pixels were preprocessed when their file was read
            emb = embed_images(model, lambda pixels: pixels, [p for *_, p in pending], batch_size=len(pending)).numpy()
            for (entry, sha, full_size, _), vec in zip(pending, emb):
                rows.append({**_row(entry, sha, full_size), "embedding": vec})
                if entry.path in known:
                    report.updated += 1
                else:
                    report.added += 1
        if rows or skipped or refreshed:
            store.put(rows, skipped, refreshed=refreshed)
        report.skipped.extend((s["path"], s["reason"]) for s in skipped)
        bar.update(len(pending) + len(skipped) + len(refreshed))
        pending.clear()
        skipped.clear()
        refreshed.clear()

    def keep(entry: FileEntry, before) -> None:
        """The image is unchanged: refresh what else may have changed (mtime, sidecars, root), no embedding."""
        if before.sidecars != entry.sidecars:
            report.refreshed += 1
        else:
            report.unchanged += 1
        if (before.mtime, before.sidecars, before.root) != (entry.mtime, entry.sidecars, entry.root):
            refreshed.append(_metadata(entry))

    for position, entry in enumerate(walk(root)):
        if len(pending) >= batch or len(skipped) + len(refreshed) >= 4 * batch:
            flush()
        seen.add(entry.path)
        if position % world.world_size != world.rank:
            continue
        before = known.get(entry.path)
        if before is not None and before.size == entry.size and before.mtime == entry.mtime:
            if before.sha256 is None:
                report.unchanged += 1
                report.skipped.append((entry.path, "unchanged since it was skipped"))
            else:
                keep(entry, before)
        elif "::" not in entry.path and not inside_roots(entry.path, [root]):
            skip(entry, "a symlink to a file outside the indexed folder")
        else:
            try:
                data = entry.read()
            except OSError as exc:
                skip(entry, f"cannot read ({exc.strerror or exc})")
                continue
            sha = hashlib.sha256(data).hexdigest()
            if before is not None and before.sha256 == sha:
                keep(entry, before)  # same content, new timestamp
                continue
            try:
                image = decode_image(io.BytesIO(data), entry.path, min_side=min_side)
            except InputFileError as exc:
                skip(entry, str(exc).removeprefix(entry.path + ": "))
                continue
            pending.append((entry, sha, image.info["full_size"], preprocess(image)))
            del data, image  # the batch keeps model-sized pixels only
    flush()
    if world.distributed:
        dist.barrier()
    # Unseen paths are gone, except under a sub-root (a hidden folder or tar indexed on its own, not walked here).
    removed = [p for p, k in known.items() if p not in seen and not k.root.startswith(root.rstrip("/") + "/")]
    if removed and world.is_main:
        store.put([], removed=removed)
        report.removed += len(removed)
