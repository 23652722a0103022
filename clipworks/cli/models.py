"""`clipworks models`: the architectures clipworks can build."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model architectures")
    p.add_argument("--json", action="store_true", help="print the configs as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from clipworks.model.config import get_model_config, list_models

    names = list_models()
    if args.json:
        print(json.dumps({n: get_model_config(n).to_dict() for n in names}, indent=2))
        return 0
    print(f"{'name':<14} {'image tower':<28} {'input':>5} {'embed':>5} {'text':>12} {'activation':>10}")
    for n in names:
        c = get_model_config(n)
        v = c.vision
        tower = f"ViT w{v.width} L{v.layers} p{v.patch_size}" if v.kind == "vit" else f"ResNet w{v.width} {list(v.layers)}"
        text = f"w{c.text.width} L{c.text.layers}"
        print(f"{n:<14} {tower:<28} {v.image_size:>5} {c.embed_dim:>5} {text:>12} "
              f"{'QuickGELU' if c.quick_gelu else 'GELU':>10}")
    print("\nshipped trained weights: default (ViT-Tiny-8-64 trained on the generated shape world; "
          "`--model default`)")
    return 0
