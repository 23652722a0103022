"""Image files as samples: the extensions the readers take, loading one file into a Sample, or a Skipped
record saying why it cannot be used, and a photo's EXIF metadata (date taken, camera, GPS)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, BinaryIO

from clipworks.data.types import Sample, Skipped
from clipworks.errors import InputFileError
from clipworks.model.transforms import HEIF_EXTENSIONS, heif_support, load_image

# .heic/.heif decode through pillow-heif (the `heic` extra); without it such a file is skipped, saying so
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", *HEIF_EXTENSIONS)
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
MODEL, DATE_TIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 0x0110, 0x9003, 0x9011


def skip_reason(exc: InputFileError, path: str) -> str:
    """An InputFileError's message without its leading "path: ", for a Skipped record keyed by that path."""
    message = str(exc)
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def is_image_name(name: str) -> bool:
    """True for a file name with one of IMAGE_EXTENSIONS (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def load_sample(image_path: str, captions: list[str]) -> Sample | Skipped:
    """The image at `image_path` with its captions, or a Skipped record naming why it cannot be read."""
    try:
        image = load_image(image_path)
    except InputFileError as exc:
        return Skipped(image_path, skip_reason(exc, image_path))
    return Sample(image=image, captions=captions, key=image_path)


def _exif_time(value: Any, offset: Any) -> float | None:
    """An EXIF "YYYY:MM:DD HH:MM:SS" as a POSIX time: at its OffsetTimeOriginal ("+02:00") if it has one, else
    in local time (as the date filters read a date without a zone); None if it is not a real date."""
    try:
        text = str(value).strip().strip("\x00")[:19]
        moment = datetime.strptime(text, "%Y:%m:%d %H:%M:%S")
        if offset:
            moment = datetime.fromisoformat(moment.isoformat() + str(offset).strip().strip("\x00"))
        return moment.timestamp()
    except (TypeError, ValueError, OverflowError, OSError):
        return None  # "0000:00:00 00:00:00", blanks and other placeholders cameras write


def photo_metadata(source: str | os.PathLike | BinaryIO, name: str, mtime: float) -> dict[str, Any]:
    """A photo's `taken` (EXIF DateTimeOriginal, else `mtime`) with `date_source` ("exif" or "file"), `camera`
    (EXIF Model) and `gps` (GPS data present), read from its header without decoding the pixels; a file
    without readable EXIF gets the file time and no camera."""
    from PIL import Image

    found: dict[str, Any] = {"taken": mtime, "date_source": "file", "camera": None, "gps": False}
    try:
        if name.lower().endswith(HEIF_EXTENSIONS):
            heif_support(name)
        with Image.open(source) as opened:
            exif = opened.getexif()
            details = exif.get_ifd(EXIF_IFD)
            gps = exif.get_ifd(GPS_IFD)
    except Exception:  # no EXIF to read (a damaged file is caught, and named, by the decoding that follows)
        return found
    taken = _exif_time(details.get(DATE_TIME_ORIGINAL), details.get(OFFSET_TIME_ORIGINAL))
    if taken is not None:
        found.update(taken=taken, date_source="exif")
    model = str(exif.get(MODEL) or "").strip().strip("\x00").strip()
    found.update(camera=model or None, gps=bool(gps))
    return found
