"""Walking a user's folders, with one rule for what is not data, and the folder-of-images-with-captions reader.

The rule, used by every reader, the search indexer, evaluation's class folders and video folders: a name that
starts with "." is hidden (".DS_Store", ".git/", and macOS "._x.jpg" AppleDouble forks, which hold no image),
and so is everything inside a hidden folder. Hidden things are skipped silently, never counted as corrupt.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from torch.utils.data import Dataset

from clipworks.data.captions import read_caption_file
from clipworks.data.images import IMAGE_EXTENSIONS, is_image_name, load_sample
from clipworks.data.types import Sample, Skipped
from clipworks.errors import InputFileError


def is_hidden(name: str) -> bool:
    """True for a hidden file or folder name, or a relative "/"-separated path with a hidden part."""
    return any(part.startswith(".") and part not in (".", "..") for part in name.replace("\\", "/").split("/"))


def walk(root: str | os.PathLike) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(root) without hidden files and folders, each folder's names sorted (the same order everywhere).

    Like os.walk, symlinked folders are listed in the names but not descended into."""
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        yield folder, dirnames, sorted(f for f in filenames if not is_hidden(f))


def list_files(root: str | os.PathLike, extensions: Iterable[str] = (), recursive: bool = True) -> list[Path]:
    """The visible files under `root` (recursively, in walk order) whose names end with one of `extensions`
    (any case; all files when none are given)."""
    suffixes = tuple(e.lower() for e in extensions)
    found = []
    for folder, dirnames, filenames in walk(root):
        found += [Path(folder, f) for f in filenames if not suffixes or f.lower().endswith(suffixes)]
        if not recursive:
            dirnames.clear()
    return found


class ImageTextFolder(Dataset):
    """Every image under `root` (recursively, sorted) that has a same-stem .txt caption file beside it.

    Images without a caption file are not items; they are listed in `missing_captions`. Hidden files and
    folders are ignored (see `is_hidden`).
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
        for folder, _, names in walk(root):
            # Caption lookup is exact first, then case-insensitive (photo.JPG beside photo.TXT).
            by_lower = {n.lower(): n for n in names}
            for name in names:
                if not is_image_name(name):
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
        return load_sample(image_path, captions)
