"""Near-duplicate finding on a planted set: precision and recall of the duplicate pairs `find_duplicates` reports.

The set: distinct base images (generated world scenes, half in the first world's look and half in every style,
and crops of scikit-image's sample photos that overlap no other crop of the same photo by more than a third),
and for about half of the bases one to three copies, each made by one to three of: resizing (40-90%), JPEG
recompression (quality 30-90) and cropping (2-8% off each side); one copy in twenty is the same file's bytes.
The truth is every pair of files sharing a base. It is indexed with the shipped default model, then the finder
runs at each threshold with the whole layout check (layout and detail), the layout correlation only, and cosine
alone, and pair precision / recall are printed (and written as JSON with --out). Seed 0 is for tuning; seed 1
is held out for the reported figures. With --keep DIR the set and its store stay in DIR, and a later run with
the same DIR reuses them.

    python benchmarks/duplicates_planted.py --seed 0 --bases 360
    python benchmarks/duplicates_planted.py --seed 1 --bases 700 --out results/duplicates_seed1.json
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

# scikit-image photos shipped with the package (cat is chelsea again, so it is left out)
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "moon", "coins", "brick", "grass", "gravel", "clock", "page", "text", "colorwheel")
MAX_OVERLAP = 1 / 3  # crops of one photo overlap less than this (intersection over union): distinct bases


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def photo_crops(n: int, rng: np.random.Generator) -> list[Image.Image]:
    """n crops of the sample photos (30-60% of the short side, aspect 3:4 to 4:3), each resized to 160-320 px."""
    from skimage import data

    photos = {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS}
    taken: dict[str, list[tuple[int, int, int, int]]] = {name: [] for name in PHOTOS}
    out = []
    while len(out) < n:
        name = PHOTOS[rng.integers(len(PHOTOS))]
        photo = photos[name]
        short = min(photo.size)
        side = rng.uniform(0.3, 0.6) * short
        aspect = rng.uniform(0.75, 4 / 3)
        w, h = int(side * np.sqrt(aspect)), int(side / np.sqrt(aspect))
        x, y = int(rng.integers(0, photo.width - w + 1)), int(rng.integers(0, photo.height - h + 1))
        box = (x, y, x + w, y + h)
        if any(_iou(box, other) > MAX_OVERLAP for other in taken[name]):
            continue
        taken[name].append(box)
        longest = int(rng.integers(160, 321))
        scale = longest / max(w, h)
        out.append(photo.crop(box).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS))
    return out


def world_scenes(n: int, seed: int) -> list[Image.Image]:
    """n generated scenes at 192 px: half in the first world's look, half in any style."""
    from clipworks.data.world import WorldDataset

    classic = WorldDataset(n - n // 2, seed=1000 + seed, split="train", image_size=192)
    styled = WorldDataset(n // 2, seed=2000 + seed, split="train", image_size=192, styles="all")
    return [classic[i].image for i in range(len(classic))] + [styled[i].image for i in range(len(styled))]


def copy_of(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, str, str]:
    """A changed copy: (file bytes, extension, what was done): 1-3 of resize, JPEG recompression, crop."""
    edits = rng.choice(["resize", "jpeg", "crop"], size=int(rng.integers(1, 4)), replace=False).tolist()
    done = []
    if "crop" in edits:
        w, h = image.size
        l, t, r, b = (rng.uniform(0.02, 0.08, 4) * [w, h, w, h]).astype(int)
        image = image.crop((l, t, w - r, h - b))
        done.append(f"crop {l},{t},{r},{b}")
    if "resize" in edits:
        scale = rng.uniform(0.4, 0.9)
        image = image.resize((max(8, round(image.width * scale)), max(8, round(image.height * scale))),
                             Image.Resampling.BICUBIC)
        done.append(f"resize {scale:.2f}")
    out = io.BytesIO()
    if "jpeg" in edits:
        quality = int(rng.integers(30, 91))
        image.save(out, format="JPEG", quality=quality)
        done.append(f"jpeg q{quality}")
        return out.getvalue(), "jpg", ", ".join(done)
    image.save(out, format="PNG")
    return out.getvalue(), "png", ", ".join(done)


def plant(folder: Path, bases: int, seed: int) -> list[list[Path]]:
    """Write the planted set into `folder`; returns the files of each base (the base first)."""
    rng = np.random.default_rng(seed)
    n_world = bases * 3 // 5
    images = world_scenes(n_world, seed) + photo_crops(bases - n_world, rng)
    folder.mkdir(parents=True, exist_ok=True)
    sets = []
    for b, image in enumerate(images):
        path = folder / f"b{b:04d}.png"
        image.save(path)
        files = [path]
        if rng.random() < 0.5:
            for c in range(int(rng.integers(1, 4))):
                copy = folder / f"b{b:04d}_c{c}"
                if rng.random() < 0.05:
                    files.append(Path(shutil.copyfile(path, folder / f"{copy.name}_same.png")))
                    continue
                data, ext, _ = copy_of(image, rng)
                files.append(copy.with_suffix("." + ext))
                files[-1].write_bytes(data)
        sets.append(files)
    return sets


def planted_sets(folder: Path) -> list[list[Path]]:
    """The sets of a folder written by `plant`, from the file names (bNNNN.png and its copies bNNNN_c*)."""
    sets: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        sets.setdefault(path.name[:5], []).append(path)
    return list(sets.values())


def precision_recall(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float]:
    right = len(found & truth)
    return (right / len(found) if found else 1.0), (right / len(truth) if truth else 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="0: tuning; 1: the held-out set the README reports")
    parser.add_argument("--bases", type=int, default=360, help="distinct base images (files: about twice this)")
    parser.add_argument("--thresholds", default="0.85,0.90,0.93,0.95,0.97", help="cosine thresholds, comma-separated")
    parser.add_argument("--layout", type=float, default=None, help="layout correlation (default: the finder's)")
    parser.add_argument("--detail", type=float, default=None, help="detail correlation (default: the finder's)")
    parser.add_argument("--keep", help="write the set and store here (kept) instead of a temporary folder")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    from clipworks.search.duplicates import DETAIL_CORRELATION, LAYOUT_CORRELATION, find_duplicates
    from clipworks.search.indexer import index
    from clipworks.search.store import Store

    layout = LAYOUT_CORRELATION if args.layout is None else args.layout
    detail = DETAIL_CORRELATION if args.detail is None else args.detail
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        t0 = time.perf_counter()
        if (work / "images").is_dir():
            sets = planted_sets(work / "images")
        else:
            sets = plant(work / "images", args.bases, args.seed)
        files = sum(len(s) for s in sets)
        print(f"planted {files} files from {len(sets)} bases ({sum(len(s) > 1 for s in sets)} with copies) "
              f"in {time.perf_counter() - t0:.1f}s", flush=True)
        truth = {tuple(sorted((str(a.resolve()), str(b.resolve())))) for s in sets for a, b in combinations(s, 2)}
        t0 = time.perf_counter()
        report = index([str(work / "images")], work / "store", model_name="default", progress=False)
        print(f"indexed: {report.summary().splitlines()[0]} in {time.perf_counter() - t0:.1f}s", flush=True)
        store = Store(work / "store", create=False)
        rows = []
        checks = {"layout + detail": (layout, detail), "layout only": (layout, None), "cosine alone": (None, None)}
        for threshold in [float(t) for t in args.thresholds.split(",")]:
            for name, (whole, rest) in checks.items():
                t0 = time.perf_counter()
                found = find_duplicates(store, threshold=threshold, layout=whole, detail=rest)
                seconds = time.perf_counter() - t0
                pairs = {tuple(sorted((a.path, b.path))) for g in found.groups
                         for i, a in enumerate(g.items) for b in g.items[i + 1:]}
                p, r = precision_recall(pairs, truth)
                rows.append({"threshold": threshold, "check": name, "layout": whole, "detail": rest,
                             "precision": round(p, 3), "recall": round(r, 3), "pairs_found": len(pairs),
                             "groups": len(found.groups), "candidates": found.candidates, "rejected": found.rejected,
                             "seconds": round(seconds, 2)})
                print(f"cosine >= {threshold:.2f}, {name:16s} P {p:.3f}  R {r:.3f}  ({len(pairs)} pairs found of "
                      f"{len(truth)} planted; {found.rejected} of {found.candidates} candidates rejected; {seconds:.1f}s)",
                      flush=True)
        exact = find_duplicates(store, exact_only=True)
        planted_exact = sum(1 for s in sets if any(f.stem.endswith("_same") for f in s))
        print(f"exact-only: {len(exact.groups)} groups ({planted_exact} bases have a byte-identical copy)")
    result = {"seed": args.seed, "bases": len(sets), "files": files, "planted_pairs": len(truth), "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
