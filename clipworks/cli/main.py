"""Entry point of the `clipworks` command."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from clipworks.cli import caption, embed, evaluate, finetune, models, search, similarity, sketch, train, video, vqa
from clipworks.errors import ClipworksError

SUBCOMMANDS = (models, embed, similarity, train, finetune, evaluate, search, caption, vqa, video, sketch)


class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr (status 2), like every other error; --help has the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        for check in getattr(self, "checks", ()):  # rules between an action's arguments (common.add_check)
            problem = check(namespace)
            if problem:
                self.error(problem)
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clipworks", description="Train, load, evaluate and apply CLIP models.")
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
        code = args.run(args)
        sys.stdout.flush()  # a closed pipe fails here, inside the handlers below
        return code
    except BrokenPipeError:
        # The reader (`| head`) has gone: stop quietly like other Unix tools, and keep the interpreter's
        # final flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the closed pipe
    except (ClipworksError, OSError) as exc:
        if args.debug:
            raise
        # An OSError here is the environment (a read-only folder, a full disk): name the path, not the stack.
        message = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else exc
        print(f"clipworks: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clipworks: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
