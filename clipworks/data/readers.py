"""Readers for a user's own image-caption collection: a folder, a caption table, or WebDataset tar shards.

Every reader yields `Sample`s, or a `Skipped` record for an item it cannot use; one bad image or caption
never stops a run. `SkipReport` tallies those records for the end-of-run summary, and `open_pairs` turns a
`--data` argument into the right reader (or a registered generated source such as "world").
"""

from __future__ import annotations

import codecs
import csv
import glob
import inspect
import io
import json
import os
import posixpath
import random
import re
import tarfile
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from clipworks.data.types import Sample, Skipped
from clipworks.errors import InputFileError
from clipworks.model.transforms import _short_reason, decode_image, load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
IMAGE_COLUMNS = ("path", "filepath", "file", "image", "image_path")
CAPTION_COLUMNS = ("caption", "text", "title", "captions")
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl")
SHARD_EXTENSIONS = (".tar", ".tar.gz", ".tgz")


# ----------------------------------------------------------------------------------------------
# Text


def _decode_text(data: bytes, path: str) -> str:
    """Bytes of a user's text file -> str: UTF-8 (BOM stripped), UTF-16/32 by BOM, else cp1252, else latin-1."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(codec)  # the codec reads and drops the BOM itself
            except UnicodeDecodeError as exc:
                raise InputFileError(f"{path}: has a {codec.upper()} byte-order mark but is not valid {codec.upper()} "
                                     f"({exc.reason} at byte {exc.start})") from None
    if b"\x00" in data:
        raise InputFileError(f"{path}: contains NUL bytes, so it is not a text file "
                             "(or it is UTF-16 without a byte-order mark; save it as UTF-8)")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    for codec in ("utf-8", "cp1252"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")  # every byte is a latin-1 character, so this cannot fail


def _nonempty_lines(text: str) -> list[str]:
    # Split on line ends only: str.splitlines() would also split on form feeds and U+0085 inside captions.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [line.strip() for line in lines if line.strip()]


def read_caption_file(path: str | os.PathLike) -> list[str]:
    """The captions in a .txt file, one per non-empty line, whatever common encoding it was saved in."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read caption file ({exc.strerror or exc})") from None
    captions = _nonempty_lines(_decode_text(data, path))
    if not captions:
        raise InputFileError(f"{path}: no captions (the file is empty or only whitespace)")
    return captions


def _captions_from_value(value: Any) -> list[str]:
    """A table cell or JSON field -> captions: a string is one caption, a list gives one per string."""
    values = value if isinstance(value, list) else [value]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def _find_field(names: Iterable[str], choices: Sequence[str]) -> str | None:
    """The first of `choices` (in preference order) present among `names`, compared case-insensitively."""
    by_lower = {}
    for name in names:
        if isinstance(name, str):
            by_lower.setdefault(name.strip().lower(), name)
    for choice in choices:
        if choice in by_lower:
            return by_lower[choice]
    return None


# ----------------------------------------------------------------------------------------------
# Images


def _reason(exc: InputFileError, path: str) -> str:
    """An InputFileError's message without its leading "path: ", for a Skipped record keyed by that path."""
    message = str(exc)
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _load_sample(image_path: str, captions: list[str]) -> Sample | Skipped:
    try:
        image = load_image(image_path)
    except InputFileError as exc:
        return Skipped(image_path, _reason(exc, image_path))
    return Sample(image=image, captions=captions, key=image_path)


# ----------------------------------------------------------------------------------------------
# A folder of images with .txt captions


class ImageTextFolder(Dataset):
    """Every image under `root` (recursively, sorted) that has a same-stem .txt caption file beside it.

    Images without a caption file are not items; they are listed in `missing_captions`. Hidden files and
    folders (names starting with ".", such as macOS "._x.jpg" resource forks) are ignored.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        root = os.fspath(root)
        if not os.path.exists(root):
            raise InputFileError(f"{root}: no such folder")
        if not os.path.isdir(root):
            raise InputFileError(f"{root}: not a folder")
        self.root = root
        self.items: list[tuple[str, str]] = []  # (image path, caption path)
        self.missing_captions: list[str] = []
        other_files = 0
        for folder, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            names = [n for n in filenames if not n.startswith(".")]
            # Caption lookup is exact first, then case-insensitive (photo.JPG beside photo.TXT).
            by_lower = {n.lower(): n for n in names}
            for name in sorted(names):
                if not _is_image_name(name):
                    other_files += 1
                    continue
                caption_name = os.path.splitext(name)[0] + ".txt"
                if caption_name not in names:
                    caption_name = by_lower.get(caption_name.lower())
                image_path = os.path.join(folder, name)
                if caption_name is None:
                    self.missing_captions.append(image_path)
                else:
                    self.items.append((image_path, os.path.join(folder, caption_name)))
        self.items.sort()
        self.missing_captions.sort()
        if not self.items:
            if self.missing_captions:
                found = f"found {len(self.missing_captions)} images without captions"
            else:
                found = f"found no {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} files among {other_files} files"
            raise InputFileError(f"{root}: no images with .txt captions ({found})")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample | Skipped:
        image_path, caption_path = self.items[index]
        try:
            captions = read_caption_file(caption_path)
        except InputFileError as exc:
            return Skipped(image_path, f"unreadable caption file ({exc})")
        return _load_sample(image_path, captions)


# ----------------------------------------------------------------------------------------------
# A caption table: .csv, .tsv or .jsonl


def _pick_delimiter(text: str, path: str) -> tuple[str, list[str]]:
    """The delimiter (comma, tab or semicolon) whose header row names an image and a caption column.

    The sniffed delimiter is tried first; the header decides, because captions often contain commas.
    Returns (delimiter, header cells under it).
    """
    first_line = text.split("\n", 1)[0]
    default = "\t" if path.lower().endswith(".tsv") else ","
    try:
        sniffed = csv.Sniffer().sniff(text[:65536], delimiters=",\t;").delimiter
    except csv.Error:
        counts = {d: first_line.count(d) for d in (default, ",", "\t", ";")}
        sniffed = max(counts, key=counts.get) if max(counts.values()) else default
    candidates = list(dict.fromkeys([sniffed, default, ",", "\t", ";"]))
    headers = {d: next(csv.reader(io.StringIO(first_line, newline=""), delimiter=d), []) for d in candidates}
    for d in candidates:
        if _find_field(headers[d], IMAGE_COLUMNS) and _find_field(headers[d], CAPTION_COLUMNS):
            return d, headers[d]
    return sniffed, headers[sniffed]


def _missing_columns_error(path: str, header: list[str]) -> InputFileError:
    missing = []
    if _find_field(header, IMAGE_COLUMNS) is None:
        missing.append(f"an image column ({', '.join(IMAGE_COLUMNS)})")
    if _find_field(header, CAPTION_COLUMNS) is None:
        missing.append(f"a caption column ({', '.join(CAPTION_COLUMNS)})")
    found = ", ".join(repr(h) for h in header) or "none"
    return InputFileError(f"{path}: the header row has no {' and no '.join(missing)}; "
                          f"columns found: {found} (the first row must name the columns)")


class CaptionTable(Dataset):
    """Image paths with captions from a .csv/.tsv table (header row required) or a .jsonl file.

    Image column: one of path, filepath, file, image, image_path; caption column: one of caption, text, title,
    captions (case-insensitive). Relative paths resolve against `image_root`, else the table's folder.
    Rows naming the same image merge into one item with several captions. A row that cannot be used
    (a malformed JSON line, an empty path) is an item that yields a Skipped keyed "table:line".
    """

    def __init__(self, path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise InputFileError(f"{path}: no such file" if not os.path.exists(path) else f"{path}: not a file")
        if not path.lower().endswith(TABLE_EXTENSIONS):
            raise InputFileError(f"{path}: not a caption table (expected {', '.join(TABLE_EXTENSIONS)})")
        if image_root is not None:
            image_root = os.fspath(image_root)
            if not os.path.isdir(image_root):
                raise InputFileError(f"{image_root}: image root is not a folder")
        self.path = path
        self.image_root = image_root if image_root is not None else os.path.dirname(os.path.abspath(path))
        with open(path, "rb") as f:
            text = _decode_text(f.read(), path)
        self._items: list[tuple[str, list[str]] | Skipped] = []
        self._index_of: dict[str, int] = {}
        rows = self._jsonl_rows(text) if path.lower().endswith(".jsonl") else self._csv_rows(text)
        for line, image, captions in rows:
            self._add(line, image, captions)
        if not self._index_of:
            problems = f"; {len(self._items)} unusable rows, e.g. {self._items[0].key}: {self._items[0].reason}" \
                if self._items else ""
            raise InputFileError(f"{path}: no rows with an image path{problems}")
        self.image_paths = [item[0] for item in self._items if not isinstance(item, Skipped)]

    def _csv_rows(self, text: str) -> Iterator[tuple[int, str | None, Any]]:
        if not text.strip():
            raise InputFileError(f"{self.path}: empty file (a header row naming the columns is required)")
        delimiter, header = _pick_delimiter(text, self.path)
        image_col, caption_col = _find_field(header, IMAGE_COLUMNS), _find_field(header, CAPTION_COLUMNS)
        if image_col is None or caption_col is None:
            raise _missing_columns_error(self.path, header)
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            for row in reader:
                yield reader.line_num, row.get(image_col), row.get(caption_col)
        except csv.Error as exc:
            self._items.append(Skipped(f"{self.path}:{reader.line_num}",
                                       f"malformed table row ({exc}); the rest of the table was not read"))

    def _jsonl_rows(self, text: str) -> Iterator[tuple[int, str | None, Any]]:
        for line_number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
            if not line.strip():
                continue
            key = f"{self.path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                self._items.append(Skipped(key, f"malformed JSON line ({exc.msg} at column {exc.colno})"))
                continue
            if not isinstance(record, dict):
                self._items.append(Skipped(key, f"malformed JSON line (a {type(record).__name__}, not an object)"))
                continue
            image_key, caption_key = _find_field(record, IMAGE_COLUMNS), _find_field(record, CAPTION_COLUMNS)
            if image_key is None:
                self._items.append(Skipped(key, f"no image field (expected one of {', '.join(IMAGE_COLUMNS)}; "
                                                f"found {', '.join(record) or 'none'})"))
                continue
            yield line_number, record[image_key], record.get(caption_key) if caption_key else None

    def _add(self, line: int, image: Any, caption: Any) -> None:
        if not isinstance(image, str) or not image.strip():
            self._items.append(Skipped(f"{self.path}:{line}", "empty image path"))
            return
        image = image.strip()
        if "://" in image:
            self._items.append(Skipped(image, "a URL, not a local file (download the images first)"))
            return
        image_path = os.path.normpath(os.path.join(self.image_root, os.path.expanduser(image)))
        captions = _captions_from_value(caption)
        if image_path in self._index_of:
            self._items[self._index_of[image_path]][1].extend(captions)
        else:
            self._index_of[image_path] = len(self._items)
            self._items.append((image_path, captions))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Sample | Skipped:
        item = self._items[index]
        if isinstance(item, Skipped):
            return item
        image_path, captions = item
        if not captions:
            return Skipped(image_path, "no caption")
        return _load_sample(image_path, list(captions))


# ----------------------------------------------------------------------------------------------
# WebDataset tar shards

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")


def expand_braces(pattern: str) -> list[str]:
    """Expand shell-style braces: "s-{000..002}.tar" -> s-000.tar, s-001.tar, s-002.tar; "{a,b}" -> a, b."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[:match.start()], match.group(1), pattern[match.end():]
    numeric = _RANGE.match(body)
    if numeric:
        a, b = numeric.group(1), numeric.group(2)
        padded = any(len(s.lstrip("-")) > 1 and s.lstrip("-").startswith("0") for s in (a, b))
        width = max(len(a), len(b)) if padded else 0
        lo, hi = int(a), int(b)
        step = 1 if hi >= lo else -1
        choices = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    elif "," in body:
        choices = body.split(",")
    else:  # "{x}" is not a brace expression; keep it literally
        return [head + "{" + body + "}" + p for p in expand_braces(tail)]
    return [head + c + rest for c in choices for rest in expand_braces(tail)]


def expand_shards(urls: str | Sequence[str]) -> list[str]:
    """Local shard paths from a path, a glob, a brace pattern, or a list of them (order kept, duplicates dropped)."""
    patterns = [urls] if isinstance(urls, (str, os.PathLike)) else list(urls)
    shards: list[str] = []
    missing: list[str] = []
    for pattern in patterns:
        for name in expand_braces(os.fspath(pattern)):
            if glob.has_magic(name):
                matches = sorted(glob.glob(os.path.expanduser(name)))
                if not matches:
                    missing.append(f"{name} (matched nothing)")
                shards.extend(matches)
            elif os.path.isfile(os.path.expanduser(name)):
                shards.append(os.path.expanduser(name))
            else:
                missing.append(name)
    if missing:
        listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputFileError(f"{urls}: {len(missing)} shard(s) not found: {listed}")
    if not shards:
        raise InputFileError(f"{urls}: no shards given")
    return list(dict.fromkeys(shards))


def _split_member_name(name: str) -> tuple[str, str]:
    """Tar member "dir/0001.seg.png" -> key "dir/0001", suffix "seg.png" (split at the basename's first dot)."""
    while name.startswith("./"):
        name = name[2:]
    folder, base = posixpath.split(name)
    stem, _, suffix = base.partition(".")
    return posixpath.join(folder, stem), suffix.lower()


def _sample_from_group(shard: str, key: str, members: dict[str, bytes]) -> Sample | Skipped:
    sample_key = f"{shard}:{key}"
    found = ", ".join(sorted(members)) or "nothing"
    image_suffix = next((s for s in members if ("." + s).endswith(IMAGE_EXTENSIONS)), None)
    if image_suffix is None:
        return Skipped(sample_key, f"no image member (found: {found})")
    captions: list[str] = []
    if "txt" in members:
        try:
            captions = _nonempty_lines(_decode_text(members["txt"], sample_key + ".txt"))
        except InputFileError:  # binary bytes in a .txt member: fall back to .json if there is one
            captions = []
    if not captions and "json" in members:
        try:
            record = json.loads(_decode_text(members["json"], sample_key + ".json"))
        except (json.JSONDecodeError, InputFileError):
            record = None
        if isinstance(record, dict):
            field = _find_field(record, ("caption", "text"))
            captions = _captions_from_value(record[field]) if field else []
    if not captions:
        return Skipped(sample_key, f"no caption (.txt, or .json with a caption/text field; found: {found})")
    try:
        image = decode_image(io.BytesIO(members[image_suffix]), sample_key)
    except InputFileError as exc:
        return Skipped(sample_key, _reason(exc, sample_key))
    return Sample(image=image, captions=captions, key=sample_key)


def _read_shard(shard: str) -> Iterator[Sample | Skipped]:
    """The samples of one tar shard, grouping consecutive members by key; a damaged tar ends the shard."""
    key: str | None = None
    members: dict[str, bytes] = {}
    produced = 0
    try:
        with tarfile.open(shard, mode="r|*") as archive:
            for info in archive:
                if not info.isfile():
                    continue
                member_key, suffix = _split_member_name(info.name)
                if posixpath.basename(member_key).startswith(".") or not suffix:
                    continue
                if member_key != key:  # a new key completes the previous group before its data is read
                    if key is not None:
                        produced += 1
                        yield _sample_from_group(shard, key, members)
                    key, members = member_key, {}
                members[suffix] = archive.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        # The group being read when the damage was found is lost with the rest of the shard.
        yield Skipped(shard, f"corrupt or truncated tar ({_short_reason(exc)}; {produced} samples read before it)")
        return
    if key is not None:
        yield _sample_from_group(shard, key, members)


def _rank_and_world_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class WebDatasetShards(IterableDataset):
    """Samples from local WebDataset .tar shards, each shard read by exactly one worker of one rank.

    Splitting rule, over the shard list (shuffled identically everywhere by `seed` + epoch when
    `shuffle_shards`): shard i goes to rank i % world_size, and among that rank's shards, the j-th goes
    to DataLoader worker j % num_workers. With fewer shards than world_size x num_workers some workers get
    none and stay idle (a warning says so). Members group by key: the member name up to the first dot of
    its basename, with its folder. A .txt member gives one caption per non-empty line.
    """

    def __init__(self, urls: str | Sequence[str], shuffle_shards: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.urls = urls
        self.shards = expand_shards(urls)
        self.shuffle_shards, self.seed = shuffle_shards, seed
        self.epoch = 0
        self._warned = False

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the shard order for this epoch (with `shuffle_shards`); call it before iterating."""
        self.epoch = epoch

    def shards_for(self, rank: int, world_size: int, worker: int, num_workers: int) -> list[str]:
        """The shards one worker of one rank reads (see the class docstring for the rule)."""
        order = list(self.shards)
        if self.shuffle_shards:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return order[rank::world_size][worker::num_workers]

    def __iter__(self) -> Iterator[Sample | Skipped]:
        rank, world_size = _rank_and_world_size()
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        readers = world_size * num_workers
        if len(self.shards) < readers and not self._warned and rank == 0 and worker == 0:
            warnings.warn(f"{len(self.shards)} shards for {world_size} rank(s) x {num_workers} worker(s): "
                          f"{readers - len(self.shards)} reader(s) will have no shard and stay idle", stacklevel=2)
        self._warned = True
        for shard in self.shards_for(rank, world_size, worker, num_workers):
            yield from _read_shard(shard)


# ----------------------------------------------------------------------------------------------
# Skips


def _category(reason: str) -> str:
    return reason.split(" (", 1)[0].strip()


class SkipReport:
    """Tallies Skipped records by reason for the end-of-run summary; keeps a few examples, not all keys."""

    MAX_EXAMPLES = 100

    def __init__(self, total: int | None = None) -> None:
        self.total = total  # items seen in all, when the caller knows it; else kept + skipped if kept were counted
        self.kept = 0
        self._counts: Counter[str] = Counter()
        self._first: dict[str, Skipped] = {}
        self._examples: list[Skipped] = []

    def add(self, item: Skipped | Sample) -> None:
        """Record a Skipped item (a Sample counts as kept, so `for item in data: report.add(item)` works)."""
        if isinstance(item, Sample):
            self.kept += 1
            return
        category = _category(item.reason)
        self._counts[category] += 1
        self._first.setdefault(category, item)
        if len(self._examples) < self.MAX_EXAMPLES:
            self._examples.append(item)

    def add_kept(self, n: int = 1) -> None:
        self.kept += n

    @property
    def count(self) -> int:
        return sum(self._counts.values())

    def by_reason(self) -> dict[str, int]:
        """Skips per reason category (the reason up to " ("), most common first."""
        return dict(self._counts.most_common())

    def examples(self, n: int = 5) -> list[Skipped]:
        """Up to n skipped items: the first of each reason category, then others in the order they came."""
        chosen = [self._first[c] for c in self.by_reason()][:n]
        for item in self._examples:
            if len(chosen) >= n:
                break
            if not any(item is c for c in chosen):
                chosen.append(item)
        return chosen

    def first(self) -> str:
        """The first skipped item with its full reason ("a.png: unreadable caption file (a.txt: ...)"), or ""."""
        examples = self.examples(1)
        return f"{examples[0].key}: {examples[0].reason}" if examples else ""

    def summary(self, total: int | None = None) -> str:
        """e.g. "skipped 3 of 1000 samples: 2 corrupt or truncated image, 1 no such file; e.g. a.jpg, b.png"."""
        total = total if total is not None else self.total
        if total is None and self.kept:
            total = self.kept + self.count
        of = f" of {total}" if total is not None else ""
        noun = "sample" if (total if total is not None else self.count) == 1 else "samples"
        if not self.count:
            return f"skipped 0{of} {noun}"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.by_reason().items())
        examples = ", ".join(s.key for s in self.examples(min(len(self._counts), 5)))
        return f"skipped {self.count}{of} {noun}: {reasons}; e.g. {examples}"


def collate_samples(items: Sequence[Sample | Skipped]) -> tuple[list[Sample], list[Skipped]]:
    """A DataLoader collate_fn that separates usable samples from skipped items instead of failing on them."""
    samples = [item for item in items if isinstance(item, Sample)]
    skipped = [item for item in items if isinstance(item, Skipped)]
    return samples, skipped


# ----------------------------------------------------------------------------------------------
# --data


SOURCES: dict[str, Callable[..., Dataset]] = {}
_SOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def register_source(name: str, factory: Callable[..., Dataset]) -> None:
    """Make `open_pairs(name)` and `open_pairs("name:key=value,...")` call factory(**options)."""
    if not _SOURCE_NAME.match(name):
        raise ValueError(f"source name {name!r}: use letters, digits, '_' and '-', starting with a letter")
    SOURCES[name] = factory  # re-registering (a module reloaded) replaces the old factory


def _parse_value(text: str) -> Any:
    text = text.strip()
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _parse_options(spec: str, text: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise InputFileError(f"--data {spec!r}: option {part!r} is not key=value")
        options[key.strip()] = _parse_value(value)
    return options


def _accepted(factory: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments `factory` accepts: callers pass generic ones (seed) that not every source takes."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return kwargs
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in kwargs.items() if k in names}


def _looks_like_shards(spec: str) -> bool:
    return spec.lower().endswith(SHARD_EXTENSIONS) or glob.has_magic(spec) or _BRACE.search(spec) is not None


def open_pairs(spec: str, **kwargs: Any) -> Dataset:
    """Turn a --data argument into a data set of Samples.

    A registered source name, optionally with options ("world:split=train,size=50000,seed=0"); a folder
    (ImageTextFolder); a .csv/.tsv/.jsonl table (CaptionTable); a .tar shard, glob or brace pattern
    (WebDatasetShards). Options written in the spec are defaults that keyword arguments override, and
    keyword arguments a reader does not take (seed for a folder) are ignored. Write "./name" to mean a
    folder that has the same name as a registered source.
    """
    spec = os.fspath(spec).strip()
    name, colon, option_text = spec.partition(":")
    if name in SOURCES and "/" not in name:
        factory = SOURCES[name]
        options = {**_parse_options(spec, option_text), **_accepted(factory, kwargs)}
        try:
            inspect.signature(factory).bind(**options)
        except TypeError as exc:
            raise InputFileError(f"--data {spec!r}: source {name!r} does not take these options ({exc})") from None
        except ValueError:
            pass  # no signature to check against (a builtin); let the call decide
        return factory(**options)
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        return ImageTextFolder(path)
    if path.lower().endswith(TABLE_EXTENSIONS):
        return CaptionTable(path, **_accepted(CaptionTable, kwargs))
    if _looks_like_shards(path):
        return WebDatasetShards(path, **_accepted(WebDatasetShards, kwargs))
    registered = ", ".join(sorted(SOURCES)) or "none"
    what = "no such file or folder" if not os.path.exists(path) else "a file of an unknown kind"
    raise InputFileError(
        f"--data {spec!r}: {what}; tried a registered source name (registered: {registered}), a folder of images "
        f"with .txt captions, a caption table ({', '.join(TABLE_EXTENSIONS)}), and .tar shards "
        "(a path, glob or {000..009} brace pattern)")
