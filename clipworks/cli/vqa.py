"""`clipworks vqa ask IMAGE "question"`, `clipworks vqa train --out DIR` (a VQA model on CLIP grid features) and
`clipworks vqa eval` (accuracy per question type on generated held-out questions, or zero-shot CLIP)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipworks.cli.common import add_actions, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from clipworks.vqa.config import VQATrainConfig as D

    actions = add_actions(sub, "vqa", "visual question answering on CLIP grid features (CLIP-ViL): ask, train, eval")

    a = actions.add_parser("ask", help="answer a question about an image", description="The top answers with probabilities.")
    a.add_argument("image", metavar="IMAGE")
    a.add_argument("question", metavar="QUESTION")
    _add_model(a)
    a.add_argument("--top", type=positive_int, default=3, help="answers to show")
    a.set_defaults(run=_ask)

    e = actions.add_parser("eval", help="accuracy per question type on generated questions",
                           description="A trained VQA model (--model), or zero-shot CLIP (--zero-shot).")
    _add_model(e)
    e.add_argument("--zero-shot", action="store_true", help="evaluate zero-shot CLIP (--clip-model) instead of a VQA model")
    e.add_argument("--clip-model", default=D.clip_model, help="the CLIP model for --zero-shot")
    e.add_argument("--split", default="heldout", choices=("heldout", "train"),
                   help="heldout: scenes whose main object is an unseen colour-shape pair; train: new scenes of seen pairs")
    e.add_argument("--styles", default="classic", choices=("classic", "train", "heldout"),
                   help="the world's look: classic (the first world), or the styled world's training or held-out styles")
    e.add_argument("--size", type=positive_int, default=2000, help="generated questions")
    e.add_argument("--cache-dir", help="keep the rendered questions here, to score several models on the same ones")
    e.add_argument("--out", help="write the result JSON here")
    e.set_defaults(run=_eval)

    t = actions.add_parser("train", help="train a VQA model", description="Trains a VQA head on a CLIP image tower's grid.")
    t.add_argument("--out", required=True, help="run directory (the model is written to OUT/model)")
    t.add_argument("--encoder", default=D.encoder, choices=("clip", "scratch"),
                   help="clip: the CLIP model's image tower; scratch: the same architecture, randomly initialised")
    t.add_argument("--fine-tune", action="store_true", help="train the image tower too (always, for scratch)")
    t.add_argument("--clip-model", default=D.clip_model)
    t.add_argument("--image-size", type=positive_int, default=D.image_size, help="input resolution of the grid features")
    t.add_argument("--train-size", type=positive_int, default=D.train_size, help="generated training questions")
    t.add_argument("--steps", type=positive_int, default=D.steps)
    t.add_argument("--batch-size", type=positive_int, default=D.batch_size)
    t.add_argument("--lr", type=positive_float, default=D.lr)
    t.add_argument("--warmup", type=int, default=D.warmup, help="warmup steps")
    t.add_argument("--width", type=positive_int, default=D.width, help="fusion width")
    t.add_argument("--layers", type=positive_int, default=D.layers, help="MCAN encoder and decoder layers")
    t.add_argument("--styles", default=D.styles, choices=("classic", "train"),
                   help="questions about the first world (classic) or the styled world's training styles")
    design = t.add_argument_group("relation design (issue 16); --no-... turns a piece off")
    design.add_argument("--token-adapter", action=argparse.BooleanOptionalAction, default=D.token_adapter,
                        help="add a trained map of each question token's word embedding and a learned position")
    design.add_argument("--cell-coordinates", action=argparse.BooleanOptionalAction, default=D.cell_coordinates,
                        help="add each grid cell's (x, y) centre to its features, and read out where glimpses look")
    design.add_argument("--grid-blocks", type=int, default=D.grid_blocks,
                        help="image tower blocks before the grid (negative: from the end; -1: all but the last)")
    design.add_argument("--glimpses", type=positive_int, default=D.glimpses, help="attention glimpses over the grid")
    design.add_argument("--classifier-hidden", type=int, default=D.classifier_hidden,
                        help="hidden width of an MLP classifier (0: linear)")
    t.add_argument("--resume", action="store_true")
    t.set_defaults(run=_train)


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default' (shipped) or a trained VQA model directory")


def _train(args: argparse.Namespace) -> int:
    from clipworks.vqa.config import VQATrainConfig
    from clipworks.vqa.train import train_vqa

    cfg = VQATrainConfig(out=args.out, encoder=args.encoder, freeze_encoder=not (args.fine_tune or args.encoder == "scratch"),
                         clip_model=args.clip_model, image_size=args.image_size, train_size=args.train_size,
                         steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, width=args.width,
                         layers=args.layers, styles=args.styles, token_adapter=args.token_adapter,
                         cell_coordinates=args.cell_coordinates, grid_blocks=args.grid_blocks, glimpses=args.glimpses,
                         classifier_hidden=args.classifier_hidden)
    print(json.dumps(train_vqa(cfg, resume=args.resume), indent=2))
    return 0


def _ask(args: argparse.Namespace) -> int:
    from clipworks.model.transforms import load_image
    from clipworks.vqa.inference import ask
    from clipworks.vqa.model import load_vqa

    image = load_image(Path(args.image))  # checked before the model loads
    for answer, p in ask(load_vqa(args.model), image, args.question, top=args.top):
        print(f"{p:6.3f}  {answer}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from clipworks.vqa.evaluate import evaluate_vqa, zero_shot_vqa

    if args.zero_shot:
        from clipworks.model.factory import create_model

        clip, _ = create_model(args.clip_model, device="cpu")
        result = zero_shot_vqa(clip, split=args.split, size=args.size, cache_dir=args.cache_dir, styles=args.styles)
        result["model"] = f"zero-shot CLIP ({args.clip_model})"
    else:
        from clipworks.vqa.model import load_vqa

        result = evaluate_vqa(load_vqa(args.model), split=args.split, size=args.size, cache_dir=args.cache_dir,
                              styles=args.styles)
        result["model"] = args.model
    print(f"{result['model']} on {result['items']} {args.split} questions ({args.styles} styles):")
    for kind, value in result["accuracy"].items():
        print(f"  {kind:<10} {100 * value:5.1f}%   (chance {100 * result['chance'][kind]:5.1f}%)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0
