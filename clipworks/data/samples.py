"""Real photos that ship inside scikit-image, for demos and tests without any download."""

from __future__ import annotations

from pathlib import Path

# scikit-image sample name -> what the photo shows
SAMPLE_PHOTOS = {
    "astronaut": "an astronaut",
    "chelsea": "a cat",
    "coffee": "a cup of coffee",
    "rocket": "a rocket",
}


def write_sample_photos(folder: str | Path, names: list[str] | None = None) -> list[Path]:
    """Write scikit-image's sample photos as PNG files into `folder`; returns their paths."""
    from PIL import Image
    from skimage import data

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names or list(SAMPLE_PHOTOS):
        path = folder / f"{name}.png"
        if not path.exists():
            Image.fromarray(getattr(data, name)()).save(path)
        paths.append(path)
    return paths
