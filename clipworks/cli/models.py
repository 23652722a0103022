"""`clipworks models` (the architectures clipworks can build; `--pretrained`: the published weights it can load by
tag, and which of them are on disk) and `clipworks export-model` (write a trained model in open_clip's or Hugging
Face's directory format)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model architectures")
    p.add_argument("--json", action="store_true", help="print the configs (with --pretrained: the tags) as JSON")
    p.add_argument("--pretrained", action="store_true",
                   help="list the published weights by architecture and tag, and the cache each one is found in")
    p.set_defaults(run=run)

    e = sub.add_parser("export-model", help="write a model as an open_clip or Hugging Face CLIPModel directory",
                       description="open_clip: open_clip_config.json + open_clip_model.safetensors, loaded by "
                                   "open_clip.create_model_and_transforms('local-dir:DIR'). hf: config.json, "
                                   "model.safetensors, preprocessor and tokenizer files, loaded by "
                                   "transformers.CLIPModel.from_pretrained(DIR) (ViT image towers only).")
    e.add_argument("model", metavar="MODEL", help="a shipped model ('default') or a checkpoint file/directory")
    e.add_argument("dir", metavar="DIR", help="output directory (must be new or empty, unless --force)")
    e.add_argument("--format", required=True, choices=("open_clip", "hf"))
    e.add_argument("--force", action="store_true", help="replace DIR if it is an existing model directory")
    act = e.add_mutually_exclusive_group()
    act.add_argument("--gelu", dest="quick_gelu", action="store_false", default=None,
                     help="a bare state dict was trained with GELU (the weights cannot tell)")
    act.add_argument("--quick-gelu", dest="quick_gelu", action="store_true", help="a bare state dict uses QuickGELU")
    e.set_defaults(run=run_export_model)


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


def run_export_model(args: argparse.Namespace) -> int:
    from clipworks.model.checkpoint.export import check_destination, export_model, load_for_export

    check_destination(args.dir, args.force)  # before the model loads
    files = export_model(load_for_export(args.model, args.quick_gelu), args.dir, args.format, force=args.force)
    for path in files:
        print(path)
    how = (f"open_clip.create_model_and_transforms('local-dir:{args.dir}')" if args.format == "open_clip"
           else f"transformers.CLIPModel.from_pretrained('{args.dir}')")
    print(f"load it with {how}", file=sys.stderr)
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
