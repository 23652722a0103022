"""Image loading and CLIP preprocessing: PIL image -> normalised [3, S, S] float tensor.

Pure PIL + numpy + torch. The eval transform reproduces torchvision's `Resize(int)`, `CenterCrop`,
`ToTensor` and `Normalize` step for step, so its output matches open_clip's preprocessing exactly.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import BinaryIO

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from clipworks.errors import ConfigError, ImageTooLargeError, InputFileError, missing_extra
from clipworks.model.config import INTERPOLATIONS, RESIZE_MODES, PreprocessConfig

_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}

# What PIL's decoders raise on damaged data: not only OSError ("image file is truncated") but also
# SyntaxError ("broken PNG file"), ValueError, EOFError, struct.error and zlib.error.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


# ----------------------------------------------------------------------------------------------
# Loading


def _short_reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > 120:
        text = text[:117] + "..."
    return text or type(exc).__name__


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file, apply its EXIF orientation and return it as RGB."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputFileError(f"{path}: is a directory, not an image file")
    return decode_image(path, path)


HEIF_EXTENSIONS = (".heic", ".heif")


@functools.cache
def _register_heif_opener() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def heif_support(name: str) -> None:
    """Let PIL open HEIC/HEIF files (pillow-heif's opener, registered once); an error naming the extra without it."""
    reason = missing_extra("heic", "a HEIC/HEIF image")
    if reason is not None:
        raise InputFileError(f"{name}: {reason}")
    _register_heif_opener()


def decode_image(source: str | os.PathLike | BinaryIO, name: str, min_side: int | None = None,
                 max_pixels: int | None = None) -> Image.Image:
    """Decode a file path or binary stream (e.g. a tar member) to RGB; errors are InputFileError naming `name`.

    `min_side`: for callers that only need a model's input, let JPEG decode at 1/2, 1/4 or 1/8 scale (DCT
    scaling: a fraction of the time and memory) while both sides stay at least `min_side`; the oriented size
    of the full image is then in `image.info["full_size"]`. `max_pixels`: a budget on the pixels decoded
    (after that scaling), checked from the header before any pixel is decoded (ImageTooLargeError)."""
    if isinstance(source, (str, os.PathLike)):
        empty = os.path.getsize(source) == 0
    else:
        empty = source.seek(0, io.SEEK_END) == 0
        source.seek(0)
    if empty:
        raise InputFileError(f"{name}: empty file (0 bytes), not an image")
    if name.lower().endswith(HEIF_EXTENSIONS):
        heif_support(name)
    try:
        with Image.open(source) as opened:
            if getattr(opened, "n_frames", 1) > 1:
                opened.seek(0)  # animations and multi-page files: the first frame
            width, height = opened.size
            if min_side:
                opened.draft(None, (min_side, min_side))  # a no-op for formats other than JPEG
            if max_pixels is not None and opened.size[0] * opened.size[1] > max_pixels:
                raise ImageTooLargeError(f"{name}: {opened.size[0]}x{opened.size[1]} pixels to decode, more than "
                                         f"the limit of {max_pixels}")
            opened.load()
            if opened.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8):  # turned by a quarter
                width, height = height, width
            # exif_transpose returns a new image, so it outlives the file closing here.
            oriented = ImageOps.exif_transpose(opened)
    except PermissionError:
        raise InputFileError(f"{name}: permission denied") from None
    except UnidentifiedImageError:
        raise InputFileError(f"{name}: not a recognised image file") from None
    except Image.DecompressionBombError as exc:
        raise InputFileError(
            f"{name}: image too large for PIL's decompression-bomb guard ({_short_reason(exc)}); "
            "raise PIL.Image.MAX_IMAGE_PIXELS if the file is trusted"
        ) from None
    except Image.DecompressionBombWarning as exc:  # raised only when warnings are turned into errors
        raise InputFileError(
            f"{name}: image exceeds PIL's decompression-bomb warning size ({_short_reason(exc)}), "
            "and warnings are being treated as errors"
        ) from None
    except Warning as exc:  # any other PIL warning promoted to an error (python -W error)
        raise InputFileError(
            f"{name}: PIL warning treated as an error while decoding: {type(exc).__name__}: {_short_reason(exc)}"
        ) from None
    except _DECODE_ERRORS as exc:
        raise InputFileError(f"{name}: corrupt or truncated image ({_short_reason(exc)})") from None
    try:
        rgb = to_rgb(oriented)
    except ValueError as exc:  # a colour mode PIL decodes but cannot convert
        raise InputFileError(f"{name}: {exc}") from None
    if min_side:
        rgb.info["full_size"] = (width, height)
    return rgb


# ----------------------------------------------------------------------------------------------
# Colour modes


def _composite(rgba: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    # Transparent pixels' colour channels are arbitrary (often black, sometimes garbage), so dropping
    # alpha would show that noise; composite onto a fixed background instead.
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def _gray_to_rgb(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8), mode="L").convert("RGB")


def _min_max_to_uint8(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:  # a constant image has no range to stretch
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _16bit_to_uint8(values: np.ndarray) -> np.ndarray:
    # 65535 / 257 = 255 exactly; integer rounding of value / 257.
    return ((values.astype(np.int64) + 128) // 257).astype(np.uint8)


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert an image of any PIL mode to 8-bit RGB; alpha is composited onto `background`."""
    if getattr(image, "n_frames", 1) > 1 and image.tell() != 0:
        image.seek(0)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("L", "1", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return image.convert("RGB")
    if mode == "P":
        palette_mode = image.palette.mode if image.palette is not None else "RGB"
        if "transparency" in image.info or "A" in palette_mode:
            return _composite(image.convert("RGBA"), background)
        return image.convert("RGB")
    if mode == "La":
        image = image.convert("LA")  # PIL cannot unpremultiply La straight to RGBA
        mode = "LA"
    if mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        return _composite(rgba, background)
    if mode.startswith("I;16"):
        # PIL's own I;16 -> L conversion clips at 255 instead of scaling.
        return _gray_to_rgb(_16bit_to_uint8(np.asarray(image)))
    if mode == "I":
        values = np.asarray(image).astype(np.int64)
        low, high = int(values.min()), int(values.max())
        if low >= 0 and high <= 255:
            return _gray_to_rgb(values)
        if low >= 0 and high <= 65535:
            return _gray_to_rgb(_16bit_to_uint8(values))
        return _gray_to_rgb(_min_max_to_uint8(values))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if values.min() >= 0.0 and values.max() <= 1.0:
            return _gray_to_rgb(np.rint(values * 255.0))
        return _gray_to_rgb(_min_max_to_uint8(values))
    try:
        return _composite(image.convert("RGBA"), background) if "A" in mode else image.convert("RGB")
    except ValueError as exc:
        raise ValueError(f"cannot convert an image of mode '{mode}' to RGB: {exc}") from None


# ----------------------------------------------------------------------------------------------
# Preprocessing


def _resize_shortest(image: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Shortest side to `size`, long side int(size * long / short), as torchvision's Resize(int)."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return image.resize((new_w, new_h), resample)


def _pad_to_at_least(image: Image.Image, size: int) -> Image.Image:
    """Zero-pad (centred, extra pixel right/bottom) so both sides are at least `size`, as CenterCrop does."""
    w, h = image.size
    if w >= size and h >= size:
        return image
    left, top = max(size - w, 0) // 2, max(size - h, 0) // 2
    padded = Image.new(image.mode, (max(w, size), max(h, size)), 0)
    padded.paste(image, (left, top))
    return padded


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    image = _pad_to_at_least(image, size)
    w, h = image.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _random_crop(image: Image.Image, size: int, generator: torch.Generator | None) -> Image.Image:
    image = _pad_to_at_least(image, size)
    w, h = image.size
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return image.crop((left, top, left + size, top + size))


class ClipImageTransform:
    """PIL image -> normalised float tensor [3, S, S].

    Eval: RGB, resize (shortest side or squash), centre crop, scale to [0, 1], normalise.
    Train: the CLIP paper's only augmentation, a uniformly placed random square crop of the image
    resized shortest-side-first; crops come from `generator` (per call, else per transform, else
    torch's global RNG, which DataLoader seeds per worker).
    """

    def __init__(self, cfg: PreprocessConfig, train: bool = False, generator: torch.Generator | None = None):
        if cfg.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"preprocess.interpolation '{cfg.interpolation}': expected one of {INTERPOLATIONS}")
        if cfg.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"preprocess.resize_mode '{cfg.resize_mode}': expected one of {RESIZE_MODES}")
        if len(cfg.mean) != 3 or len(cfg.std) != 3:
            raise ConfigError("preprocess.mean and preprocess.std: expected three values each")
        self.cfg = cfg
        self.train = train
        self.generator = generator
        self._resample = _RESAMPLING[cfg.interpolation]
        self._mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        size = self.cfg.image_size
        image = to_rgb(image)
        if self.train:
            image = _resize_shortest(image, size, self._resample)
            image = _random_crop(image, size, generator if generator is not None else self.generator)
        else:
            if self.cfg.resize_mode == "squash":
                image = image.resize((size, size), self._resample)
            else:
                image = _resize_shortest(image, size, self._resample)
            image = _center_crop(image, size)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        return pixels.to(torch.float32).div(255).sub(self._mean).div(self._std)

    def __repr__(self) -> str:
        c = self.cfg
        steps = (
            f"resize shortest side to {c.image_size} then random {c.image_size}x{c.image_size} crop"
            if self.train
            else (
                f"squash to {c.image_size}x{c.image_size}"
                if c.resize_mode == "squash"
                else f"resize shortest side to {c.image_size} then centre crop {c.image_size}x{c.image_size}"
            )
        )
        return (
            f"ClipImageTransform(train={self.train}, {steps}, interpolation='{c.interpolation}', "
            f"mean={tuple(c.mean)}, std={tuple(c.std)})"
        )


def image_transform(
    cfg: PreprocessConfig, train: bool = False, generator: torch.Generator | None = None
) -> Callable[[Image.Image], torch.Tensor]:
    """The preprocessing a model with this config expects (train=True adds random-crop augmentation)."""
    return ClipImageTransform(cfg, train=train, generator=generator)


def images_to_tensor(images: Sequence[Image.Image], transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """Apply `transform` to each image and stack into [N, 3, H, W]."""
    if len(images) == 0:
        raise ValueError("images_to_tensor: no images given")
    return torch.stack([transform(image) for image in images])
