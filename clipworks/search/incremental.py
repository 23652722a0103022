"""The incremental indexer behind `clipworks index` (images) and `clipworks video index` (videos): bring a store
up to date with what a walk finds, embedding only what is new or changed.

Each kind of media gives a `Media`: its walk (entries with the size and mtime of a stat, cheap to list), how to
prepare an entry's content for the model, and how to embed a batch. The bookkeeping is done here, once:
- an entry with the size and mtime recorded is not read; if only its sidecars changed, its caption and metadata
  are refreshed without embedding it again (so are the photo metadata of items from a store made before them);
- a changed entry is hashed, and embedded again only if its content changed (a touched file is not);
- a video recorded without moments (its frames' own embeddings; by a clipworks from before them) is embedded again;
- a symlink to a file outside the indexed root is refused and listed as skipped;
- a path is one item whichever root it was indexed from (a sub-folder, then its parent): it moves;
- each batch is one transaction (see `store.py`), so a crash loses at most that batch; paths gone are removed;
- one indexer at a time per store: a second one waits for the first, then finds its work done;
- under `torchrun --nproc_per_node=N`, rank r embeds every N-th entry (in walk order) and all ranks commit into
  the one store (SQLite serialises their transactions); rank 0 removes what is gone once every rank is done,
  and the report sums all ranks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipworks.errors import InputFileError
from clipworks.search.store import Known, Store, indexing_lock, inside_roots


@dataclass
class Entry:
    """One item a walk found: a file, a tar member ("shard.tar::key.jpg") or a video's frame folder."""

    path: str
    root: str
    folder: str
    ext: str
    size: int
    mtime: float
    content: Callable[[], tuple[str, Any]]  # (sha256, what `Media.prepare` decodes); called only on a change
    metadata: Callable[[], dict[str, Any]] = dict  # the item's columns read without decoding pixels: sidecars
    #                                                (caption, extra) and, for photos, EXIF (taken, camera, gps)
    sidecars: str = ""  # size and mtime of the sidecar files: their change detection


@dataclass(frozen=True)
class Media:
    """What the indexer needs to know of one kind of media."""

    unit: str  # "images", "videos": the report's unit
    walk: Callable[[str], Iterable[Entry]]  # a resolved root -> its entries, in a stable order
    prepare: Callable[[Entry, Any], tuple[Any, dict[str, Any]]]  # content -> (model input, columns such as width
    #                                                              and height); raises InputFileError to skip it
    embed: Callable[[list[Any]], np.ndarray | tuple[np.ndarray, list[dict[str, Any]]]]  # model inputs ->
    #        L2-normalised embeddings [N, D], or those and each item's further row fields (a video's `moments`)
    batch: int  # entries embedded (and committed) together
    moments: bool = False  # its items have moments (store.Moments); one recorded without (an older store) is
    #                        embedded again


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    refreshed: int = 0  # caption or metadata re-read from a changed sidecar; the item was not embedded again
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


def file_sha256(*paths: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks; of several files (a frame folder), of their names and bytes."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            if len(paths) > 1:
                digest.update(f"{Path(path).name}\0{os.fstat(f.fileno()).st_size}\0".encode())
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sidecar_stamp(paths: Sequence[Path]) -> str:
    """Size and mtime of the sidecar files that exist: editing, adding or removing one changes it."""
    stamps = []
    for path in paths:
        with contextlib.suppress(OSError):
            st = path.stat()
            stamps.append(f"{path.suffix}:{st.st_size}:{st.st_mtime_ns}")
    return " ".join(stamps)


def sync(roots: Sequence[str | Path], store_dir: str | Path, media: Media, model_key: str, dim: int,
         progress: bool = True) -> IndexReport:
    """Bring the store in `store_dir` (bound to `model_key`, embeddings of `dim`) up to date with `roots`."""
    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    from clipworks.training.distributed import init_distributed

    start = time.perf_counter()
    world = init_distributed(torch.device("cpu"))
    report = IndexReport(unit=media.unit)
    # Rank 0 holds the store's lock for the whole run (the other ranks are part of it) and opens the store first.
    with indexing_lock(store_dir) if world.is_main else contextlib.nullcontext():
        if world.distributed and not world.is_main:
            dist.barrier()
        store = Store(store_dir)
        bar = tqdm(desc="indexing", unit=media.unit.removesuffix("s"), disable=not (progress and world.is_main))
        try:
            store.bind_model(model_key, dim)
            if world.distributed and world.is_main:
                dist.barrier()
            for root in roots:
                _sync_root(str(Path(root).expanduser().resolve()), store, media, world, report, bar)
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


def _metadata(entry: Entry) -> dict[str, Any]:
    """What an item takes from its stat and its sidecars (not from its content): what a refresh rewrites."""
    return {"path": entry.path, "root": entry.root, "mtime": entry.mtime, "sidecars": entry.sidecars, **entry.metadata()}


def _sync_root(root: str, store: Store, media: Media, world, report: IndexReport, bar) -> None:
    import torch.distributed as dist

    known = store.known(root, moments=media.moments)
    seen: set[str] = set()
    pending: list[tuple[Entry, str, dict[str, Any], Any]] = []  # (entry, sha256, columns, model input)
    skipped: list[dict[str, Any]] = []
    refreshed: list[dict[str, Any]] = []

    def skip(entry: Entry, reason: str) -> None:
        skipped.append({"path": entry.path, "root": root, "size": entry.size, "mtime": entry.mtime, "reason": reason})

    def flush() -> None:
        rows = []
        if pending:
            embedded = media.embed([x for *_, x in pending])
            embeddings, more = embedded if isinstance(embedded, tuple) else (embedded, [{}] * len(pending))
            for (entry, sha, columns, _), vec, fields in zip(pending, embeddings, more):
                rows.append({**_metadata(entry), "folder": entry.folder, "ext": entry.ext, "size": entry.size,
                             "sha256": sha, **columns, **fields, "embedding": vec})
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

    def keep(entry: Entry, before: Known) -> None:
        """The content is unchanged: refresh what else may have changed (mtime, sidecars, root), no embedding."""
        if before.sidecars != entry.sidecars:
            report.refreshed += 1
        else:
            report.unchanged += 1
        if (before.mtime, before.sidecars, before.root) != (entry.mtime, entry.sidecars, entry.root) or not before.dated:
            refreshed.append(_metadata(entry))  # not dated: a store from before photo metadata; read it now

    for position, entry in enumerate(media.walk(root)):
        if len(pending) >= media.batch or len(skipped) + len(refreshed) >= 4 * media.batch:
            flush()
        seen.add(entry.path)
        if position % world.world_size != world.rank:
            continue
        before = known.get(entry.path)
        stale = before is not None and not before.moments  # recorded before moments were: embed it again
        if before is not None and before.size == entry.size and before.mtime == entry.mtime and not stale:
            if before.sha256 is None:
                report.unchanged += 1
                report.skipped.append((entry.path, "unchanged since it was skipped"))
            else:
                keep(entry, before)
        elif not inside_roots(entry.path.split("::", 1)[0], [root]):
            skip(entry, "a symlink to a file outside the indexed folder")
        else:
            try:
                sha, content = entry.content()
            except OSError as exc:
                skip(entry, f"cannot read ({exc.strerror or exc})")
                continue
            if before is not None and before.sha256 == sha and not stale:
                keep(entry, before)  # same content, new timestamp
                continue
            try:
                model_input, columns = media.prepare(entry, content)
            except InputFileError as exc:
                skip(entry, str(exc).removeprefix(entry.path + ": "))
                continue
            pending.append((entry, sha, columns, model_input))
    flush()
    if world.distributed:
        dist.barrier()
    # Unseen paths are gone, except under a sub-root (a hidden folder or tar indexed on its own, not walked here).
    removed = [p for p, k in known.items() if p not in seen and not k.root.startswith(root.rstrip("/") + "/")]
    if removed and world.is_main:
        store.put([], removed=removed)
        report.removed += len(removed)
