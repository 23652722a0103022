"""Entry point of the `clipworks` command."""

from __future__ import annotations

import argparse
import sys
import warnings

from clipworks.cli import caption, embed, evaluate, models, search, similarity, sketch, train, video, vqa
from clipworks.errors import ClipworksError

SUBCOMMANDS = (models, embed, similarity, train, evaluate, search, caption, vqa, video, sketch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipworks", description="Train, load, evaluate and apply CLIP models.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"clipworks: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.debug:
        warnings.formatwarning = _one_line_warning
    try:
        return args.run(args)
    except ClipworksError as exc:
        if args.debug:
            raise
        print(f"clipworks: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clipworks: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
