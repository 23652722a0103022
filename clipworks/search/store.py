"""The image store: one SQLite file holding every indexed image's metadata and embedding (the source of truth).

Each indexing batch is one transaction, so a crash (even kill -9) loses at most the batch in flight and the
store is always consistent; paths are unique, so a re-run can never duplicate an image. The vector index
(`ann.py`) is a cache rebuilt from here when the store's version moves. Queries open the store read-only
(so it can live on a read-only disk), with one SQLite connection per thread, so a server's threads read at
once (WAL readers do not block each other or the indexer); `reading()` pins one version for several reads.
Every SQLite failure surfaces as one line naming the store.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import sqlite3
import sys
import tarfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from clipworks.errors import InputFileError

STORE_FILE = "store.sqlite"
LOCK_FILE = "index.lock"
GONE = "image not found (moved or deleted since it was indexed?)"  # an indexed file no longer there
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT UNIQUE NOT NULL,      -- absolute file path, or "archive.tar::member"
    root TEXT NOT NULL,             -- the folder or tar it was indexed from
    folder TEXT NOT NULL,           -- parent folder (for filters)
    ext TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER, height INTEGER,
    caption TEXT,                   -- from a same-name .txt, if any
    extra TEXT,                     -- fields of a same-name .json, if any
    embedding BLOB NOT NULL,        -- float32, L2-normalised
    sidecars TEXT,                  -- size and mtime of the .txt/.json read (NULL: not recorded)
    taken REAL,                     -- when the photo was taken: EXIF DateTimeOriginal, else the file's mtime
    date_source TEXT,               -- "exif" or "file": where `taken` came from (NULL: a store from before)
    camera TEXT,                    -- EXIF Model, if any
    gps INTEGER                     -- 1: EXIF GPS data present, 0: none
);
CREATE INDEX IF NOT EXISTS items_root ON items(root);
CREATE INDEX IF NOT EXISTS items_folder ON items(folder);
CREATE INDEX IF NOT EXISTS items_mtime ON items(mtime);
CREATE INDEX IF NOT EXISTS items_taken ON items(taken);
CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, root TEXT NOT NULL, size INTEGER, mtime REAL, reason TEXT);
CREATE TABLE IF NOT EXISTS moments (  -- a video's sampled frames: where in it each is, and its own embedding
    item_id INTEGER NOT NULL,
    frame INTEGER NOT NULL,         -- the frame's number in the source
    seconds REAL,                   -- its time (NULL: no frame rate, a folder of frames)
    embedding BLOB NOT NULL         -- float32, L2-normalised, in the items' space
);
CREATE INDEX IF NOT EXISTS moments_item ON moments(item_id);
"""
# Columns added since the first schema, in order: a store made before one is migrated when opened for indexing
# (ALTER TABLE ADD COLUMN, NULL in existing rows); the next `clipworks index` fills the photo metadata of
# existing rows from their files without embedding them again (see incremental.py).
ADDED_COLUMNS = (("sidecars", "TEXT"), ("taken", "REAL"), ("date_source", "TEXT"), ("camera", "TEXT"), ("gps", "INTEGER"))
PHOTO_COLUMNS = ("taken", "date_source", "camera", "gps")


def inside_roots(path: str, roots: Sequence[str]) -> bool:
    """True when the real path of `path` (symlinks resolved) lies inside the real path of one of `roots`."""
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False


def read_item_bytes(path: str, roots: Sequence[str]) -> bytes:
    """The bytes of an indexed image: a file, or a tar member ("shard.tar::key.jpg"); only from inside `roots`."""
    outer = path.split("::", 1)[0]
    if not inside_roots(outer, roots):
        raise PermissionError(f"{path}: outside the indexed folders")
    try:
        if "::" in path:
            with tarfile.open(outer) as tar:
                return tar.extractfile(path.split("::", 1)[1]).read()
        return Path(outer).read_bytes()
    except (OSError, KeyError, AttributeError, tarfile.TarError):
        raise InputFileError(f"{path}: {GONE}") from None


def _read_only_error(directory: Path, exc: OSError) -> InputFileError:
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return InputFileError(f"{directory}: the store is read-only ({exc.strerror}); index into a writable --store")
    return InputFileError(f"{directory}: cannot write the store here ({exc.strerror or exc})")


@contextlib.contextmanager
def indexing_lock(directory: str | Path) -> Iterator[None]:
    """Hold the store's indexing lock (made with the folder if need be): a second indexer of the same store
    waits here, then finds the first one's work done instead of embedding it again. The OS releases it if
    the holder dies."""
    import fcntl

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _read_only_error(directory, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{directory}: waiting for another indexer of this store to finish", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass
class Item:
    """One indexed image's metadata (the embedding stays in the store)."""

    id: int
    path: str
    root: str
    folder: str
    ext: str
    size: int
    mtime: float
    sha256: str
    width: int | None
    height: int | None
    caption: str | None
    extra: dict[str, Any]
    taken: float | None = None  # EXIF DateTimeOriginal (date_source "exif") or the file's mtime ("file")
    date_source: str | None = None  # None: indexed before photo metadata was read
    camera: str | None = None
    gps: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


ITEM_COLUMNS = ("id", "path", "root", "folder", "ext", "size", "mtime", "sha256", "width", "height", "caption", "extra",
                *PHOTO_COLUMNS)


def _item(row: Sequence[Any]) -> Item:
    fields = dict(zip(ITEM_COLUMNS, row))
    fields["extra"] = json.loads(fields["extra"]) if fields["extra"] else {}
    fields["gps"] = None if fields["gps"] is None else bool(fields["gps"])
    return Item(**fields)


def dated(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with `taken` and `date_source` filled from its mtime where no photo date was read (videos, tars)."""
    if row.get("date_source") is None and "mtime" in row:
        return {**row, "taken": row["mtime"], "date_source": "file"}
    return row


class Known(NamedTuple):
    """What the store recorded of a path, for change detection."""

    size: int
    mtime: float
    sha256: str | None  # None: the file was skipped
    root: str
    sidecars: str | None
    dated: bool = True  # False: indexed before photo metadata was read; the indexer reads it without embedding
    moments: bool = True  # False: no moments recorded (asked for with `known(root, moments=True)`)


class Moments(NamedTuple):
    """An item's moments (a video's sampled frames), in time order."""

    frames: np.ndarray  # int64 [T]: frame numbers in the source
    seconds: np.ndarray  # float64 [T]: their times (NaN where the frame rate is unknown)
    embeddings: np.ndarray  # float32 [T, D], L2-normalised


def _locked(method):
    """Run the method on this thread's connection (holding the store's lock where the connection is shared:
    sqlite3 connections are not safe for concurrent statements), with SQLite's errors turned into one line
    naming the store: the store's query boundary."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._guard():
            try:
                return method(self, *args, **kwargs)
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
                    raise  # a bug in a statement, not the state of the store
                raise self._error(exc) from None

    return wrapper


class Store:
    """The store in `directory`. `create=True` opens it for indexing (made if missing); `create=False` opens an
    existing store read-only, for queries, which also works on a read-only disk or folder."""

    def __init__(self, directory: str | Path, create: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STORE_FILE
        self.readonly = not create
        # Read-only (queries): a connection per thread, no lock. For indexing: one connection, one statement at a time.
        self.lock = threading.RLock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []  # every connection opened, for close()
        if not self.path.exists():
            if not create:
                raise InputFileError(f"{self.directory}: no clipworks store here (make one with `clipworks index PATH --store DIR`)")
            self._create()
        elif self.path.stat().st_size == 0:  # never made by us (see _create): refuse rather than start afresh
            raise InputFileError(f"{self.path}: empty file (0 bytes), not a store; if it held a store, that store "
                                 f"is lost: delete {self.path} and run `clipworks index` again")
        elif create and not (os.access(self.directory, os.W_OK) and os.access(self.path, os.W_OK)):
            raise InputFileError(f"{self.directory}: the store is read-only; index into a writable --store")
        with self.lock:
            try:
                self._shared = None if self.readonly else self._open()
                self._columns = {row[1] for row in self.db.execute("PRAGMA table_info(items)")}
                self._has_moments = bool(self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'moments'").fetchone())
            except sqlite3.DatabaseError as exc:
                raise self._error(exc) from None
        # a store from before a column was added, opened read-only (not migrated): the column reads as NULL
        self._item_select = ", ".join(c if c in self._columns else f"NULL AS {c}" for c in ITEM_COLUMNS)

    def _create(self) -> None:
        """Make a new, empty store file whole and then move it into place, so a store file is never seen
        half-made (and a 0-byte store.sqlite always means a damaged store)."""
        tmp = self.directory / f".{STORE_FILE}.{os.getpid()}.new"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.touch()  # a read-only folder fails here with a clear OSError rather than in SQLite
            with contextlib.closing(sqlite3.connect(tmp)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
            if not self.path.exists():
                os.replace(tmp, self.path)
        except OSError as exc:
            raise _read_only_error(self.directory, exc) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    @property
    def db(self) -> sqlite3.Connection:
        """The connection for this thread: its own when read-only, else the store's one (use under `lock`)."""
        if self._shared is not None:
            return self._shared
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = self._local.db = self._open()
            except sqlite3.DatabaseError as exc:
                raise self._error(exc) from None
        return db

    def _guard(self) -> contextlib.AbstractContextManager:
        """The store's lock where threads share the connection; nothing where each has its own."""
        return self.lock if self._shared is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Every read in the block, on this thread, sees the store at one version (a SQLite read transaction;
        writers go on meanwhile, and later reads see them). Blocks nest; for reads only."""
        depth = getattr(self._local, "reading", 0)
        with self._guard():
            if depth == 0:
                self.db.execute("BEGIN")
            self._local.reading = depth + 1
            try:
                yield
            except BaseException:
                self._local.reading = depth
                if depth == 0 and self.db.in_transaction:
                    with contextlib.suppress(sqlite3.DatabaseError):  # the block's own error is the one to report
                        self.db.execute("ROLLBACK")
                raise
            self._local.reading = depth
            if depth == 0 and self.db.in_transaction:
                try:
                    self.db.execute("COMMIT")
                except sqlite3.DatabaseError as exc:
                    raise self._error(exc) from None

    def _open(self) -> sqlite3.Connection:
        db = self._connect()
        with self.lock:
            self._connections.append(db)
        return db

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            # WAL readers need to write the -shm file; in a folder they cannot write, read the file as immutable
            immutable = "" if os.access(self.directory, os.W_OK) else "&immutable=1"
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro{immutable}", uri=True, timeout=30,
                                 check_same_thread=False)
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'items'").fetchone():
                raise InputFileError(f"{self.path}: not a clipworks store (no items table)")
            return db
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        # Another process opening the same store at the same moment (torchrun ranks, a server beside the
        # indexer) can hold the lock the WAL switch needs, which SQLite reports at once instead of waiting.
        deadline = time.monotonic() + 30
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                self._migrate(db)
                db.executescript(SCHEMA)
                return db
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Add the columns a store made by an older clipworks lacks (before SCHEMA's indexes name them)."""
        have = {row[1] for row in db.execute("PRAGMA table_info(items)")}
        if not have:
            return  # a new store: SCHEMA makes the table whole
        with db:
            for name, kind in ADDED_COLUMNS:
                if name not in have:
                    db.execute(f"ALTER TABLE items ADD COLUMN {name} {kind}")

    def _error(self, exc: sqlite3.DatabaseError) -> InputFileError:
        """One line for a failed SQLite call, saying what the user can do about it."""
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return InputFileError(f"{self.path}: the store is damaged ({exc}); rebuild it from the images: delete the "
                                  f"folder {self.directory} and run `clipworks index FOLDER --store {self.directory}` again")
        if name.startswith("SQLITE_READONLY"):
            return InputFileError(f"{self.directory}: the store is read-only ({exc}); index into a writable --store")
        return InputFileError(f"{self.path}: store error ({exc})")

    def close(self) -> None:
        with self.lock:
            for db in self._connections:
                db.close()
            self._connections.clear()

    # ------------------------------------------------------------ model binding and version

    @_locked
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @_locked
    def set_meta(self, key: str, value: str) -> None:
        """Record a setting (not content: the version does not move)."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @_locked
    def bind_model(self, model: str, dim: int) -> None:
        """Record the model the embeddings come from; a store never mixes two models."""
        bound, bound_dim = self.get_meta("model"), self.get_meta("dim")
        if bound is None:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [("model", model), ("dim", str(dim))])
        elif bound != model or int(bound_dim or 0) != dim:
            raise InputFileError(f"{self.directory}: the store holds embeddings of model {bound!r} (dim {bound_dim}), "
                                 f"not {model!r} (dim {dim}); use another --store or --model {bound}")

    @property
    def version(self) -> int:
        """Bumped by every change, so caches built from the store know when they are stale."""
        return int(self.get_meta("version") or 0)

    def _bump(self) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(self.version + 1),))

    # ------------------------------------------------------------ writes (each call is one transaction)

    @_locked
    def put(self, rows: Iterable[dict[str, Any]], skipped: Iterable[dict[str, Any]] = (), removed: Iterable[str] = (),
            refreshed: Iterable[dict[str, Any]] = ()) -> None:
        """Insert or replace items (dicts with the item columns and `embedding`), record skipped files, delete
        removed paths and refresh the metadata of items whose content did not change (dicts with path and any of
        root, mtime, caption, extra, sidecars and the photo columns: the embedding stays), all in one transaction.
        A row without a photo date is dated by its mtime (date_source "file"); a row's `moments` (Moments, a
        video's frames) replace the item's."""
        with self.db:
            for r in rows:
                r = dated(r)
                emb = np.ascontiguousarray(r["embedding"], dtype=np.float32)
                self.db.execute(
                    "INSERT INTO items (path, root, folder, ext, size, mtime, sha256, width, height, caption, extra,"
                    " embedding, sidecars, taken, date_source, camera, gps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE"
                    " SET root=excluded.root, folder=excluded.folder, ext=excluded.ext, size=excluded.size,"
                    " mtime=excluded.mtime, sha256=excluded.sha256, width=excluded.width, height=excluded.height,"
                    " caption=excluded.caption, extra=excluded.extra, embedding=excluded.embedding,"
                    " sidecars=excluded.sidecars, taken=excluded.taken, date_source=excluded.date_source,"
                    " camera=excluded.camera, gps=excluded.gps",
                    (r["path"], r["root"], r["folder"], r["ext"], r["size"], r["mtime"], r["sha256"], r.get("width"),
                     r.get("height"), r.get("caption"), json.dumps(r["extra"]) if r.get("extra") else None, emb.tobytes(),
                     r.get("sidecars"), r["taken"], r["date_source"], r.get("camera"), int(bool(r.get("gps")))))
                self.db.execute("DELETE FROM skipped WHERE path = ?", (r["path"],))
                if "moments" in r:  # a video's; image rows never have any
                    self._put_moments(r["path"], r["moments"])
            for r in refreshed:  # only the columns given: what came from decoding the content stays too
                r = dated(r)
                columns = {c: r[c] for c in ("root", "mtime", "caption", "extra", "sidecars", *PHOTO_COLUMNS) if c in r}
                if "extra" in columns:
                    columns["extra"] = json.dumps(columns["extra"]) if columns["extra"] else None
                self.db.execute(f"UPDATE items SET {', '.join(c + ' = ?' for c in columns)} WHERE path = ?",
                                (*columns.values(), r["path"]))
            for s in skipped:
                self.db.execute("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, ?)",
                                (s["path"], s["root"], s["size"], s["mtime"], s["reason"]))
                self._put_moments(s["path"], None)
                self.db.execute("DELETE FROM items WHERE path = ?", (s["path"],))
            for p in removed:
                self._put_moments(p, None)
                self.db.execute("DELETE FROM items WHERE path = ?", (p,))
                self.db.execute("DELETE FROM skipped WHERE path = ?", (p,))
            self._bump()

    def _put_moments(self, path: str, moments: Moments | None) -> None:
        """Replace the moments of the item at `path` (None: remove them), inside put's transaction."""
        self.db.execute("DELETE FROM moments WHERE item_id IN (SELECT id FROM items WHERE path = ?)", (path,))
        if moments is None or not len(moments.frames):
            return
        (item_id,) = self.db.execute("SELECT id FROM items WHERE path = ?", (path,)).fetchone()
        vectors = np.ascontiguousarray(moments.embeddings, dtype=np.float32)
        self.db.executemany("INSERT INTO moments VALUES (?, ?, ?, ?)", [
            (item_id, int(f), None if np.isnan(t) else float(t), v.tobytes())
            for f, t, v in zip(moments.frames, np.asarray(moments.seconds, dtype=np.float64), vectors)])

    # ------------------------------------------------------------ reads

    @_locked
    def known(self, root: str, moments: bool = False) -> dict[str, Known]:
        """What is recorded from `root` or lies inside it (indexed from another root: a sub-folder, a parent,
        the tar itself), by path: a path is one item whichever root it was indexed from. With `moments`, whether
        each item has moments recorded (else they read as recorded)."""
        base = root.rstrip("/")
        under = "root = ? OR (path > ? AND path < ?) OR (path > ? AND path < ?)"  # '0' and ';' follow '/' and ':'
        args = (root, base + "/", base + "0", base + "::", base + ":;")
        has = "EXISTS (SELECT 1 FROM moments WHERE item_id = items.id)" if moments else "1"
        out = {r[0]: Known(*r[1:]) for r in self.db.execute(
            f"SELECT path, size, mtime, sha256, root, sidecars, date_source IS NOT NULL, {has} FROM items WHERE {under}",
            args)}
        out.update({r[0]: Known(*r[1:], None) for r in self.db.execute(
            f"SELECT path, size, mtime, NULL, root FROM skipped WHERE {under}", args)})
        return out

    @_locked
    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    @_locked
    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids [N] int64, embeddings [N, D] float32) of every item, in id order."""
        dim = int(self.get_meta("dim") or 0)
        ids, blobs = [], []
        for i, blob in self.db.execute("SELECT id, embedding FROM items ORDER BY id"):
            ids.append(i)
            blobs.append(blob)
        matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), dim) if ids else np.zeros((0, dim), np.float32)
        return np.asarray(ids, dtype=np.int64), matrix

    @_locked
    def items(self, ids: Sequence[int]) -> list[Item]:
        """Items by id, in the order given (unknown ids are left out)."""
        if not len(ids):
            return []
        rows = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT {self._item_select} FROM items WHERE id IN ({marks})", chunk):
                rows[row[0]] = _item(row)
        return [rows[i] for i in ids if i in rows]

    @_locked
    def moments(self, ids: Sequence[int]) -> dict[int, Moments]:
        """The moments of the items `ids` that have any (a store from before moments has none)."""
        if not self._has_moments or not len(ids):
            return {}
        dim = int(self.get_meta("dim") or 0)
        rows: dict[int, list[tuple[int, float | None, bytes]]] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for item_id, frame, seconds, blob in self.db.execute(
                    f"SELECT item_id, frame, seconds, embedding FROM moments WHERE item_id IN ({','.join('?' * len(chunk))})"
                    " ORDER BY item_id, frame", chunk):
                rows.setdefault(item_id, []).append((frame, seconds, blob))
        return {i: Moments(np.asarray([f for f, _, _ in r], dtype=np.int64),
                           np.asarray([np.nan if t is None else t for _, t, _ in r], dtype=np.float64),
                           np.frombuffer(b"".join(b for *_, b in r), dtype=np.float32).reshape(len(r), dim))
                for i, r in rows.items()}

    @_locked
    def item_by_path(self, path: str) -> Item | None:
        row = self.db.execute(f"SELECT {self._item_select} FROM items WHERE path = ?", (path,)).fetchone()
        return _item(row) if row else None

    @_locked
    def filter_ids(self, folder: str | None = None, after: float | None = None, before: float | None = None,
                   ext: Sequence[str] | None = None, taken_after: float | None = None, taken_before: float | None = None,
                   camera: str | None = None, has_gps: bool | None = None) -> np.ndarray:
        """Ids of the items matching every given filter: inside `folder`, modified in [after, before), extension,
        taken in [taken_after, taken_before), camera model containing `camera` (any case), GPS data or not."""
        where, args = [], []
        photo = taken_after is not None or taken_before is not None or camera or has_gps is not None
        if photo and "date_source" not in self._columns:
            raise InputFileError(f"{self.directory}: the store was made before photo metadata was read; run "
                                 f"`clipworks index FOLDER --store {self.directory}` once to add it")
        if taken_after is not None:
            where.append("taken >= ?")
            args.append(taken_after)
        if taken_before is not None:
            where.append("taken < ?")
            args.append(taken_before)
        if camera:
            where.append("instr(lower(camera), ?) > 0")
            args.append(camera.lower())
        if has_gps is not None:
            where.append("gps = ?")
            args.append(int(has_gps))
        if folder:
            folder = str(Path(folder).expanduser().resolve()) if "::" not in folder else folder
            where.append("(folder = ? OR folder LIKE ? ESCAPE '\\')")
            escaped = folder.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args += [folder, escaped.rstrip("/") + "/%"]
        if after is not None:
            where.append("mtime >= ?")
            args.append(after)
        if before is not None:
            where.append("mtime < ?")
            args.append(before)
        if ext:
            norm = [e.lower().lstrip(".") for e in ext]
            where.append(f"ext IN ({','.join('?' * len(norm))})")
            args += norm
        sql = "SELECT id FROM items" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return np.asarray([r[0] for r in self.db.execute(sql, args)], dtype=np.int64)

    @_locked
    def same_content(self) -> list[list[int]]:
        """Ids of the items sharing one content hash (byte-identical files), one list per hash with two or more,
        each in id order."""
        groups: dict[str, list[int]] = {}
        for sha, item_id in self.db.execute(
                "SELECT sha256, id FROM items WHERE sha256 IN (SELECT sha256 FROM items GROUP BY sha256 HAVING COUNT(*) > 1)"
                " ORDER BY sha256, id"):
            groups.setdefault(sha, []).append(item_id)
        return list(groups.values())

    @_locked
    def captions(self) -> list[tuple[int, str]]:
        """(id, caption) of every item that has one: the default caption bank for image->text."""
        return list(self.db.execute("SELECT id, caption FROM items WHERE caption IS NOT NULL AND caption != '' ORDER BY id"))

    @_locked
    def skipped(self) -> list[tuple[str, str]]:
        return list(self.db.execute("SELECT path, reason FROM skipped ORDER BY path"))

    @_locked
    def roots(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT root FROM items UNION SELECT DISTINCT root FROM skipped")]

    @_locked
    def stats(self) -> dict[str, Any]:
        return {"items": len(self), "skipped": self.db.execute("SELECT COUNT(*) FROM skipped").fetchone()[0],
                "model": self.get_meta("model"), "dim": int(self.get_meta("dim") or 0), "version": self.version,
                "roots": self.roots()}

    @_locked
    def export(self, out_dir: str | Path) -> list[Path]:
        """ids.npy, vectors.npy and items.jsonl (one JSON object per item, same order): the neutral bulk-load
        format for a vector database (Qdrant, Milvus, LanceDB, pgvector) when one machine is not enough."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        ids, vectors = self.vectors()
        np.save(out / "ids.npy", ids)
        np.save(out / "vectors.npy", vectors)
        with (out / "items.jsonl").open("w", encoding="utf-8") as f:
            for item in self.items(ids):
                f.write(json.dumps(item.to_json()) + "\n")
        return [out / "ids.npy", out / "vectors.npy", out / "items.jsonl"]
