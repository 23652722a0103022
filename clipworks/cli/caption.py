"""`clipworks caption IMAGE...` (caption images with a trained ClipCap captioner) and
`clipworks caption train --out DIR ...` (train one on the generated world or a captioned collection)."""

from __future__ import annotations

import argparse
import json

from clipworks.errors import InputFileError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("caption", help="caption images with ClipCap; `caption train` trains a captioner",
                       description="clipworks caption IMAGE... --captioner DIR\n"
                                   "clipworks caption train --out DIR [--mapper mlp|transformer] [--data world] ...",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", metavar="IMAGE | train", help="image files, or 'train'")
    p.add_argument("--captioner", help="a trained captioner directory (OUT/model of `caption train`)")
    p.add_argument("--method", default="beam", choices=("greedy", "beam", "nucleus"))
    p.add_argument("--beam-width", type=int, default=5)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--max-tokens", type=int, default=30)
    p.add_argument("--json", action="store_true")
    t = p.add_argument_group("train")
    t.add_argument("--out", help="run directory for `caption train`")
    t.add_argument("--data", default="world", help="a --data source as for `clipworks train` (default: world)")
    t.add_argument("--size", type=int, default=20000, help="generated items for world/digits")
    t.add_argument("--mapper", default="mlp", choices=("mlp", "transformer"))
    t.add_argument("--freeze-lm", action="store_true", help="train the mapper only (ClipCap's Transformer variant)")
    t.add_argument("--lm-path", help="a local GPT-2 checkpoint directory to start the LM from")
    t.add_argument("--prefix-length", type=int, default=10)
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--clip-model", default="default")
    t.add_argument("--resume", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.images[:1] == ["train"]:
        return _train(args)
    if not args.images:
        raise InputFileError("give image files to caption, or 'train'")
    if not args.captioner:
        raise InputFileError("--captioner DIR is required (train one with `clipworks caption train --out DIR`)")
    import torch

    from clipworks.captioning.decoding import decode, generate
    from clipworks.captioning.model import load_captioner
    from clipworks.captioning.tokenizer import gpt2_tokenizer
    from clipworks.cli.common import load_images
    from clipworks.evaluation.features import embed_images
    from clipworks.model.factory import create_model

    images = load_images(args.images)  # every file is checked before any model is loaded
    captioner = load_captioner(args.captioner, device="cpu")
    clip, preprocess = create_model(captioner.config.clip_model, device="cpu")
    if clip.config.embed_dim != captioner.config.clip_dim:
        raise InputFileError(f"{args.captioner}: made for CLIP embeddings of width {captioner.config.clip_dim}, but "
                             f"{captioner.config.clip_model!r} gives {clip.config.embed_dim}")
    with torch.inference_mode():
        ids = generate(captioner, embed_images(clip, preprocess, images), method=args.method,
                       max_tokens=args.max_tokens, beam_width=args.beam_width, top_p=args.top_p)
    captions = decode(gpt2_tokenizer(), ids)
    if args.json:
        print(json.dumps([{"image": p, "caption": c} for p, c in zip(args.images, captions)], indent=2))
    else:
        for p, c in zip(args.images, captions):
            print(f"{p}\t{c}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from clipworks.captioning.train import CaptionTrainConfig, train_captioner

    if not args.out:
        raise InputFileError("caption train: --out DIR is required")
    options = {"size": args.size} if args.data.split(":")[0] == "world" else {}
    cfg = CaptionTrainConfig(out=args.out, clip_model=args.clip_model, data=args.data, data_options=options,
                             mapper=args.mapper, prefix_length=args.prefix_length, freeze_lm=args.freeze_lm,
                             lm_path=args.lm_path, steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    summary = train_captioner(cfg, resume=args.resume)
    print(json.dumps(summary, indent=2))
    return 0
