"""`clipworks vqa train` (a VQA model on CLIP grid features), `clipworks vqa ask IMAGE "question"` and
`clipworks vqa eval` (accuracy per question type on generated held-out questions, or zero-shot CLIP)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipworks.errors import InputFileError


def register(sub: argparse._SubParsersAction) -> None:
    from clipworks.vqa.config import VQATrainConfig as D

    p = sub.add_parser("vqa", help="visual question answering on CLIP grid features (CLIP-ViL)",
                       description='clipworks vqa train --out DIR [--encoder clip|scratch] [--fine-tune]\n'
                                   'clipworks vqa ask IMAGE "question" [--model DIR]\n'
                                   'clipworks vqa eval --model DIR | --zero-shot [--split heldout|train]',
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("train", "ask", "eval"))
    p.add_argument("args", nargs="*", help="ask: IMAGE QUESTION")
    p.add_argument("--model", default="default", help="'default' (shipped) or a trained VQA model directory")
    p.add_argument("--top", type=int, default=3, help="ask: answers to show")
    e = p.add_argument_group("eval")
    e.add_argument("--zero-shot", action="store_true", help="eval zero-shot CLIP (--clip-model) instead of a VQA model")
    e.add_argument("--split", default="heldout", choices=("heldout", "train"),
                   help="heldout: scenes whose main object is an unseen colour-shape pair; train: new scenes of seen pairs")
    e.add_argument("--size", type=int, default=2000, help="eval: generated questions")
    e.add_argument("--json-out", help="eval: write the result JSON here")
    t = p.add_argument_group("train")
    t.add_argument("--out", help="train: run directory")
    t.add_argument("--encoder", default=D.encoder, choices=("clip", "scratch"),
                   help="clip: the CLIP model's image tower; scratch: the same architecture, randomly initialised")
    t.add_argument("--fine-tune", action="store_true", help="train the image tower too (always, for scratch)")
    t.add_argument("--clip-model", default=D.clip_model)
    t.add_argument("--image-size", type=int, default=D.image_size, help="input resolution of the grid features")
    t.add_argument("--train-size", type=int, default=D.train_size, help="generated training questions")
    t.add_argument("--steps", type=int, default=D.steps)
    t.add_argument("--batch-size", type=int, default=D.batch_size)
    t.add_argument("--lr", type=float, default=D.lr)
    t.add_argument("--resume", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return {"train": _train, "ask": _ask, "eval": _eval}[args.action](args)


def _train(args: argparse.Namespace) -> int:
    from clipworks.vqa.config import VQATrainConfig
    from clipworks.vqa.train import train_vqa

    if not args.out:
        raise InputFileError("vqa train: --out DIR is required")
    cfg = VQATrainConfig(out=args.out, encoder=args.encoder, freeze_encoder=not (args.fine_tune or args.encoder == "scratch"),
                         clip_model=args.clip_model, image_size=args.image_size, train_size=args.train_size,
                         steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    print(json.dumps(train_vqa(cfg, resume=args.resume), indent=2))
    return 0


def _ask(args: argparse.Namespace) -> int:
    from clipworks.model.transforms import load_image
    from clipworks.vqa.evaluate import ask
    from clipworks.vqa.model import load_vqa

    if len(args.args) != 2:
        raise InputFileError('vqa ask: give IMAGE and "QUESTION"')
    image = load_image(Path(args.args[0]))  # checked before the model loads
    for answer, p in ask(load_vqa(args.model), image, args.args[1], top=args.top):
        print(f"{p:6.3f}  {answer}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from clipworks.vqa.evaluate import evaluate_vqa, zero_shot_vqa

    if args.zero_shot:
        from clipworks.model.factory import create_model

        clip, _ = create_model(args.clip_model, device="cpu")
        result = zero_shot_vqa(clip, split=args.split, size=args.size)
        result["model"] = f"zero-shot CLIP ({args.clip_model})"
    else:
        from clipworks.vqa.model import load_vqa

        result = evaluate_vqa(load_vqa(args.model), split=args.split, size=args.size)
        result["model"] = args.model
    print(f"{result['model']} on {result['items']} {args.split} questions:")
    for kind, value in result["accuracy"].items():
        print(f"  {kind:<10} {100 * value:5.1f}%   (chance {100 * result['chance'][kind]:5.1f}%)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0
