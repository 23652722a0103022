"""One `clipworks vqa ask` call against one `vqa ask --batch` call answering N questions, each a fresh process
(so the model load is included, as a user pays it): N generated scenes of the world with a generated question
about each. The aim (issue 16): 100 questions in one call take less than 3x the time of one question.

    python benchmarks/vqa_batch.py --questions 100 --repeat 3

Wall time is what a user waits; CPU time (user + system of the process) shows the work when other jobs share the
machine and stretch the wall time."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `clipworks` process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "clipworks.cli.main", *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"clipworks {' '.join(argv[:3])} failed:\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=100, help="questions in the batch call")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each call; the median is shown")
    parser.add_argument("--model", default="default", help="the VQA model")
    args = parser.parse_args()

    from clipworks.vqa.questions import VQADataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = VQADataset(args.questions, seed=11, split="heldout")  # world scenes, questions from their facts
        with open(root / "questions.jsonl", "w") as f:
            for i in range(args.questions):
                item = data[i]
                item.image.save(root / f"scene{i:03d}.png")
                f.write(json.dumps({"image": f"scene{i:03d}.png", "question": item.question.text}) + "\n")
        first = data[0].question.text
        single, batch = [], []
        for k in range(args.repeat):
            single.append(_timed(["vqa", "ask", str(root / "scene000.png"), first, "--model", args.model]))
            batch.append(_timed(["vqa", "ask", "--batch", str(root / "questions.jsonl"), "--out",
                                 str(root / f"answers{k}.jsonl"), "--model", args.model]))
            print(f"run {k + 1}: single {single[-1][0]:.2f} s wall, {single[-1][1]:.2f} s CPU; "
                  f"batch {batch[-1][0]:.2f} s wall, {batch[-1][1]:.2f} s CPU", flush=True)
        answered = sum("answers" in json.loads(line) for line in (root / "answers0.jsonl").read_text().splitlines())

    s_wall, s_cpu = (statistics.median(x[i] for x in single) for i in (0, 1))
    b_wall, b_cpu = (statistics.median(x[i] for x in batch) for i in (0, 1))
    print(f"VQA model {args.model!r}; median of {args.repeat} run(s) each; CPUs here: {os.cpu_count()}, "
          f"torch threads default")
    print(f"{'call':<50} {'wall s':>8} {'CPU s':>8}")
    print(f"{'1 question (vqa ask IMAGE QUESTION)':<50} {s_wall:8.2f} {s_cpu:8.2f}")
    print(f"{f'{args.questions} questions (vqa ask --batch, {answered} answered)':<50} {b_wall:8.2f} {b_cpu:8.2f}")
    print(f"{f'{args.questions} single calls (estimate: {args.questions} x 1)':<50} {args.questions * s_wall:8.2f} "
          f"{args.questions * s_cpu:8.2f}")
    ratio_wall, ratio_cpu = b_wall / s_wall, b_cpu / s_cpu
    verdict = "met" if max(ratio_wall, ratio_cpu) < 3 else "NOT met"
    print(f"batch / single: {ratio_wall:.2f}x wall, {ratio_cpu:.2f}x CPU (aim: < 3x; {verdict})")


if __name__ == "__main__":
    main()
