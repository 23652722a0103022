"""Options and helpers shared by subcommands that load a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipworks.errors import InputFileError


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="default",
                       help="the shipped trained model 'default' (the default), an architecture name "
                            "(see `clipworks models`) or a checkpoint file/directory")
    group.add_argument("--pretrained", help="weights for an architecture name: a file or directory in any supported format")
    act = group.add_mutually_exclusive_group()
    act.add_argument("--gelu", dest="quick_gelu", action="store_false", default=None,
                     help="the weights were trained with GELU (bare state dicts cannot tell)")
    act.add_argument("--quick-gelu", dest="quick_gelu", action="store_true", help="the weights use QuickGELU")
    group.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")


def load_model(args: argparse.Namespace):
    """(model, preprocess, tokenizer) from the parsed model options."""
    from clipworks.model.factory import create_model, get_tokenizer

    model, preprocess = create_model(args.model, pretrained=args.pretrained, device=args.device,
                                     quick_gelu=args.quick_gelu)
    return model, preprocess, get_tokenizer(model)


def load_images(paths: list[str]):
    """Decode every image up front, so a bad file fails before the model is loaded."""
    from clipworks.model.transforms import load_image

    images = []
    for p in paths:
        images.append(load_image(Path(p)))
    if not images:
        raise InputFileError("no images given")
    return images
