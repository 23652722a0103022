"""`clipworks vqa ask IMAGE "question"` (or `--batch TABLE`: every row's question, JSON lines out),
`clipworks vqa train --out DIR` (a VQA model on CLIP grid features) and `clipworks vqa eval` (accuracy per question
type on generated held-out questions, or zero-shot CLIP)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipworks.cli.common import (add_actions, add_check, add_device_arg, positive_float, positive_int,
                                  refuse_existing, report_skips, write_jsonl)


def register(sub: argparse._SubParsersAction) -> None:
    from clipworks.vqa.config import VQATrainConfig as D

    actions = add_actions(sub, "vqa", "visual question answering on CLIP grid features (CLIP-ViL): ask, train, eval")

    a = actions.add_parser("ask", help="answer questions about images",
                           description="The top answers with probabilities: for one IMAGE and QUESTION, or for "
                                       "every row of a --batch table (the model loads once), as JSON lines.")
    a.add_argument("image", metavar="IMAGE", nargs="?")
    a.add_argument("question", metavar="QUESTION", nargs="?")
    a.add_argument("--batch", metavar="TABLE",
                   help="a .jsonl or .csv/.tsv table with an image and a question column, instead of IMAGE QUESTION; "
                        "relative image paths are read from the table's folder; rows that cannot be answered are "
                        "skipped and counted")
    a.add_argument("--out", help="--batch: write the answers here as JSON lines, one per row in table order "
                                 "(refused if it exists; default: stdout)")
    _add_model(a)
    a.add_argument("--top", type=positive_int, default=3, help="answers to show")
    a.add_argument("--batch-size", type=positive_int, default=64, help="--batch: questions per forward pass")
    add_device_arg(a)
    a.set_defaults(run=_ask)
    add_check(a, _ask_form)

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


def _ask_form(args: argparse.Namespace) -> str | None:
    """IMAGE QUESTION, or --batch TABLE [--out FILE]."""
    if args.batch is not None:
        return "give IMAGE QUESTION or --batch TABLE, not both" if args.image is not None else None
    if args.image is None:
        return "the following arguments are required: IMAGE, QUESTION (or --batch TABLE)"
    if args.question is None:
        return "the following arguments are required: QUESTION"
    if args.out is not None:
        return "--out goes with --batch (one question's answers are printed)"
    return None


def _ask(args: argparse.Namespace) -> int:
    if args.batch is not None:
        return _ask_batch(args)
    from clipworks.model.transforms import load_image
    from clipworks.vqa.inference import ask
    from clipworks.vqa.model import load_vqa

    image = load_image(Path(args.image))  # checked before the model loads
    for answer, p in ask(load_vqa(args.model, device=args.device), image, args.question, top=args.top):
        print(f"{p:6.3f}  {answer}")
    return 0


def _ask_batch(args: argparse.Namespace) -> int:
    from clipworks.data.skips import SkipReport
    from clipworks.errors import InputFileError
    from clipworks.vqa.inference import answer_rows, read_questions
    from clipworks.vqa.model import load_vqa

    refuse_existing(args.out)
    rows = read_questions(args.batch)  # the table is read before the model loads
    model = load_vqa(args.model, device=args.device)
    report = SkipReport(total=len(rows))

    def records():
        yield from answer_rows(model, rows, Path(args.batch).resolve().parent, top=args.top,
                               batch_size=args.batch_size, report=report)
        if not report.kept:  # raised inside the writer, so no --out file is left behind
            raise InputFileError(f"{args.batch}: no row could be answered ({report.summary(noun='row')}; "
                                 f"{report.first()})")

    written = write_jsonl(records(), args.out)
    report_skips(report, "row")
    if args.out is not None:
        print(f"answered {report.kept} of {written} rows; wrote {args.out}")
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
