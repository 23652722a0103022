"""`clipworks train`: contrastive training on generated or user data (single process or under torchrun)."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace

from clipworks.cli.common import add_device_arg, int_at_least, non_negative_int, positive_float, positive_int
from clipworks.errors import CheckpointError

# Flags that `--resume` may change; every other one must agree with the run's recorded configuration.
RESUME_MAY_CHANGE = {"steps", "checkpoint_every", "log_every", "num_workers", "device"}


def register(sub: argparse._SubParsersAction) -> None:
    from clipworks.training.contrastive import TrainConfig as D

    p = sub.add_parser("train", help="train a CLIP model contrastively",
                       description="Run under `torchrun --nproc_per_node=N -m clipworks.cli.main train ...` for DDP. "
                                   "`--out RUN --resume` continues RUN with its own recorded settings.")
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt, model/, metrics.jsonl, loss.png")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, with the settings it was started with "
                        "(of the other flags, only --steps, --checkpoint-every, --log-every, --workers and --device may change)")
    # Defaults are None so that --resume can tell the flags given from those left out; D holds the real defaults.
    p.add_argument("--model", help=f"architecture name, or a checkpoint to start from (default {D.model})")
    p.add_argument("--pretrained", help="initial weights for an architecture name")
    p.add_argument("--data",
                   help="a folder of images with .txt captions, a .csv/.tsv/.jsonl table, .tar shards (glob or "
                        "{000..009}), or a generated source: world, digits (options: world:size=50000,seed=1); "
                        f"default {D.data}")
    p.add_argument("--steps", type=positive_int, help=f"default {D.steps}")
    p.add_argument("--batch-size", type=int_at_least(2),
                   help=f"global contrastive batch (all ranks, all accumulation steps), at least 2; default {D.batch_size}")
    p.add_argument("--accum-steps", type=positive_int, help="split each batch into this many micro-batches (default 1)")
    p.add_argument("--lr", type=positive_float, help=f"default {D.lr}")
    p.add_argument("--min-lr", type=float, help=f"default {D.min_lr}")
    p.add_argument("--warmup", type=non_negative_int, help=f"steps, at most --steps (default {D.warmup})")
    p.add_argument("--weight-decay", type=float, help=f"default {D.weight_decay}")
    p.add_argument("--grad-clip", type=float, help=f"max gradient norm, 0: off (default {D.grad_clip})")
    p.add_argument("--seed", type=int, help=f"default {D.seed}")
    p.add_argument("--checkpoint-every", type=positive_int, help=f"default {D.checkpoint_every}")
    p.add_argument("--log-every", type=positive_int, help=f"default {D.log_every}")
    p.add_argument("--workers", dest="num_workers", type=non_negative_int,
                   help="DataLoader processes preparing batches (default 0)")
    add_device_arg(p)
    p.set_defaults(run=run)


def _flag(field: str) -> str:
    return "--workers" if field == "num_workers" else "--" + field.replace("_", "-")


def run(args: argparse.Namespace) -> int:
    from clipworks.training.contrastive import TrainConfig, saved_config, train

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if f.name != "out" and getattr(args, f.name, None) is not None}
    if not args.resume:
        cfg = TrainConfig(out=args.out, **given)
    else:
        cfg = saved_config(args.out)
        for name, value in given.items():
            if name not in RESUME_MAY_CHANGE and value != getattr(cfg, name):
                raise CheckpointError(f"{_flag(name)} {value}: the run in {args.out} was started with "
                                      f"{_flag(name)} {getattr(cfg, name)}; leave the flag out to continue it")
        cfg = replace(cfg, out=args.out, **{k: v for k, v in given.items() if k in RESUME_MAY_CHANGE})
    summary = train(cfg, resume=args.resume)
    print(json.dumps(summary, indent=2))
    return 0
