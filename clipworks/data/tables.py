"""Caption tables: a .csv/.tsv with a header row, or a .jsonl file, naming image paths and their captions."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from typing import Any

from torch.utils.data import Dataset

from clipworks.data.captions import captions_from_value, decode_text, find_field
from clipworks.data.images import load_sample
from clipworks.data.types import Sample, Skipped
from clipworks.errors import InputFileError

IMAGE_COLUMNS = ("path", "filepath", "file", "image", "image_path")
CAPTION_COLUMNS = ("caption", "text", "title", "captions")
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl")


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
        if find_field(headers[d], IMAGE_COLUMNS) and find_field(headers[d], CAPTION_COLUMNS):
            return d, headers[d]
    return sniffed, headers[sniffed]


def _missing_columns_error(path: str, header: list[str]) -> InputFileError:
    missing = []
    if find_field(header, IMAGE_COLUMNS) is None:
        missing.append(f"an image column ({', '.join(IMAGE_COLUMNS)})")
    if find_field(header, CAPTION_COLUMNS) is None:
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
            text = decode_text(f.read(), path)
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
        image_col, caption_col = find_field(header, IMAGE_COLUMNS), find_field(header, CAPTION_COLUMNS)
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
            image_key, caption_key = find_field(record, IMAGE_COLUMNS), find_field(record, CAPTION_COLUMNS)
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
        captions = captions_from_value(caption)
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
        return load_sample(image_path, list(captions))
