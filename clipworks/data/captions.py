"""Caption text as users save it: one decoder for caption files, tar-shard members and tables, so training
and search read the same bytes as the same captions (UTF-8 with or without BOM, UTF-16/32 by BOM, cp1252,
latin-1), and the lookup of caption fields in table rows and JSON records."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Sequence
from typing import Any

from clipworks.errors import InputFileError


def decode_text(data: bytes, path: str) -> str:
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


def caption_lines(text: str) -> list[str]:
    # Split on line ends only: str.splitlines() would also split on form feeds and U+0085 inside captions.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [line.strip() for line in lines if line.strip()]


def decode_captions(data: bytes, name: str) -> list[str]:
    """The captions in the bytes of a caption file or a tar member's .txt: one per non-empty line.

    Raises InputFileError naming `name` when the bytes are not text."""
    return caption_lines(decode_text(data, name))


def member_captions(data: bytes, name: str) -> list[str]:
    """A tar member's captions, or none when its bytes are not text (callers fall back to other fields)."""
    try:
        return decode_captions(data, name)
    except InputFileError:
        return []


def read_caption_file(path: str | os.PathLike) -> list[str]:
    """The captions in a .txt file, one per non-empty line, whatever common encoding it was saved in."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read caption file ({exc.strerror or exc})") from None
    captions = decode_captions(data, path)
    if not captions:
        raise InputFileError(f"{path}: no captions (the file is empty or only whitespace)")
    return captions


def captions_from_value(value: Any) -> list[str]:
    """A table cell or JSON field -> captions: a string is one caption, a list gives one per string."""
    values = value if isinstance(value, list) else [value]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def find_field(names: Iterable[str], choices: Sequence[str]) -> str | None:
    """The first of `choices` (in preference order) present among `names`, compared case-insensitively."""
    by_lower = {}
    for name in names:
        if isinstance(name, str):
            by_lower.setdefault(name.strip().lower(), name)
    for choice in choices:
        if choice in by_lower:
            return by_lower[choice]
    return None
