"""Tables users write: a .csv/.tsv with a header row, or a .jsonl file (one object a line), read as rows of the
columns a caller wants (`table_rows`); and caption tables built on them (`CaptionTable`)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from clipworks.data.captions import captions_from_value, decode_text, find_field
from clipworks.data.images import load_sample
from clipworks.data.types import Sample, Skipped
from clipworks.errors import InputFileError

IMAGE_COLUMNS = ("path", "filepath", "file", "image", "image_path")
CAPTION_COLUMNS = ("caption", "text", "title", "captions")
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl")
LIST_EXTENSION = ".txt"  # one value a line: a table of a single column


@dataclass
class TableRow:
    """One row of a table: `key` ("table:line") names it in messages; `values` holds each wanted column's cell
    (None where the row has none)."""

    key: str
    values: dict[str, Any]


def resolve_path(value: str, folder: str | os.PathLike) -> str:
    """A path written in a table: `~` expanded, a relative one resolved against `folder` (usually the table's)."""
    return os.path.normpath(os.path.join(folder, os.path.expanduser(value)))


def read_table_text(path: str | os.PathLike, kind: str, extensions: Sequence[str] = TABLE_EXTENSIONS) -> str:
    """The text of a table file, whatever common encoding it was saved in; errors name the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileError(f"{path}: no such file" if not os.path.exists(path) else f"{path}: not a file")
    if not path.lower().endswith(tuple(extensions)):
        raise InputFileError(f"{path}: not a {kind} (expected {', '.join(extensions)})")
    with open(path, "rb") as f:
        return decode_text(f.read(), path)


def table_rows(path: str, text: str, columns: Mapping[str, Sequence[str]],
               required: Sequence[str] = ()) -> Iterator[TableRow | Skipped]:
    """The rows of a table's text, in file order, with the wanted `columns` ({name: accepted headers or JSON
    keys, in preference order, case-insensitive}).

    A .csv/.tsv header row must name every column (else InputFileError). A .jsonl record without a `required`
    field, or a line that is not a JSON object, is Skipped keyed "table:line". A .txt file is a table of one
    column, one value a line."""
    lower = path.lower()
    if lower.endswith(LIST_EXTENSION):
        if len(columns) != 1:
            raise ValueError("a .txt list holds one column")
        (name,) = columns
        for line_number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
            if line.strip():
                yield TableRow(f"{path}:{line_number}", {name: line.strip()})
    elif lower.endswith(".jsonl"):
        yield from _jsonl_rows(path, text, columns, required)
    else:
        yield from _csv_rows(path, text, columns)


def map_rows(rows: Sequence[Any], prepare: Callable[[Any], tuple[dict, Any]], infer: Callable[[list], list],
             result: str, batch_size: int = 64, report: Any = None, progress: bool = True, desc: str = "rows",
             unit: str = "row") -> Iterator[dict]:
    """A model over a table's rows, `batch_size` rows at a time (so memory stays flat however long the table):
    one record per row, in row order. `prepare(row)` gives (record, input), or (record, Skipped) for a row that
    cannot be used; `infer(inputs)` gives the results of a batch of inputs, each stored as record[result]. A
    skipped row's record gets "skipped": reason instead, and the Skipped goes to `report` (a SkipReport)."""
    from tqdm import tqdm

    with tqdm(total=len(rows), desc=desc, unit=unit, disable=not progress) as bar:
        for start in range(0, len(rows), batch_size):
            prepared = [prepare(row) for row in rows[start:start + batch_size]]
            results = iter(infer([x for _, x in prepared if not isinstance(x, Skipped)]))
            for record, x in prepared:
                if isinstance(x, Skipped):
                    record["skipped"] = x.reason
                    if report is not None:
                        report.add(x)
                else:
                    record[result] = next(results)
                    if report is not None:
                        report.add_kept()
                yield record
            bar.update(len(prepared))


def _pick_delimiter(text: str, path: str, columns: Mapping[str, Sequence[str]]) -> tuple[str, list[str]]:
    """The delimiter (comma, tab or semicolon) whose header row names every wanted column.

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
        if all(find_field(headers[d], choices) for choices in columns.values()):
            return d, headers[d]
    return sniffed, headers[sniffed]


def _missing_columns_error(path: str, header: list[str], columns: Mapping[str, Sequence[str]]) -> InputFileError:
    missing = [f"{'an' if name[0] in 'aeiou' else 'a'} {name} column ({', '.join(choices)})"
               for name, choices in columns.items() if find_field(header, choices) is None]
    found = ", ".join(repr(h) for h in header) or "none"
    return InputFileError(f"{path}: the header row has no {' and no '.join(missing)}; "
                          f"columns found: {found} (the first row must name the columns)")


def _csv_rows(path: str, text: str, columns: Mapping[str, Sequence[str]]) -> Iterator[TableRow | Skipped]:
    if not text.strip():
        raise InputFileError(f"{path}: empty file (a header row naming the columns is required)")
    delimiter, header = _pick_delimiter(text, path, columns)
    fields = {name: find_field(header, choices) for name, choices in columns.items()}
    if None in fields.values():
        raise _missing_columns_error(path, header, columns)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for row in reader:
            yield TableRow(f"{path}:{reader.line_num}", {name: row.get(field) for name, field in fields.items()})
    except csv.Error as exc:
        yield Skipped(f"{path}:{reader.line_num}", f"malformed table row ({exc}); the rest of the table was not read")


def _jsonl_rows(path: str, text: str, columns: Mapping[str, Sequence[str]],
                required: Sequence[str]) -> Iterator[TableRow | Skipped]:
    for line_number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip():
            continue
        key = f"{path}:{line_number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Skipped(key, f"malformed JSON line ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(record, dict):
            yield Skipped(key, f"malformed JSON line (a {type(record).__name__}, not an object)")
            continue
        fields = {name: find_field(record, choices) for name, choices in columns.items()}
        absent = next((name for name in required if fields[name] is None), None)
        if absent is not None:
            yield Skipped(key, f"no {absent} field (expected one of {', '.join(columns[absent])}; "
                               f"found {', '.join(record) or 'none'})")
            continue
        yield TableRow(key, {name: record[field] if field is not None else None for name, field in fields.items()})


class CaptionTable(Dataset):
    """Image paths with captions from a .csv/.tsv table (header row required) or a .jsonl file.

    Image column: one of path, filepath, file, image, image_path; caption column: one of caption, text, title,
    captions (case-insensitive). Relative paths resolve against `image_root`, else the table's folder.
    Rows naming the same image merge into one item with several captions. A row that cannot be used
    (a malformed JSON line, an empty path) is an item that yields a Skipped keyed "table:line".
    """

    COLUMNS = {"image": IMAGE_COLUMNS, "caption": CAPTION_COLUMNS}

    def __init__(self, path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> None:
        path = os.fspath(path)
        text = read_table_text(path, "caption table")
        if image_root is not None:
            image_root = os.fspath(image_root)
            if not os.path.isdir(image_root):
                raise InputFileError(f"{image_root}: image root is not a folder")
        self.path = path
        self.image_root = image_root if image_root is not None else os.path.dirname(os.path.abspath(path))
        self._items: list[tuple[str, list[str]] | Skipped] = []
        self._index_of: dict[str, int] = {}
        for row in table_rows(path, text, self.COLUMNS, required=("image",)):
            if isinstance(row, Skipped):
                self._items.append(row)
            else:
                self._add(row.key, row.values["image"], row.values["caption"])
        if not self._index_of:
            problems = f"; {len(self._items)} unusable rows, e.g. {self._items[0].key}: {self._items[0].reason}" \
                if self._items else ""
            raise InputFileError(f"{path}: no rows with an image path{problems}")
        self.image_paths = [item[0] for item in self._items if not isinstance(item, Skipped)]

    def _add(self, key: str, image: Any, caption: Any) -> None:
        if not isinstance(image, str) or not image.strip():
            self._items.append(Skipped(key, "empty image path"))
            return
        image = image.strip()
        if "://" in image:
            self._items.append(Skipped(image, "a URL, not a local file (download the images first)"))
            return
        image_path = resolve_path(image, self.image_root)
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
