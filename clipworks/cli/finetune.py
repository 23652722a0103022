"""`clipworks finetune`: fine-tune a trained model on a domain, with locked towers, layer-wise lr decay,
zero-shot evaluation during training and a WiSE-FT sweep at the end."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace

from clipworks.cli.common import add_check, add_device_arg, non_negative_int, positive_float, positive_int
from clipworks.errors import CheckpointError

# Flags that `--resume` may change; every other one must agree with the run's recorded configuration.
RESUME_MAY_CHANGE = {"steps", "checkpoint_every", "num_workers", "device", "alphas", "save_alpha"}


def _alphas(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(a) for a in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not all(0 <= a <= 1 for a in values):
        raise argparse.ArgumentTypeError(f"every α must be in [0, 1], got {text}")
    return values


def _alpha(text: str) -> float:
    values = _alphas(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one α, got {text!r}")
    return values[0]


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _decay(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from clipworks.training.finetune import FinetuneConfig as D

    p = sub.add_parser("finetune", help="fine-tune a trained model on a domain and keep its zero-shot ability",
                       description="Contrastive fine-tuning on a class-per-folder set (captions from the class names "
                                   "and templates) or on captioned pairs; zero-shot evaluation in and out of the "
                                   "domain every --eval-every steps; WiSE-FT weight interpolation over --alphas at "
                                   "the end. `--out RUN --resume` continues RUN with its own recorded settings.")
    p.add_argument("--out", required=True,
                   help="run directory: checkpoint.pt, metrics.jsonl, model/, results.json, wise_ft.png")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, with the settings it was started with")
    # Defaults are None so that --resume can tell the flags given from those left out; D holds the real defaults.
    p.add_argument("--model", help=f"the model to fine-tune: a shipped model, an architecture or a checkpoint "
                                   f"(default {D.model})")
    p.add_argument("--pretrained", help="initial weights for an architecture name")
    data = p.add_mutually_exclusive_group()  # one of them for a new run; --resume reads the run's own
    data.add_argument("--classes", help="a folder with one sub-folder of images per class (or train/ and test/ "
                                        "folders that have them), or a registered set such as digits")
    data.add_argument("--data", help="captioned pairs: a folder with .txt captions, a table, shards or a "
                                     "generated source (as `clipworks train --data`)")
    p.add_argument("--templates", help="caption templates for --classes: a set (plain, photo, ensemble, digits, ...), "
                                       "a file, or one template such as 'a photo of a {}.' (default: the set's own)")
    lock = p.add_argument_group("what trains")
    lock.add_argument("--lock-image", action="store_true", default=None, help="lock the image tower (LiT)")
    lock.add_argument("--lock-text", action="store_true", default=None, help="lock the text tower")
    lock.add_argument("--unlock-last", type=non_negative_int,
                      help="a locked tower's last N blocks, with its final norm and projection, still train; "
                           "without --lock-image/--lock-text both towers are locked this way (default 0)")
    lock.add_argument("--lr-decay", type=_decay,
                      help=f"layer-wise lr decay: each layer's lr is this x the one above it (default {D.lr_decay})")
    p.add_argument("--steps", type=positive_int, help=f"default {D.steps}")
    p.add_argument("--batch-size", type=positive_int, help=f"contrastive batch (default {D.batch_size})")
    p.add_argument("--lr", type=positive_float, help=f"the top layers' lr (default {D.lr})")
    p.add_argument("--min-lr", type=float, help=f"default {D.min_lr}")
    p.add_argument("--warmup", type=non_negative_int, help=f"steps (default {D.warmup})")
    p.add_argument("--weight-decay", type=float, help=f"default {D.weight_decay}")
    p.add_argument("--seed", type=int, help=f"default {D.seed}")
    ev = p.add_argument_group("evaluation")
    ev.add_argument("--eval-every", type=positive_int, help=f"steps, a multiple of --log-every ({D.eval_every})")
    ev.add_argument("--eval-in", help="the in-domain task (default: the test split of --classes)")
    ev.add_argument("--eval-out", type=_names,
                    help=f"out-of-domain zero-shot tasks, comma-separated ({','.join(D.eval_out)}; '' for none)")
    ev.add_argument("--eval-n", type=positive_int, help=f"images per out-of-domain task (default {D.eval_n})")
    ev.add_argument("--alphas", type=_alphas,
                    help=f"WiSE-FT mixing weights to evaluate (default {','.join(f'{a:g}' for a in D.alphas)})")
    ev.add_argument("--save-alpha", type=_alpha, help="also save the WiSE-FT model at this α as model-wise/")
    p.add_argument("--log-every", type=positive_int, help=f"default {D.log_every}")
    p.add_argument("--checkpoint-every", type=positive_int, help=f"default {D.checkpoint_every}")
    p.add_argument("--workers", dest="num_workers", type=non_negative_int,
                   help="DataLoader processes preparing batches (default 0)")
    add_device_arg(p)
    add_check(p, lambda a: "--templates needs --classes" if a.templates and a.data else None)
    p.set_defaults(run=run)


def _flag(name: str) -> str:
    return "--workers" if name == "num_workers" else "--" + name.replace("_", "-")


def run(args: argparse.Namespace) -> int:
    from clipworks.training.finetune import FinetuneConfig, finetune, saved_config, sweep_table

    given = {f.name: getattr(args, f.name) for f in fields(FinetuneConfig)
             if f.name != "out" and getattr(args, f.name, None) is not None}
    if not args.resume:
        cfg = FinetuneConfig(out=args.out, **given)
    else:
        cfg = saved_config(args.out)
        for name, value in given.items():
            if name not in RESUME_MAY_CHANGE and value != getattr(cfg, name):
                raise CheckpointError(f"{_flag(name)} {value}: the run in {args.out} was started with "
                                      f"{_flag(name)} {getattr(cfg, name)}; leave the flag out to continue it")
        cfg = replace(cfg, out=args.out, **{k: v for k, v in given.items() if k in RESUME_MAY_CHANGE})
    results = finetune(cfg, resume=args.resume)
    if "wise_ft" in results:
        print(sweep_table(results))
    print(json.dumps({k: results[k] for k in ("steps", "final_loss", "trainable_parameters", "out")}, indent=2))
    return 0
