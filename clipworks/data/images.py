"""Image files as samples: the extensions the readers take, and loading one file into a Sample, or a Skipped
record saying why it cannot be used."""

from __future__ import annotations

from clipworks.data.types import Sample, Skipped
from clipworks.errors import InputFileError
from clipworks.model.transforms import load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


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
