"""`clipworks caption run IMAGE...` (caption images with ClipCap: the shipped default captioner or a trained
one), `clipworks caption train --out DIR ...` (train one on the generated world or a captioned collection) and
`clipworks caption eval` (score a captioner against a captioned data set's references)."""

from __future__ import annotations

import argparse
import json

from clipworks.cli.common import (add_actions, add_device_arg, fraction, load_images, non_negative_int,
                                  positive_float, positive_int)


def register(sub: argparse._SubParsersAction) -> None:
    from clipworks.captioning.config import DEFAULT_LM, CaptionTrainConfig as D

    actions = add_actions(sub, "caption", "caption images with ClipCap (run), train a captioner (train), score one (eval)")

    r = actions.add_parser("run", help="caption image files", description="One caption per image, tab-separated.")
    r.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any name, `train` included)")
    _add_captioner(r)
    _add_decoding(r)
    r.add_argument("--top-p", type=fraction, default=0.9, help="nucleus: keep the smallest set of tokens this likely, in (0, 1]")
    r.add_argument("--json", action="store_true")
    add_device_arg(r)
    r.set_defaults(run=_run)

    e = actions.add_parser("eval", help="score a captioner against a captioned data set's references",
                           description="BLEU-1..4, METEOR (needs Java), ROUGE-L and CIDEr-D, with examples.")
    _add_captioner(e)
    e.add_argument("--data", help="a --data source as for `clipworks train` (default: 500 held-out generated scenes)")
    e.add_argument("--limit", type=positive_int, help="evaluate the first N captioned images only")
    _add_decoding(e)
    e.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    e.add_argument("--figure", help="save 10 random examples with their references as an image (PNG)")
    e.add_argument("--out", help="write the result JSON here")
    e.set_defaults(run=_eval)

    t = actions.add_parser("train", help="train a captioner", description="Trains ClipCap on a frozen CLIP model's embeddings.")
    t.add_argument("--out", required=True, help="run directory (the captioner is written to OUT/model)")
    t.add_argument("--data", default="world", help="a --data source as for `clipworks train` (default: world)")
    t.add_argument("--size", type=positive_int, default=20000, help="generated items for world/digits")
    t.add_argument("--mapper", default="mlp", choices=("mlp", "transformer"))
    t.add_argument("--freeze-lm", action="store_true", help="train the mapper only (ClipCap's Transformer variant)")
    t.add_argument("--lm-path", help="a local GPT-2 checkpoint directory to start the LM from")
    t.add_argument("--prefix-length", type=positive_int, default=D.prefix_length)
    t.add_argument("--lm-layers", type=positive_int, default=DEFAULT_LM["n_layer"], help="GPT-2 layers of a new LM")
    t.add_argument("--lm-width", type=positive_int, default=DEFAULT_LM["n_embd"], help="GPT-2 width of a new LM")
    t.add_argument("--lm-heads", type=positive_int, default=DEFAULT_LM["n_head"], help="GPT-2 attention heads of a new LM")
    t.add_argument("--lm-pretrain-steps", type=non_negative_int, default=D.lm_pretrain_steps,
                   help="text-only LM steps on the captions first (a stand-in for a pretrained GPT-2)")
    t.add_argument("--steps", type=positive_int, default=D.steps)
    t.add_argument("--batch-size", type=positive_int, default=D.batch_size)
    t.add_argument("--lr", type=positive_float, default=D.lr)
    t.add_argument("--clip-model", default="default")
    t.add_argument("--resume", action="store_true")
    t.set_defaults(run=_train)


def _add_captioner(p: argparse.ArgumentParser) -> None:
    p.add_argument("--captioner", default="default",
                   help="'default' (shipped) or a trained captioner directory (OUT/model of `caption train`)")


def _add_decoding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="beam", choices=("greedy", "beam", "nucleus"))
    p.add_argument("--beam-width", type=positive_int, default=3)
    p.add_argument("--max-tokens", type=positive_int, default=24)


def _run(args: argparse.Namespace) -> int:
    from clipworks.captioning.inference import caption_images
    from clipworks.captioning.model import load_captioner
    from clipworks.model.factory import default_device

    images = load_images(args.images)  # every file is checked before any model is loaded
    captioner = load_captioner(args.captioner, device=args.device or default_device())
    captions = caption_images(images, captioner, method=args.method, max_tokens=args.max_tokens,
                              beam_width=args.beam_width, top_p=args.top_p)
    if args.json:
        print(json.dumps([{"image": p, "caption": c} for p, c in zip(args.images, captions)], indent=2))
    else:
        for p, c in zip(args.images, captions):
            print(f"{p}\t{c}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from clipworks.captioning.evaluate import HELDOUT, evaluate_captioner

    result = evaluate_captioner(args.captioner, data=args.data or HELDOUT, limit=args.limit, method=args.method,
                                beam_width=args.beam_width, max_tokens=args.max_tokens, meteor=not args.no_meteor,
                                figure=args.figure)
    width = max(len(k) for k in result["metrics"])
    print(f"{result['images']} images of {result['data']} ({result['skipped']}); {args.method} decoding")
    for k, v in result["metrics"].items():
        print(f"  {k:<{width}}  {100 * v:6.1f}")
    if result["attributes"]:
        a = result["attributes"]
        print(f"  colour words true of the scene: {100 * a['colour_precision']:.1f}% of {a['colour_words']}; "
              f"shape words: {100 * a['shape_precision']:.1f}% of {a['shape_words']}")
    if result["meteor_note"]:
        print(f"  (no METEOR: {result['meteor_note']})")
    for ex in result["examples"][:5]:
        print(f"  {ex['key']}: {ex['caption']!r}  refs: {ex['references'][:2]}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    if args.figure:
        print(f"wrote {args.figure}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from clipworks.captioning.config import DEFAULT_LM, CaptionTrainConfig
    from clipworks.captioning.train import train_captioner

    options = {"size": args.size} if args.data.split(":")[0] in ("world", "digits") else {}
    lm = {**DEFAULT_LM, "n_layer": args.lm_layers, "n_head": args.lm_heads, "n_embd": args.lm_width}
    cfg = CaptionTrainConfig(out=args.out, clip_model=args.clip_model, data=args.data, data_options=options,
                             mapper=args.mapper, prefix_length=args.prefix_length, freeze_lm=args.freeze_lm,
                             lm=lm, lm_path=args.lm_path, lm_pretrain_steps=0 if args.lm_path else args.lm_pretrain_steps,
                             steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    summary = train_captioner(cfg, resume=args.resume)
    print(json.dumps(summary, indent=2))
    return 0
