"""Image loading and preprocessing: exact parity with open_clip's eval transform, every PIL mode, clear file errors."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from clipworks.errors import InputFileError
from clipworks.model.config import OPENAI_MEAN, OPENAI_STD, PreprocessConfig
from clipworks.model.transforms import (
    ClipImageTransform,
    _center_crop,
    image_transform,
    images_to_tensor,
    load_image,
    to_rgb,
)

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def _sample_photos() -> dict[str, Image.Image]:
    from skimage import data
    photos = {name: Image.fromarray(getattr(data, name)()) for name in ("astronaut", "chelsea", "coffee", "rocket", "camera")}
    rng = np.random.default_rng(0)
    for w, h in ((100, 37), (300, 1000), (7, 5)):
        photos[f"noise_{w}x{h}"] = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return photos


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return _sample_photos()


# ---------------------------------------------------------------------------------------------
# Parity with open_clip


@pytest.mark.parametrize("size", [224, 288])
def test_eval_transform_matches_open_clip(photos, size):
    import open_clip
    reference = open_clip.image_transform(size, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD)
    ours = image_transform(PreprocessConfig(image_size=size))
    assert photos["camera"].mode == "L"
    worst = 0.0
    for name, image in photos.items():
        expected, got = reference(image), ours(image)
        assert got.shape == expected.shape == (3, size, size), name
        assert got.dtype == torch.float32
        worst = max(worst, (got - expected).abs().max().item())
    assert worst <= 1e-6, worst


@pytest.mark.parametrize("resize_mode,interpolation", [("squash", "bicubic"), ("shortest", "bilinear")])
def test_other_modes_match_open_clip(photos, resize_mode, interpolation):
    import open_clip
    reference = open_clip.image_transform(224, is_train=False, resize_mode=resize_mode, interpolation=interpolation)
    ours = image_transform(PreprocessConfig(image_size=224, resize_mode=resize_mode, interpolation=interpolation))
    for name in ("chelsea", "rocket", "noise_100x37"):
        assert torch.equal(ours(photos[name]), reference(photos[name])), name


@pytest.mark.parametrize("w,h", [(5, 9), (30, 10), (10, 30), (3, 3), (40, 40)])
def test_center_crop_pads_small_images_like_torchvision(w, h):
    import torchvision.transforms as transforms
    image = Image.fromarray(np.random.default_rng(w * h).integers(1, 256, (h, w, 3), dtype=np.uint8))
    expected = np.asarray(transforms.CenterCrop(16)(image))
    assert np.array_equal(np.asarray(_center_crop(image, 16)), expected)


def test_repr_and_batch_helper(photos):
    transform = image_transform(PreprocessConfig(image_size=64))
    assert isinstance(transform, ClipImageTransform)
    text = repr(transform)
    assert "ClipImageTransform" in text and "64" in text and "bicubic" in text
    batch = images_to_tensor([photos["chelsea"], photos["camera"]], transform)
    assert batch.shape == (2, 3, 64, 64)


# ---------------------------------------------------------------------------------------------
# Colour modes


def _px(image: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    return image.getpixel(xy)


def _palette_image(transparent_index: int | None = None) -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


def _filled(mode: str, *values) -> Image.Image:
    image = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)
    return image


def test_rgb_is_returned_unchanged():
    image = Image.new("RGB", (2, 2), (1, 2, 3))
    assert to_rgb(image) is image


@pytest.mark.parametrize(
    "image,expected",
    [
        (_filled("L", 77), [(77, 77, 77)]),
        (_filled("1", 1, 0), [WHITE, BLACK]),
        (_palette_image(), [BLACK, (10, 20, 30)]),
        (_palette_image(transparent_index=0), [WHITE, (10, 20, 30)]),
        (_filled("LA", (50, 0), (50, 255)), [WHITE, (50, 50, 50)]),
        (_filled("RGBA", (10, 20, 30, 0), (10, 20, 30, 255)), [WHITE, (10, 20, 30)]),
        (_filled("La", (0, 0), (50, 255)), [WHITE, (50, 50, 50)]),
        (_filled("RGBa", (0, 0, 0, 0), (10, 20, 30, 255)), [WHITE, (10, 20, 30)]),
        (_filled("CMYK", (0, 0, 0, 0), (0, 0, 0, 255), (0, 255, 255, 0)), [WHITE, BLACK, (255, 0, 0)]),
        (_filled("HSV", (0, 255, 255), (0, 0, 0)), [(255, 0, 0), BLACK]),
        (_filled("I;16", 65535, 32768, 0), [WHITE, (128, 128, 128), BLACK]),
        (_filled("I;16B", 65535, 32768, 0), [WHITE, (128, 128, 128), BLACK]),
        (_filled("I;16L", 65535, 32768, 0), [WHITE, (128, 128, 128), BLACK]),
        (_filled("I;16N", 65535, 32768, 0), [WHITE, (128, 128, 128), BLACK]),
        (_filled("I", 200, 10), [(200, 200, 200), (10, 10, 10)]),  # already 8-bit range
        (_filled("I", 65535, 257), [WHITE, (1, 1, 1)]),  # 16-bit range
        (_filled("I", 100000, -100000), [WHITE, BLACK]),  # anything else: min-max
        (_filled("F", 1.0, 0.5, 0.0), [WHITE, (128, 128, 128), BLACK]),
        (_filled("F", 3.0, -1.0), [WHITE, BLACK]),
    ],
    ids=lambda v: v.mode if isinstance(v, Image.Image) else "",
)
def test_to_rgb_modes(image, expected):
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert [_px(rgb, (x, 0)) for x in range(len(expected))] == expected


def test_to_rgb_pa_composites_transparent_pixels():
    image = Image.new("PA", (2, 1))
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    image.putpixel((0, 0), (1, 0))
    image.putpixel((1, 0), (1, 255))
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and _px(rgb, (0, 0)) == WHITE and _px(rgb, (1, 0)) == (10, 20, 30)


@pytest.mark.parametrize("mode,value", [("YCbCr", (255, 128, 128)), ("LAB", (255, 128, 128))])
def test_to_rgb_colour_spaces_map_white_to_white(mode, value):
    rgb = to_rgb(Image.new(mode, (1, 1), value))
    assert rgb.mode == "RGB"
    assert all(abs(c - 255) <= 2 for c in _px(rgb))


def test_to_rgb_background_and_half_alpha():
    image = _filled("RGBA", (10, 20, 30, 0), (200, 100, 0, 128))
    on_black = to_rgb(image, background=BLACK)
    assert _px(on_black, (0, 0)) == BLACK
    r, g, b = _px(to_rgb(image), (1, 0))
    assert abs(r - 227) <= 1 and abs(g - 177) <= 1 and abs(b - 127) <= 1


def test_multi_frame_uses_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    assert _px(load_image(path)) == (255, 0, 0)
    with Image.open(path) as opened:
        opened.seek(1)
        assert _px(to_rgb(opened)) == (255, 0, 0)


# ---------------------------------------------------------------------------------------------
# load_image


def _jpeg(path, size=(64, 48)):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
    return path


def test_load_image_reads_rgb(tmp_path):
    image = load_image(_jpeg(tmp_path / "ok.jpg"))
    assert image.mode == "RGB" and image.size == (64, 48)
    gray = tmp_path / "gray.png"
    Image.new("L", (5, 3), 9).save(gray)
    assert load_image(str(gray)).mode == "RGB"


def test_load_image_applies_exif_orientation(tmp_path):
    path = tmp_path / "rotated.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), (0, 128, 0)).save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def _truncated_jpeg(tmp_path):
    path = _jpeg(tmp_path / "cut.jpg", size=(256, 256))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _text_as_jpg(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_text("this is not an image\n")
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "make,problem",
    [
        (lambda t: t / "missing.jpg", "no such file"),
        (lambda t: t, "directory"),
        (_text_as_jpg, "not a recognised image file"),
        (_truncated_jpeg, "corrupt or truncated"),
        (_empty, "empty file"),
    ],
    ids=["missing", "directory", "text", "truncated", "empty"],
)
def test_load_image_errors_name_the_path(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(InputFileError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and problem in message
    assert "\n" not in message


def test_load_image_permission_denied(tmp_path, monkeypatch):
    path = _jpeg(tmp_path / "locked.jpg")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root reads anything: simulate the refusal

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(Image, "open", refuse)
    path.chmod(0)
    try:
        with pytest.raises(InputFileError, match="permission denied") as info:
            load_image(path)
        assert str(path) in str(info.value)
    finally:
        path.chmod(0o644)


def test_load_image_decompression_bomb(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2x the limit: an error
    with pytest.raises(InputFileError, match="decompression-bomb") as info:
        load_image(path)
    assert str(path) in str(info.value)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # between 1x and 2x: a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputFileError, match="decompression-bomb"):
            load_image(path)


# ---------------------------------------------------------------------------------------------
# Training augmentation


def test_train_transform_random_crops(photos):
    cfg = PreprocessConfig(image_size=224)
    train = image_transform(cfg, train=True)
    tall = photos["noise_300x1000"]
    a = train(tall, generator=torch.Generator().manual_seed(0))
    b = train(tall, generator=torch.Generator().manual_seed(0))
    c = train(tall, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 224, 224)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    seeded = image_transform(cfg, train=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(seeded(tall), a)


def test_train_crop_of_exact_size_square_equals_eval(photos):
    cfg = PreprocessConfig(image_size=64)
    square = photos["astronaut"].resize((64, 64))
    train, evaluate = image_transform(cfg, train=True), image_transform(cfg)
    assert torch.equal(train(square, generator=torch.Generator().manual_seed(3)), evaluate(square))
