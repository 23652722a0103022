"""`clipworks similarity`: the image-text probability table of OpenAI's README example."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipworks.cli.common import add_model_args, load_images, load_model
from clipworks.errors import InputFileError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("similarity", help="probability of each text for each image")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--text", nargs="+", required=True, metavar="TEXT")
    p.add_argument("--json", action="store_true", help="print probabilities and cosine similarities as JSON")
    add_model_args(p)
    p.set_defaults(run=run)


def similarity_table(model, preprocess, tokenizer, images, texts):
    """(probabilities [images, texts] softmaxed over texts, cosine similarities) as nested lists."""
    import torch

    with torch.inference_mode():
        pixels = torch.stack([preprocess(im) for im in images]).to(model.device)
        tokens = tokenizer(texts).to(model.device)
        logits_per_image, _ = model(pixels, tokens)
        cosine = logits_per_image / model.logit_scale.exp()
        return logits_per_image.softmax(dim=-1).cpu().tolist(), cosine.cpu().tolist()


def run(args: argparse.Namespace) -> int:
    if len(args.text) < 1:
        raise InputFileError("give at least one --text")
    images = load_images(args.images)
    model, preprocess, tokenizer = load_model(args)
    probs, cosine = similarity_table(model, preprocess, tokenizer, images, args.text)
    if args.json:
        print(json.dumps({"images": args.images, "texts": args.text, "probs": probs, "cosine": cosine}, indent=2))
        return 0
    names = [Path(p).name for p in args.images]
    width = max(12, *(len(n) for n in names))
    cols = [t if len(t) <= 24 else t[:23] + "…" for t in args.text]
    colw = max(8, *(len(c) for c in cols))
    print("Label probs (softmax over the texts, one row per image):")
    print(" " * width + "  " + "  ".join(f"{c:>{colw}}" for c in cols))
    for name, row in zip(names, probs):
        print(f"{name:<{width}}  " + "  ".join(f"{p:>{colw}.4f}" for p in row))
    return 0
