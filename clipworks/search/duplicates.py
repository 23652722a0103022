"""Duplicates across a whole store: byte-identical files by content hash, and near duplicates (resized, recompressed,
slightly cropped copies) through the vector index.

Near duplicates are found without comparing all pairs: each image's top-`neighbours` in the store's vector index
(`engine.cached_index`) are the candidates, and a candidate pair is kept when its cosine reaches `threshold` and
a cheap layout check agrees: 8x8 grayscale thumbnails of the two files correlate at least `layout`, and so do
what is left of them once a brightness gradient (a fitted plane) is taken out, at least `detail`. CLIP alone puts
different pictures of the same kind of thing close together (two scenes with a yellow heart, two crops of one
sky); their layouts, or their details, differ; a resized, recompressed or slightly cropped copy's do not. Kept
pairs are joined into groups (union-find). Layouts are read from the files once and cached in the store's folder
by content hash. Measured on planted sets by `benchmarks/duplicates_planted.py` (README, "Semantic search").
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipworks.errors import InputFileError
from clipworks.io import atomic_write
from clipworks.search.ann import VectorIndex
from clipworks.search.store import GONE, Item, Store, inside_roots, read_item_bytes

DEFAULT_THRESHOLD = 0.90  # cosine at or above which two images are near-duplicate candidates
NEIGHBOURS = 16  # candidates per image: its nearest neighbours in the vector index
LAYOUT_CORRELATION = 0.7  # 8x8 grayscale correlation at or above which a candidate pair's layouts agree...
DETAIL_CORRELATION = 0.6  # ...and that of their residuals once a brightness gradient (a plane) is fitted and removed
LAYOUT_SIDE = 8
LAYOUT_FILE = "layouts8.v1.npz"  # <store>/...: layouts by content hash; the name changes with the recipe
FLAT_STD = 1.0  # a layout whose grey levels vary less than this (one level) is flat: a blank or plain image
QUERY_CHUNK = 4096  # images whose neighbours are searched at once


@dataclass
class DuplicateGroup:
    """Images that are copies of one another: best first (most pixels, then largest file)."""

    items: list[Item]
    kind: str  # "exact": every file has the same bytes; "near": some are resized, recompressed or cropped copies
    similarity: float  # the lowest cosine among the pairs that joined the group (1.0 for byte-identical files)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "similarity": round(self.similarity, 6), "size": len(self.items),
                "items": [item.to_json() for item in self.items]}


@dataclass
class DuplicateReport:
    """What `find_duplicates` found, and what it looked at."""

    groups: list[DuplicateGroup]
    images: int  # items in the store
    threshold: float
    layout: float | None  # the layout check's correlations (None: not checked)
    detail: float | None
    exact_only: bool
    candidates: int = 0  # near pairs (different content) at or above the threshold among the neighbours
    rejected: int = 0  # candidates whose layouts disagreed
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): missing or unreadable, left out

    def pairs(self) -> set[tuple[int, int]]:
        """Every (smaller id, larger id) pair inside a group."""
        return {(a.id, b.id) if a.id < b.id else (b.id, a.id)
                for g in self.groups for i, a in enumerate(g.items) for b in g.items[i + 1:]}

    def summary(self) -> str:
        copies = sum(len(g.items) - 1 for g in self.groups)
        line = (f"{len(self.groups)} groups of duplicates among {self.images} images ({copies} copies beyond the first "
                f"of each group)")
        if not self.exact_only:
            checked = self.layout is not None or self.detail is not None
            check = f", {self.rejected} rejected by the layout check" if checked else ""
            line += f"; {self.candidates} near pairs at cosine >= {self.threshold}{check}"
        line += f"; {len(self.skipped)} files skipped"
        return line + "".join(f"\n  skipped {p}: {r}" for p, r in self.skipped[:20])

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "threshold": self.threshold, "layout": self.layout, "detail": self.detail,
                "exact_only": self.exact_only,
                "candidates": self.candidates, "rejected": self.rejected,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "groups": [g.to_json() for g in self.groups]}


class _Groups:
    """Union-find over item ids, remembering each set's lowest joining cosine."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.lowest: dict[int, float] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int, score: float) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.lowest[ra] = min(score, self.lowest.get(ra, 1.0), self.lowest.get(rb, 1.0))

    def sets(self) -> list[tuple[list[int], float]]:
        out: dict[int, list[int]] = {}
        for a in self.parent:
            out.setdefault(self.find(a), []).append(a)
        return [(sorted(members), self.lowest.get(root, 1.0)) for root, members in out.items() if len(members) > 1]


def layout_of(image) -> np.ndarray:
    """The image's layout: its grayscale averaged down to LAYOUT_SIDE x LAYOUT_SIDE, flattened (uint8)."""
    from PIL import Image

    gray = image.convert("L").resize((LAYOUT_SIDE, LAYOUT_SIDE), Image.Resampling.BOX)
    return np.asarray(gray, dtype=np.uint8).reshape(-1)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two centred vectors; two flat ones agree (1.0), a flat one and a varied one do not."""
    flat = np.sqrt(a.size) * FLAT_STD
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na < flat or nb < flat:
        return 1.0 if na < flat and nb < flat else 0.0
    return float(a @ b / (na * nb))


def _plane_residual() -> np.ndarray:
    """The projection that removes the best-fitting plane (brightness, left-right and top-bottom gradients)."""
    y, x = np.mgrid[0:LAYOUT_SIDE, 0:LAYOUT_SIDE]
    design = np.stack([np.ones(x.size), x.ravel(), y.ravel()], axis=1)
    return np.eye(x.size) - design @ np.linalg.pinv(design)


_RESIDUAL = _plane_residual()


def layout_correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(layout, detail): the Pearson correlation of two layouts, and of what is left of them once their
    brightness gradient (a fitted plane) is taken out. Crops of one sky or one retina share the gradient;
    only copies share the detail too."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return _correlation(a - a.mean(), b - b.mean()), _correlation(_RESIDUAL @ a, _RESIDUAL @ b)


class LayoutCache:
    """Layouts by content hash, read from the files on first use and kept in the store's folder (when writable)."""

    def __init__(self, store: Store) -> None:
        self.path = Path(store.directory) / LAYOUT_FILE
        self.roots = store.roots()
        self.known: dict[str, np.ndarray] = {}
        self.added = 0
        if self.path.exists():
            try:
                with np.load(self.path, allow_pickle=False) as saved:
                    self.known = dict(zip(saved["sha256"].tolist(), saved["layout"]))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                self.known = {}  # a damaged cache is read again from the files

    def get(self, item: Item) -> np.ndarray:
        """The item's layout; InputFileError when its file is gone or no longer decodes."""
        from clipworks.model.transforms import decode_image

        if item.sha256 not in self.known:
            data = read_item_bytes(item.path, self.roots)
            image = decode_image(io.BytesIO(data), item.path, min_side=4 * LAYOUT_SIDE)  # JPEGs decode at 1/8 scale
            self.known[item.sha256] = layout_of(image)
            self.added += 1
        return self.known[item.sha256]

    def save(self) -> None:
        """Write the cache if layouts were read and the store's folder is writable."""
        if not self.added or not os.access(self.path.parent, os.W_OK):
            return
        sha = np.array(list(self.known), dtype="U64")
        grid = np.stack(list(self.known.values())).astype(np.uint8)
        try:
            atomic_write(self.path, lambda tmp: np.savez(tmp, sha256=sha, layout=grid))
        except OSError:
            pass  # a full disk: the layouts are read from the files again next time
        self.added = 0


def _present(item: Item, roots: list[str]) -> bool:
    """The item's file (or its tar) is still there, inside the indexed folders."""
    outer = item.path.split("::", 1)[0]
    return os.path.isfile(outer) and inside_roots(outer, roots)


def _order(items: list[Item]) -> list[Item]:
    return sorted(items, key=lambda it: (-(it.width or 0) * (it.height or 0), -it.size, it.id))


def find_duplicates(store: Store, threshold: float = DEFAULT_THRESHOLD, neighbours: int = NEIGHBOURS,
                    layout: float | None = LAYOUT_CORRELATION, detail: float | None = DETAIL_CORRELATION,
                    exact_only: bool = False, index: VectorIndex | None = None) -> DuplicateReport:
    """Groups of duplicate images in `store`: byte-identical files (same content hash), and unless `exact_only`,
    near duplicates: pairs among each image's `neighbours` nearest whose cosine reaches `threshold` and whose
    8x8 layouts correlate at least `layout`, and their details (the layouts less a fitted brightness gradient)
    at least `detail` (None: that part of the check is left out; both None: cosine alone). Files gone or
    unreadable are skipped and listed. `index`: the store's current vector index, if the caller has it (else the cached one is used)."""
    from clipworks.search.engine import cached_index

    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a cosine in (0, 1], got {threshold}")
    for name, value in (("layout", layout), ("detail", detail)):
        if value is not None and not -1 <= value <= 1:
            raise ValueError(f"{name} must be a correlation in [-1, 1], got {value}")
    checked = not (layout is None and detail is None)
    model = store.get_meta("model")
    if model is not None and model.startswith("video:"):
        raise InputFileError(f"{store.directory}: a video store (made by `clipworks video index`); duplicates are "
                             "found among images")
    roots = store.roots()
    report = DuplicateReport([], len(store), threshold, None if exact_only else layout,
                             None if exact_only else detail, exact_only)
    groups = _Groups()
    items: dict[int, Item] = {}
    bad: set[int] = set()

    def usable(ids: list[int]) -> list[int]:
        for item in store.items([i for i in ids if i not in items]):
            items[item.id] = item
            if not _present(item, roots):
                report.skipped.append((item.path, GONE))
                bad.add(item.id)
        return [i for i in ids if i in items and i not in bad]

    for same in store.same_content():
        same = usable(same)
        for other in same[1:]:
            groups.union(same[0], other, 1.0)
    if not exact_only and len(store) > 1:
        ids, vectors = store.vectors()
        index = index if index is not None and len(index) == len(ids) else cached_index(store, ids, vectors)
        candidates: dict[tuple[int, int], float] = {}
        for start in range(0, len(ids), QUERY_CHUNK):
            scores, found = index.search(vectors[start:start + QUERY_CHUNK], neighbours + 1)
            for a, row_scores, row_ids in zip(ids[start:start + QUERY_CHUNK].tolist(), scores, found):
                for score, b in zip(row_scores.tolist(), row_ids.tolist()):
                    if b >= 0 and b != a and score >= threshold:
                        pair = (a, b) if a < b else (b, a)
                        candidates[pair] = max(score, candidates.get(pair, -1.0))
        usable([i for pair in candidates for i in pair])
        layouts: dict[int, np.ndarray] = {}
        if checked:
            cache = LayoutCache(store)
            for i in sorted({i for pair in candidates for i in pair} - bad):
                try:
                    layouts[i] = cache.get(items[i])
                except (InputFileError, PermissionError) as exc:
                    report.skipped.append((items[i].path, str(exc).removeprefix(f"{items[i].path}: ")))
                    bad.add(i)
            cache.save()
        for (a, b), score in sorted(candidates.items(), key=lambda kv: -kv[1]):
            if a in bad or b in bad or items[a].sha256 == items[b].sha256:
                continue
            report.candidates += 1
            if checked:
                whole, rest = layout_correlation(layouts[a], layouts[b])
                if (layout is not None and whole < layout) or (detail is not None and rest < detail):
                    report.rejected += 1
                    continue
            groups.union(a, b, score)
    for members, lowest in groups.sets():
        members = [i for i in members if i not in bad]  # a copy of a file found unreadable (changed since indexing)
        if len(members) < 2:
            continue
        kind = "exact" if len({items[i].sha256 for i in members}) == 1 else "near"
        report.groups.append(DuplicateGroup(_order([items[i] for i in members]), kind, 1.0 if kind == "exact" else lowest))
    report.groups.sort(key=lambda g: (-len(g.items), -g.similarity, min(it.id for it in g.items)))
    return report
