"""`clipworks train`: contrastive training on generated or user data (single process or under torchrun)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a CLIP model contrastively",
                       description="Run under `torchrun --nproc_per_node=N -m clipworks.cli.main train ...` for DDP.")
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt, model/, metrics.jsonl, loss.png")
    p.add_argument("--model", default="ViT-Tiny-8-64", help="architecture name, or a checkpoint to start from")
    p.add_argument("--pretrained", help="initial weights for an architecture name")
    p.add_argument("--data", default="world",
                   help="a folder of images with .txt captions, a .csv/.tsv/.jsonl table, .tar shards (glob or "
                        "{000..009}), or a generated source: world, digits (options: world:size=50000,seed=1)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256, help="global contrastive batch (all ranks, all accumulation steps)")
    p.add_argument("--accum-steps", type=int, default=1, help="split each batch into this many micro-batches")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.2)
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes preparing batches")
    p.add_argument("--device")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from clipworks.training.trainer import TrainConfig, train

    cfg = TrainConfig(
        out=args.out, model=args.model, pretrained=args.pretrained, data=args.data, steps=args.steps,
        batch_size=args.batch_size, accum_steps=args.accum_steps, lr=args.lr, min_lr=args.min_lr, warmup=args.warmup,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, seed=args.seed,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every, num_workers=args.workers, device=args.device,
    )
    summary = train(cfg, resume=args.resume)
    print(json.dumps(summary, indent=2))
    return 0
