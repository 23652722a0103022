"""`clipworks eval`: zero-shot, linear probe, few-shot and retrieval results as JSON; `eval report` merges them;
`eval claims` regenerates the CLIP-paper-claims report on the generated world."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from clipworks.cli.common import add_model_args, load_model
from clipworks.errors import InputFileError

TASKS = ("zeroshot", "probe", "fewshot", "retrieval")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a model (zeroshot, probe, fewshot, retrieval); `eval report *.json` merges results",
        description="clipworks eval --task zeroshot|probe|fewshot|retrieval --data NAME [--model ...] [--out result.json]\n"
                    "clipworks eval report RESULT.json ... [--out DIR]\n"
                    "clipworks eval claims [--out DIR]   (the CLIP paper's claims, measured on our worlds)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="*", metavar="report FILE... | claims",
                   help="'report' followed by result files, or 'claims'; leave out to run --task")
    p.add_argument("--task", help=f"one of {', '.join(TASKS)}")
    p.add_argument("--data", help="classification: world-shape, world-colour, world-size, world-count, world-relation, "
                                  "digits, or a folder with one sub-folder per class; retrieval: world-captions, "
                                  "or a captioned folder / .csv / .jsonl / .tar shards")
    p.add_argument("--templates", help="zero-shot prompt set: plain, photo, ensemble, a data set's own (default), or a file")
    p.add_argument("-n", type=int, help="number of images (where the data set is generated or large)")
    p.add_argument("--shots", default="1,2,4,8,16", help="few-shot k values (default 1,2,4,8,16)")
    p.add_argument("--seeds", type=int, default=5, help="few-shot repetitions per k (default 5)")
    p.add_argument("--out", help="result JSON (default results/TASK-DATA-MODEL.json); for report/claims a folder")
    p.add_argument("--quick", action="store_true", help="claims: a small budget, for a smoke run")
    add_model_args(p)
    p.set_defaults(run=run)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(text).name or text).strip("_") or "x"


def run(args: argparse.Namespace) -> int:
    if args.action:
        verb, rest = args.action[0], args.action[1:]
        if verb == "report":
            return _report(rest, args.out)
        if verb == "claims":
            from clipworks.evaluation.claims import main as claims

            return claims(["--out", args.out or "reports/claims", "--model", args.model] + (["--quick"] if args.quick else []))
        raise InputFileError(f"unknown eval action {verb!r}: use 'report FILE...' or 'claims', or --task {'|'.join(TASKS)}")
    if args.task not in TASKS:
        raise InputFileError(f"--task {args.task!r}: choose one of {', '.join(TASKS)}" if args.task else
                             f"--task is required: one of {', '.join(TASKS)}")
    if not args.data:
        raise InputFileError("--data is required (see `clipworks eval --help` for the data sets)")
    from clipworks.evaluation.tasks import run_task

    try:
        shots = tuple(int(k) for k in args.shots.split(","))
    except ValueError:
        raise InputFileError(f"--shots {args.shots!r}: expected comma-separated integers") from None
    out = Path(args.out or f"results/{args.task}-{_slug(args.data)}-{_slug(args.model)}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_dir = out.with_suffix("")  # a task that plots makes it
    model, preprocess, tokenizer = load_model(args)
    record = run_task(args.task, model, preprocess, tokenizer, args.data, model_name=args.model,
                      templates=args.templates, n=args.n, shots=shots, seeds=args.seeds, plot_dir=plot_dir,
                      progress=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    summary = {k: round(v, 4) for k, v in record["metrics"].items() if isinstance(v, float)}
    print(json.dumps({"task": args.task, "data": args.data, "model": args.model, "metrics": summary,
                      "skipped": record["details"].get("skipped") or {}, "result": str(out)}, indent=2))
    return 0


def _report(files: list[str], out: str | None) -> int:
    from clipworks.evaluation.report import merge

    if not files:
        raise InputFileError("eval report: give result JSON files (clipworks eval report results/*.json)")
    out_dir = Path(out or "results/report")
    table, errors = merge(files, out_dir)
    print(table, end="")
    print(f"report: {out_dir / 'report.md'}")
    for e in errors:
        print(f"clipworks: error: {e}", file=sys.stderr)
    return 1 if errors else 0
