"""Options, argument validators and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from clipworks.errors import InputFileError

# Argument types: a bad value becomes argparse's one-line usage error (status 2) naming the flag.


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value:
        raise argparse.ArgumentTypeError("expected a number, got nan")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1], such as nucleus sampling's top-p."""
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def tcp_port(text: str) -> int:
    """A TCP port, 0-65535 (0: any free port)."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 0 to 65535, got {value}")
    return value


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def device(text: str) -> str:
    """cpu, cuda, cuda:N or mps, and only one that is present here."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r}: expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text}: no CUDA GPU is available here (use --device cpu)")
        if dev.index is not None and dev.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: only {count} CUDA GPU(s) here (cuda:0 to cuda:{count - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available here (use --device cpu)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected cpu, cuda, cuda:N or mps")
    return text


def add_actions(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command made of actions, `clipworks NAME ACTION ...`: each action is a sub-command with its own flags
    (the one rule for every command that does more than one thing)."""
    parser = sub.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def add_check(parser: argparse.ArgumentParser, check: Callable[[argparse.Namespace], str | None]) -> None:
    """A rule between an action's arguments (argparse checks each alone), applied when the action is parsed:
    a message `check(args)` returns is a usage error, one line and status 2 like argparse's own."""
    parser.checks = (*getattr(parser, "checks", ()), check)


def add_device_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--device", type=device, help="cpu, cuda, cuda:1 ... (default: cuda when present)")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="default",
                       help="the shipped trained model 'default' (the default), an architecture name "
                            "(see `clipworks models`) or a checkpoint file/directory")
    group.add_argument("--pretrained", help="weights for an architecture name: a published tag (`clipworks models "
                                            "--pretrained`) or a file or directory in any supported format")
    group.add_argument("--download", action="store_true", default=None,
                       help="let a --pretrained tag that is in no cache be downloaded (also: CLIPWORKS_ALLOW_DOWNLOAD=1)")
    act = group.add_mutually_exclusive_group()
    act.add_argument("--gelu", dest="quick_gelu", action="store_false", default=None,
                     help="the weights were trained with GELU (bare state dicts cannot tell)")
    act.add_argument("--quick-gelu", dest="quick_gelu", action="store_true", help="the weights use QuickGELU")
    add_device_arg(group)


def load_model(args: argparse.Namespace):
    """(model, preprocess, tokenizer) from the parsed model options."""
    from clipworks.model.factory import create_model, get_tokenizer

    model, preprocess = create_model(args.model, pretrained=args.pretrained, device=args.device,
                                     quick_gelu=args.quick_gelu, download=args.download)
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


# Batch output: JSONL records, one a line.


def refuse_existing(out: str | None) -> None:
    """Refuse an --out that exists (the CLI has no --force; a batch run never overwrites earlier results)."""
    if out is not None and os.path.lexists(out):
        raise InputFileError(f"{out}: already exists; choose another --out, or move or delete it first")


def write_jsonl(records: Iterable[dict], out: str | None) -> int:
    """Write records as JSON lines: to `out` atomically (records stream into a temporary file beside it, which
    becomes `out` only when all are written), or to stdout as they come. Returns how many were written."""
    from clipworks.io import atomic_write

    count = 0

    def write(stream) -> None:
        nonlocal count
        for record in records:
            stream.write(json.dumps(record) + "\n")
            if out is None:
                stream.flush()  # a reader of the pipe sees each record as soon as it is answered
            count += 1

    if out is None:
        write(sys.stdout)
    else:
        def write_file(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                write(f)

        atomic_write(out, write_file)
    return count


def report_skips(report, noun: str, show: int = 10) -> None:
    """The end-of-run tally of skipped items on stderr, with the first few by name and reason."""
    if not report.count:
        return
    print(f"clipworks: {report.summary(noun=noun)}", file=sys.stderr)
    for item in report.examples(show):
        print(f"  {item.key}: {item.reason}", file=sys.stderr)
