"""Text encoding throughput (texts/s) of clipworks vs open_clip on typical captions from the generated world.

Same architecture, same random weights (open_clip's, loaded into clipworks), same batches of 64 captions, same
threads, runs interleaved so machine noise hits both alike; the figure is the median. clipworks runs each batch
only up to its last end-of-text token (see `TextTransformer.forward`); "full" is clipworks on all 77 positions.

    python benchmarks/text_encoding.py --model ViT-B-32 --batch 64 --batches 8 --repeats 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch


def world_captions(n: int, seed: int = 0) -> list[str]:
    """`n` captions as the generated world writes them (all styles, 1-3 objects)."""
    from clipworks.data.world import WorldDataset
    from clipworks.data.world_captions import scene_captions

    world = WorldDataset(n, seed=seed, styles="all")
    rng = random.Random(seed)
    out: list[str] = []
    i = 0
    while len(out) < n:
        out += scene_captions(world.scene(i % n), rng)
        i += 1
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32", help="architecture known to both libraries")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=8, help="batches per timed run (different captions each)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import open_clip

    import clipworks

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    theirs = open_clip.create_model(f"{args.model}-quickgelu", pretrained=None).eval().to(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        torch.save(theirs.state_dict(), path)
        ours, _ = clipworks.create_model(args.model, pretrained=path, device=args.device)
    texts = world_captions(args.batch * args.batches)
    batches = [clipworks.tokenize(texts[i:i + args.batch]).to(args.device) for i in range(0, len(texts), args.batch)]
    used = [int(b.argmax(dim=-1).max()) + 1 for b in batches]

    runs = {
        "clipworks": lambda b: ours.encode_text(b),
        "clipworks full": lambda b: ours.text_tower(b, trim=False),
        "open_clip": lambda b: theirs.encode_text(b),
    }

    def timed(fn) -> float:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in batches:
            fn(b)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        diff = (ours.encode_text(batches[0]) - theirs.encode_text(batches[0])).abs().max().item()
        for fn in runs.values():
            timed(fn)  # warm-up
        for _ in range(args.repeats):  # interleaved
            for name, fn in runs.items():
                times[name].append(timed(fn))
    rates = {name: len(texts) / statistics.median(ts) for name, ts in times.items()}

    print(f"model {args.model} text tower, {args.device}, threads {args.threads}, {len(batches)} batches of "
          f"{args.batch} world captions, positions run per batch {min(used)}-{max(used)} of "
          f"{batches[0].shape[1]}, median of {args.repeats} interleaved runs; max |diff| vs open_clip {diff:.1e}")
    for name, rate in rates.items():
        print(f"{name:16}{rate:>10.1f} texts/s   x{rate / rates['open_clip']:.2f} open_clip")


if __name__ == "__main__":
    main()
