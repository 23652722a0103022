"""The README's demos, one command: the default model on held-out scenes of the generated world
(`clipworks.evaluation.world_report`), `--search` (semantic search over a folder) and `--caption` (the default
captioner on held-out scenes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--search" in argv:  # the search half: ./run.sh demo --search [FOLDER] [--serve]
        from clipworks.search.demo import main as search_demo

        argv.remove("--search")
        return search_demo(argv)
    if "--caption" in argv:  # captioning: ./run.sh demo --caption
        argv.remove("--caption")
        return _caption_demo(argv)
    from clipworks.evaluation.world_report import main as world_report

    return world_report(argv, prog="clipworks.demo")


def _caption_demo(argv: list[str]) -> int:
    """The shipped default captioner on 500 held-out scenes: caption metrics, and examples as an image."""
    parser = argparse.ArgumentParser(prog="clipworks.demo --caption", description=_caption_demo.__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where the figure and JSON go")
    parser.add_argument("--captioner", default="default", help="'default' or a trained captioner directory")
    args = parser.parse_args(argv)

    from clipworks.cli.main import main as cli

    args.out.mkdir(parents=True, exist_ok=True)
    return cli(["caption", "eval", "--captioner", args.captioner, "--out", str(args.out / "captions.json"),
                "--figure", str(args.out / "captions.png")])


if __name__ == "__main__":
    sys.exit(main())
