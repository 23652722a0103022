"""`clipworks models`: the architectures clipworks can build; `--pretrained`: the published weights it can load by
tag, and which of them are on disk."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model architectures")
    p.add_argument("--json", action="store_true", help="print the configs (with --pretrained: the tags) as JSON")
    p.add_argument("--pretrained", action="store_true",
                   help="list the published weights by architecture and tag, and the cache each one is found in")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from clipworks.model.clip import CONFIG_FILE
    from clipworks.model.config import config_from_dict, get_model_config, list_models
    from clipworks.model.factory import shipped_model_path

    if args.pretrained:
        return _list_pretrained(args.json)
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


def _list_pretrained(as_json: bool) -> int:
    from dataclasses import asdict

    from clipworks.model.pretrained_tags import cache_path, cache_root, cached_file, list_pretrained

    rows = []
    for entry in list_pretrained():
        found = cached_file(entry)
        rows.append({**asdict(entry), "cache_path": str(cache_path(entry)),
                     "cached": None if found is None else {"path": str(found[0]), "cache": found[1]}})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'architecture':<13} {'tag':<30} {'activation':>10} {'sha256':<10} {'source':<26} cached")
    for row in rows:
        sha = "-" if row["sha256"] is None else ("published" if len(row["sha256"]) == 64 else "prefix")
        source = row["url"].split("/")[2] if row["url"] else f"hf:{row['hf_hub'].split('/')[0]}"
        cached = "-" if row["cached"] is None else f"{row['cached']['cache']}: {row['cached']['path']}"
        print(f"{row['architecture']:<13} {row['tag']:<30} {'QuickGELU' if row['quick_gelu'] else 'GELU':>10} "
              f"{sha:<10} {source:<26} {cached}")
    print(f"\n{len(rows)} tags; cache: {cache_root()} (CLIPWORKS_CACHE moves it). `--pretrained TAG` loads from a "
          "cache; --download or CLIPWORKS_ALLOW_DOWNLOAD=1 lets it download (never while HF_HUB_OFFLINE=1). "
          "sha256 'prefix': open_clip publishes 8 digits; '-': recorded on first download.")
    return 0
