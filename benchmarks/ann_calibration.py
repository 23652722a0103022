"""Calibrate ann_latency.py's synthetic vectors against real embeddings from the shipped default model.

Embeds generated world images (the classic look and every style, at 96 px) and random crops of the
scikit-image sample photos with `create_model("default")`, then prints, for the real embeddings and for
`clip_like` at the same n, the statistics that decide how well IVF works: cosine of each vector to its 1st
and 10th nearest neighbour and of random pairs (quartiles), and recall@10 of IVF-Flat (nlist as the
engine picks it, spherical k-means) at nprobe 1 / 8 / 64, measured as the tuner measures it (1,000 rows
of the collection as queries, their true top-10 among the others). The real rows are the reference.

    python benchmarks/ann_calibration.py --world 44000 --crops 4000 --cache /tmp/real_embeddings.npy
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np

from clipworks.search import ann
from clipworks.search.ann import VectorIndex

NPROBES = (1, 8, 64)


def real_embeddings(world: int, crops: int, batch: int = 256, seed: int = 0) -> np.ndarray:
    """L2-normalised default-model embeddings of `world` generated scenes (half classic, half all styles)
    and `crops` random crops (1/8 to 1/2 of the side) of scikit-image's sample photos."""
    import torch
    from PIL import Image

    from clipworks import create_model
    from clipworks.data import styles
    from clipworks.data.world import WorldDataset

    model, preprocess = create_model("default")
    sets = [WorldDataset(world // 2, seed=seed, split="train", image_size=96, styles="classic"),
            WorldDataset(world - world // 2, seed=seed, split="train", image_size=96, styles="all",
                         photos=styles.TRAIN_PHOTOS + styles.HELDOUT_PHOTOS)]

    def images():
        for dataset in sets:
            for i in range(len(dataset)):
                yield dataset[i].image
        rng = np.random.default_rng(seed)
        photos = [styles._photo(name) for name in styles.TRAIN_PHOTOS + styles.HELDOUT_PHOTOS]
        for _ in range(crops):
            photo = photos[rng.integers(len(photos))]
            side = int(min(photo.shape[:2]) * rng.uniform(1 / 8, 1 / 2))
            y, x = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
            yield Image.fromarray(photo[y:y + side, x:x + side])

    out, pending, t0 = [], [], time.perf_counter()
    with torch.no_grad():
        for image in images():
            pending.append(preprocess(image))
            if len(pending) == batch:
                out.append(model.encode_image(torch.stack(pending), normalize=True).numpy())
                pending = []
                done = sum(len(o) for o in out)
                print(f"  embedded {done}/{world + crops} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if pending:
            out.append(model.encode_image(torch.stack(pending), normalize=True).numpy())
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def statistics(vectors: np.ndarray, sample: int = 1000, seed: int = 0) -> dict[str, object]:
    """Neighbour and random-pair cosines (quartiles) and IVF-Flat recall@10 at NPROBES, tuner-style."""
    rows, queries, truth = ann._sample_truth(vectors, sample, seed)
    sims, _ = faiss.knn(queries, vectors, ann.RECALL_K + 1, metric=faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed + 1)
    a, b = rng.integers(0, len(vectors), (2, 20_000))
    pairs = np.einsum("ij,ij->i", vectors[a], vectors[b])[a != b]
    index = VectorIndex.build(vectors, np.arange(len(vectors)), kind="ivf-flat", recall=0.01, sample=10, seed=seed)
    recalls = {}
    for nprobe in NPROBES:
        index.set_search_params(nprobe=nprobe)
        recalls[nprobe] = ann._recall(index._index, queries, rows, truth)[0]
    quartiles = lambda x: tuple(round(float(q), 3) for q in np.percentile(x, [25, 50, 75]))  # noqa: E731
    return {"n": len(vectors), "dim": vectors.shape[1], "nlist": ann.nlist_for(len(vectors)),
            "cos 1st NN": quartiles(sims[:, 1]), "cos 10th NN": quartiles(sims[:, 10]),
            "cos random pair": quartiles(pairs), **{f"IVF R@10 nprobe {p}": round(r, 3) for p, r in recalls.items()}}


def main() -> None:
    from ann_latency import generator  # noqa: PLC0415  (a sibling script: benchmarks/ is on sys.path)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=44_000, help="generated world images to embed")
    parser.add_argument("--crops", type=int, default=4_000, help="crops of scikit-image photos to embed")
    parser.add_argument("--cache", type=Path, help="embeddings .npy: read if it exists, else written")
    parser.add_argument("--dim", type=int, default=512, help="dimension of the synthetic vectors")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    if args.cache and args.cache.exists():
        real = np.load(args.cache)
    else:
        real = real_embeddings(args.world, args.crops)
        if args.cache:
            np.save(args.cache, real)
    synthetic = generator(args.dim)(len(real))
    rows = {"real (default model)": statistics(real), "clip_like": statistics(synthetic)}
    keys = list(next(iter(rows.values())))
    print(f"{'':<22}" + "".join(f"{k:>26}" for k in rows))
    for key in keys:
        print(f"{key:<22}" + "".join(f"{str(r[key]):>26}" for r in rows.values()))


if __name__ == "__main__":
    main()
