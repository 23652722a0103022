"""`clipworks models`: the architectures clipworks can build."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model architectures")
    p.add_argument("--json", action="store_true", help="print the configs as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from clipworks.model.clip import CONFIG_FILE
    from clipworks.model.config import config_from_dict, get_model_config, list_models
    from clipworks.model.factory import shipped_model_path

    names = list_models()
    if args.json:
        print(json.dumps({n: get_model_config(n).to_dict() for n in names}, indent=2))
        return 0
    print(f"{'name':<14} {'image tower':<28} {'input':>5} {'embed':>5} {'text':>12} {'activation':>10}")
    for n in names:
        c = get_model_config(n)
        text = f"w{c.text.width} L{c.text.layers}"
        print(f"{n:<14} {_tower(c):<28} {c.vision.image_size:>5} {c.embed_dim:>5} {text:>12} "
              f"{'QuickGELU' if c.quick_gelu else 'GELU':>10}")
    # Read from what ships, not from what we remember shipping.
    config_file = shipped_model_path("default") / CONFIG_FILE
    shipped = config_from_dict(json.loads(config_file.read_text())["model"], str(config_file))
    print(f"\nshipped trained weights: default ({shipped.name or 'unnamed'}: {_tower(shipped)}, trained on the "
          "generated shape world; `--model default`)")
    return 0


def _tower(c) -> str:
    v = c.vision
    return f"ViT w{v.width} L{v.layers} p{v.patch_size}" if v.kind == "vit" else f"ResNet w{v.width} {list(v.layers)}"
