"""`clipworks embed`: image and/or text embeddings, printed or saved to .npz."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipworks.cli.common import add_model_args, load_images, load_model
from clipworks.errors import InputFileError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed images and/or texts")
    p.add_argument("--image", nargs="+", default=[], metavar="IMAGE", help="image files")
    p.add_argument("--text", nargs="+", default=[], metavar="TEXT", help="texts")
    p.add_argument("--out", type=Path, help="save to this .npz (image_embeddings, image_paths, text_embeddings, texts)")
    p.add_argument("--no-normalize", action="store_true", help="keep raw (not L2-normalised) embeddings")
    p.add_argument("--batch-size", type=int, default=32)
    add_model_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from clipworks.evaluation.features import embed_images, embed_texts

    if not args.image and not args.text:
        raise InputFileError("nothing to embed: give --image FILES and/or --text TEXTS")
    if args.out is not None and args.out.suffix != ".npz":
        raise InputFileError(f"{args.out}: --out must end in .npz")
    images = load_images(args.image) if args.image else []
    model, preprocess, tokenizer = load_model(args)
    normalize = not args.no_normalize
    result: dict[str, np.ndarray] = {}
    if images:
        result["image_embeddings"] = embed_images(model, preprocess, images, args.batch_size, normalize,
                                                  progress=True).numpy()
        result["image_paths"] = np.array([str(p) for p in args.image])
    if args.text:
        result["text_embeddings"] = embed_texts(model, tokenizer, args.text, args.batch_size, normalize).numpy()
        result["texts"] = np.array(args.text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.out, **result)
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in result.items() if k.endswith("embeddings"))
        print(f"saved {shapes} to {args.out}")
        return 0
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    for kind, labels in (("image", args.image), ("text", args.text)):
        if f"{kind}_embeddings" in result:
            for label, vec in zip(labels, result[f"{kind}_embeddings"]):
                print(f"{kind} {label!r} dim {vec.shape[0]}: {vec[:6]} ...")
    return 0
