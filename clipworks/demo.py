"""The README's main job: image-text similarity on real photos, end to end through a checkpoint file.

Until the trained default model ships (issue 3), the model is the small ViT-Tiny-8-64 architecture with
seeded random weights: the run shows every step (save, load, preprocess, tokenize, embed, compare),
but its probabilities carry no meaning yet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clipworks.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where photos and the checkpoint go")
    args = parser.parse_args(argv)

    import torch

    import clipworks
    from clipworks.cli.main import main as cli
    from clipworks.data.samples import SAMPLE_PHOTOS, write_sample_photos

    photos = write_sample_photos(args.out / "photos")
    checkpoint = args.out / "ViT-Tiny-8-64-random"
    torch.manual_seed(0)
    model, _ = clipworks.create_model("ViT-Tiny-8-64", device="cpu")
    model.save_pretrained(checkpoint)
    print(f"photos: {', '.join(str(p) for p in photos)}")
    print(f"model: {checkpoint} (ViT-Tiny-8-64, random weights until the trained default ships)\n")
    texts = [f"a photo of {what}" for what in SAMPLE_PHOTOS.values()]
    return cli(["similarity", *map(str, photos), "--text", *texts, "--model", str(checkpoint)])


if __name__ == "__main__":
    sys.exit(main())
