"""`clipworks eval TASK --data NAME`: zero-shot, linear probe, few-shot and retrieval results as JSON (one
action per task); `eval report` merges result files; `eval claims` regenerates the CLIP-paper-claims report
on the generated world."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from clipworks.cli.common import add_actions, add_model_args, load_model, positive_int

CLASSIFICATION_DATA = ("world-shape, world-colour, world-size, world-count, world-relation, digits, or a folder with "
                       "one sub-folder per class")
# The tasks of clipworks.evaluation.tasks (not imported here: it loads torch), with what each one is.
TASKS = {
    "zeroshot": ("zero-shot classification with prompts", CLASSIFICATION_DATA),
    "probe": ("a linear probe on frozen image features, C swept on validation", CLASSIFICATION_DATA),
    "fewshot": ("k-shot linear probes, several seeds per k", CLASSIFICATION_DATA),
    "retrieval": ("text<->image retrieval, recall@K", "world-captions, or a captioned folder / .csv / .jsonl / .tar shards"),
}


def _shots(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive integers."""
    try:
        shots = tuple(positive_int(k) for k in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    return shots


def register(sub: argparse._SubParsersAction) -> None:
    actions = add_actions(sub, "eval", "evaluate a model (zeroshot, probe, fewshot, retrieval); `eval report` merges "
                                       "results; `eval claims` measures the CLIP paper's claims")
    for task, (what, data) in TASKS.items():
        p = actions.add_parser(task, help=what, description=f"{what}; the result is a JSON record.")
        p.add_argument("--data", required=True, help=data)
        p.add_argument("-n", type=positive_int, help="number of images (where the data set is generated or large)")
        if task == "zeroshot":
            p.add_argument("--templates", help="prompt set: plain, photo, ensemble, the data set's own (default), or a file")
        if task == "fewshot":
            p.add_argument("--shots", type=_shots, default=(1, 2, 4, 8, 16), help="k values (default 1,2,4,8,16)")
            p.add_argument("--seeds", type=positive_int, default=5, help="repetitions per k (default 5)")
        p.add_argument("--out", help="result JSON (default results/TASK-DATA-MODEL.json)")
        add_model_args(p)
        p.set_defaults(run=_run_task, task=task)

    r = actions.add_parser("report", help="merge result JSON files into one table and plots",
                           description="Writes OUT/report.md; a malformed file is named and the rest merged.")
    r.add_argument("files", nargs="+", metavar="RESULT", help="result JSON files of `clipworks eval TASK`")
    r.add_argument("--out", default="results/report", help="report folder (default results/report)")
    r.set_defaults(run=_report)

    c = actions.add_parser("claims", help="the CLIP paper's claims, measured on our worlds",
                           description="Trains two small models and writes OUT/README.md with four figures.")
    c.add_argument("--out", default="reports/claims", help="report folder (default reports/claims)")
    c.add_argument("--model", default="default", help="the model whose claims are measured")
    c.add_argument("--quick", action="store_true", help="a small budget, for a smoke run")
    c.set_defaults(run=_claims)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(text).name or text).strip("_") or "x"


def _run_task(args: argparse.Namespace) -> int:
    from clipworks.evaluation.tasks import run_task

    out = Path(args.out or f"results/{args.task}-{_slug(args.data)}-{_slug(args.model)}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_dir = out.with_suffix("")  # a task that plots makes it
    model, preprocess, tokenizer = load_model(args)
    record = run_task(args.task, model, preprocess, tokenizer, args.data, model_name=args.model,
                      templates=getattr(args, "templates", None), n=args.n, shots=getattr(args, "shots", None),
                      seeds=getattr(args, "seeds", None), plot_dir=plot_dir, progress=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    summary = {k: round(v, 4) for k, v in record["metrics"].items() if isinstance(v, float)}
    print(json.dumps({"task": args.task, "data": args.data, "model": args.model, "metrics": summary,
                      "skipped": record["details"].get("skipped") or {}, "result": str(out)}, indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from clipworks.evaluation.report import merge

    out_dir = Path(args.out)
    table, errors = merge(args.files, out_dir)
    print(table, end="")
    print(f"report: {out_dir / 'report.md'}")
    for e in errors:
        print(f"clipworks: error: {e}", file=sys.stderr)
    return 1 if errors else 0


def _claims(args: argparse.Namespace) -> int:
    from clipworks.experiments.claims import main as claims

    return claims(["--out", args.out, "--model", args.model] + (["--quick"] if args.quick else []))
