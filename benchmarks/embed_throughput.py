"""Image and text embedding throughput of clipworks vs open_clip, side by side in one run.

Same architecture, same random weights (open_clip's, loaded into clipworks), same batch, same threads.
Runs interleave the two libraries so machine noise hits both alike; the figure is the median.
`--device cuda --autocast float16` runs both under the same fp16 autocast on a GPU.

    python benchmarks/embed_throughput.py --model ViT-B-32 --image-batch 32 --text-batch 64 --repeats 5
    python benchmarks/embed_throughput.py --device cuda --autocast float16 --image-batch 256 --text-batch 256
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _time(fn, repeats: int, device: torch.device) -> list[float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32", help="architecture known to both libraries")
    parser.add_argument("--image-batch", type=int, default=32)
    parser.add_argument("--text-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--autocast", choices=["float16", "bfloat16"], help="run both libraries under this autocast")
    args = parser.parse_args()
    device = torch.device(args.device)

    import open_clip

    import clipworks

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    theirs = open_clip.create_model(f"{args.model}-quickgelu", pretrained=None).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        torch.save(theirs.state_dict(), path)
        ours, _ = clipworks.create_model(args.model, pretrained=path, device=device)
    theirs = theirs.to(device)
    size = ours.config.vision.image_size
    images = torch.randn(args.image_batch, 3, size, size, device=device)
    texts = clipworks.tokenize([f"a photo of item number {i}, seen from the side" for i in range(args.text_batch)])
    texts = texts.to(device)
    amp = (lambda: torch.autocast(device.type, dtype=getattr(torch, args.autocast))) if args.autocast \
        else contextlib.nullcontext

    results = {}
    with torch.inference_mode(), amp():
        diff = (ours.encode_image(images[:2]) - theirs.encode_image(images[:2])).abs().max().item()
        assert diff < (1e-4 if args.autocast is None else 5e-2), diff
        for kind, batch, n in (("image", images, args.image_batch), ("text", texts, args.text_batch)):
            per_lib = {"clipworks": [], "open_clip": []}
            for _ in range(args.repeats):  # interleaved
                per_lib["clipworks"] += _time(lambda: getattr(ours, f"encode_{kind}")(batch), 1, device)
                per_lib["open_clip"] += _time(lambda: getattr(theirs, f"encode_{kind}")(batch), 1, device)
            rates = {lib: n / statistics.median(ts) for lib, ts in per_lib.items()}
            results[kind] = rates

    print(f"model {args.model}, {device} (autocast {args.autocast or 'off'}), CPU threads {args.threads}, image batch {args.image_batch}, "
          f"text batch {args.text_batch}, median of {args.repeats} interleaved runs")
    print(f"{'':8}{'clipworks/s':>14}{'open_clip/s':>14}{'ratio':>8}")
    for kind, rates in results.items():
        ratio = rates["clipworks"] / rates["open_clip"]
        print(f"{kind:8}{rates['clipworks']:>14.1f}{rates['open_clip']:>14.1f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
