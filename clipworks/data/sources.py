"""`--data`: a registry of named sources ("world", "digits") and `open_pairs`, which turns a --data argument
into a registered source, a folder, a caption table or tar shards."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from clipworks.data.folders import ImageTextFolder
from clipworks.data.shards import WebDatasetShards, looks_like_shards
from clipworks.data.tables import TABLE_EXTENSIONS, CaptionTable
from clipworks.errors import InputFileError

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
    if looks_like_shards(path):
        return WebDatasetShards(path, **_accepted(WebDatasetShards, kwargs))
    registered = ", ".join(sorted(SOURCES)) or "none"
    what = "no such file or folder" if not os.path.exists(path) else "a file of an unknown kind"
    raise InputFileError(
        f"--data {spec!r}: {what}; tried a registered source name (registered: {registered}), a folder of images "
        f"with .txt captions, a caption table ({', '.join(TABLE_EXTENSIONS)}), and .tar shards "
        "(a path, glob or {000..009} brace pattern)")
