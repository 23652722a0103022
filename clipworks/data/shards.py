"""Local WebDataset .tar shards: shard lists from globs and brace patterns, members grouped into samples, and
the split of shards over ranks and DataLoader workers."""

from __future__ import annotations

import glob
import io
import json
import os
import posixpath
import random
import re
import tarfile
import warnings
import zlib
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import IterableDataset, get_worker_info

from clipworks.data.captions import captions_from_value, decode_text, find_field, member_captions
from clipworks.data.folders import is_hidden
from clipworks.data.images import IMAGE_EXTENSIONS, skip_reason
from clipworks.data.types import Sample, Skipped
from clipworks.errors import InputFileError
from clipworks.model.transforms import _short_reason, decode_image

SHARD_EXTENSIONS = (".tar", ".tar.gz", ".tgz")

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


def split_member_name(name: str) -> tuple[str, str]:
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
    # Binary bytes in a .txt member give no captions: fall back to .json if there is one.
    captions = member_captions(members["txt"], sample_key + ".txt") if "txt" in members else []
    if not captions and "json" in members:
        try:
            record = json.loads(decode_text(members["json"], sample_key + ".json"))
        except (json.JSONDecodeError, InputFileError):
            record = None
        if isinstance(record, dict):
            field = find_field(record, ("caption", "text"))
            captions = captions_from_value(record[field]) if field else []
    if not captions:
        return Skipped(sample_key, f"no caption (.txt, or .json with a caption/text field; found: {found})")
    try:
        image = decode_image(io.BytesIO(members[image_suffix]), sample_key)
    except InputFileError as exc:
        return Skipped(sample_key, skip_reason(exc, sample_key))
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
                member_key, suffix = split_member_name(info.name)
                if is_hidden(info.name) or not suffix:
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


def looks_like_shards(spec: str) -> bool:
    """True for a --data argument that names tar shards: a .tar/.tar.gz/.tgz path, a glob or a brace pattern."""
    return spec.lower().endswith(SHARD_EXTENSIONS) or glob.has_magic(spec) or _BRACE.search(spec) is not None


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
