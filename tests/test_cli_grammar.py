"""One CLI grammar: a command is one action with its flags, or a group of actions (`clipworks GROUP ACTION ...`),
each with only its own flags; search never imports captioning (the package layering is tests/test_layering.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clipworks.cli import caption, evaluate, search, video, vqa
from clipworks.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def _parse(parser, argv: list[str]):
    return parser.parse_args(argv)


def _usage_error(parser, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_caption_actions_and_their_flags(parser, capsys):
    args = _parse(parser, ["caption", "run", "train", "eval", "--method", "greedy"])
    assert args.run is caption._run and args.images == ["train", "eval"] and args.method == "greedy"
    args = _parse(parser, ["caption", "train", "--out", "runs/c", "--mapper", "transformer", "--freeze-lm"])
    assert args.run is caption._train and args.out == "runs/c" and args.freeze_lm and args.data == "world"
    args = _parse(parser, ["caption", "eval", "--out", "r.json", "--limit", "30", "--no-meteor"])
    assert args.run is caption._eval and args.out == "r.json" and args.limit == 30 and args.captioner == "default"
    # each action has only its own flags
    assert "unrecognized arguments: --mapper" in _usage_error(parser, ["caption", "eval", "--mapper", "mlp"], capsys)
    assert "unrecognized arguments: --top-p" in _usage_error(parser, ["caption", "eval", "--top-p", "0.5"], capsys)
    assert "required: --out" in _usage_error(parser, ["caption", "train"], capsys)
    assert "required: IMAGE" in _usage_error(parser, ["caption", "run"], capsys)
    assert "invalid choice: 'photo.png'" in _usage_error(parser, ["caption", "photo.png"], capsys)


def test_a_file_named_train_is_captioned(tmp_path, monkeypatch, capsys):
    from clipworks.captioning.inference import caption_images
    from clipworks.data.world import WorldDataset

    image = WorldDataset(1, seed=3, split="train")[0].image
    image.save(tmp_path / "train", format="PNG")
    monkeypatch.chdir(tmp_path)
    assert main(["caption", "run", "train", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == f"train\t{caption_images([image])[0]}\n"


def test_vqa_actions_and_their_flags(parser, capsys):
    args = _parse(parser, ["vqa", "ask", "scene.png", "what colour is the star?", "--top", "5"])
    assert args.run is vqa._ask and (args.image, args.question, args.top) == ("scene.png", "what colour is the star?", 5)
    args = _parse(parser, ["vqa", "train", "--out", "runs/v", "--fine-tune", "--steps", "10"])
    assert args.run is vqa._train and args.out == "runs/v" and args.fine_tune and args.steps == 10
    args = _parse(parser, ["vqa", "eval", "--zero-shot", "--split", "train", "--out", "r.json"])
    assert args.run is vqa._eval and args.zero_shot and args.split == "train" and args.out == "r.json"
    assert "unrecognized arguments: --fine-tune" in _usage_error(parser, ["vqa", "eval", "--fine-tune"], capsys)
    assert "required: QUESTION" in _usage_error(parser, ["vqa", "ask", "scene.png"], capsys)
    args = _parse(parser, ["vqa", "ask", "--batch", "questions.jsonl", "--out", "answers.jsonl", "--batch-size", "8"])
    assert args.run is vqa._ask and (args.batch, args.out, args.batch_size, args.image) == (
        "questions.jsonl", "answers.jsonl", 8, None)
    assert "required: IMAGE, QUESTION (or --batch TABLE)" in _usage_error(parser, ["vqa", "ask"], capsys)
    assert "not both" in _usage_error(parser, ["vqa", "ask", "a.png", "q?", "--batch", "t.csv"], capsys)
    assert "--out goes with --batch" in _usage_error(parser, ["vqa", "ask", "a.png", "q?", "--out", "o.jsonl"], capsys)
    assert "argument --top" in _usage_error(parser, ["vqa", "ask", "a.png", "q?", "--top", "0"], capsys)


def test_video_actions_and_their_flags(parser, capsys):
    args = _parse(parser, ["video", "world", "--out", "clips", "--size", "12", "--format", "webm"])
    assert args.run is video._world and (args.out, args.size, args.format, args.split) == ("clips", 12, "webm", "train")
    args = _parse(parser, ["video", "train", "--out", "runs/seq", "--method", "seqTransf"])
    assert args.run is video._train and args.out == "runs/seq" and args.method == "seqTransf"
    args = _parse(parser, ["video", "eval", "--model", "runs/seq/model", "--split", "heldout"])
    assert args.run is video._eval and args.size == 1000 and args.data == "world" and args.split == "heldout"
    args = _parse(parser, ["video", "index", "clips", "more", "--store", "vs"])
    assert args.run is video._index and args.folders == ["clips", "more"] and args.store == "vs"
    args = _parse(parser, ["video", "search", "a star moves", "--store", "vs", "-k", "3", "--json"])
    assert args.run is video._search and (args.text, args.k, args.json) == ("a star moves", 3, True)
    args = _parse(parser, ["video", "classify", "clip.mp4", "--labels", "grows", "spins"])
    assert args.run is video._classify and args.videos == ["clip.mp4"] and args.labels == ["grows", "spins"]
    args = _parse(parser, ["video", "classify", "a.mp4", "frames/", "--labels", "grows", "--out", "r.jsonl"])
    assert args.videos == ["a.mp4", "frames/"] and args.out == "r.jsonl" and args.batch is None
    args = _parse(parser, ["video", "classify", "--batch", "list.txt", "--labels", "grows", "--batch-size", "4"])
    assert (args.videos, args.batch, args.batch_size) == ([], "list.txt", 4)
    assert "required: VIDEO (or --batch LIST)" in _usage_error(parser, ["video", "classify", "--labels", "a"], capsys)
    assert "not both" in _usage_error(parser, ["video", "classify", "a.mp4", "--batch", "list.txt"], capsys)
    # --out is one thing per action, and flags of one action are refused by the others
    assert "unrecognized arguments: --out" in _usage_error(parser, ["video", "search", "x", "--store", "s", "--out", "o"], capsys)
    assert "unrecognized arguments: --method" in _usage_error(parser, ["video", "world", "--method", "meanP"], capsys)
    assert "required: --store" in _usage_error(parser, ["video", "index", "clips"], capsys)
    assert "argument --format" in _usage_error(parser, ["video", "world", "--format", "xyz"], capsys)


def test_eval_actions_and_their_flags(parser, capsys):
    from clipworks.evaluation.tasks import TASKS

    assert tuple(evaluate.TASKS) == TASKS  # one action per task the library runs
    args = _parse(parser, ["eval", "fewshot", "--data", "digits", "--shots", "1,4", "--seeds", "2"])
    assert args.run is evaluate._run_task and args.task == "fewshot" and args.shots == (1, 4) and args.seeds == 2
    args = _parse(parser, ["eval", "zeroshot", "--data", "world-shape", "--templates", "ensemble", "-n", "64"])
    assert args.task == "zeroshot" and args.templates == "ensemble" and args.n == 64 and args.model == "default"
    args = _parse(parser, ["eval", "report", "a.json", "b.json"])
    assert args.run is evaluate._report and args.files == ["a.json", "b.json"] and args.out == "results/report"
    args = _parse(parser, ["eval", "claims", "--quick"])
    assert args.run is evaluate._claims and args.quick and args.out == "reports/claims"
    assert "unrecognized arguments: --shots" in _usage_error(parser, ["eval", "zeroshot", "--data", "d", "--shots", "1"], capsys)
    assert "argument --shots" in _usage_error(parser, ["eval", "fewshot", "--data", "d", "--shots", "1,x"], capsys)
    assert "required: --data" in _usage_error(parser, ["eval", "probe"], capsys)


def test_single_action_commands(parser):
    args = _parse(parser, ["search", "a red star", "--store", "s", "--describe", "--captioner", "runs/c/model"])
    assert args.run is search.run_search and args.describe and args.captioner == "runs/c/model"
    args = _parse(parser, ["serve", "--store", "s", "--port", "0"])
    assert args.run is search.run_serve and args.port == 0
    assert _parse(parser, ["index", "photos", "--store", "s"]).run is search.run_index
    args = _parse(parser, ["duplicates", "--store", "s", "--threshold", "0.95", "--json", "--out", "d.json"])
    assert args.run is search.run_duplicates and (args.threshold, args.json, args.out, args.exact_only) == (0.95, True, "d.json", False)
    assert _parse(parser, ["duplicates", "--store", "s", "--exact-only"]).exact_only
    assert _parse(parser, ["sketch", "cat.png", "--strokes", "8"]).strokes == 8


def test_search_imports_no_captioning():
    code = ("import sys, clipworks.search.engine, clipworks.search.server, clipworks.search.indexer; "
            "assert not [m for m in sys.modules if m.startswith('clipworks.captioning')], 'captioning imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_describe_needs_a_describer(tmp_path):
    from clipworks.errors import InputFileError
    from clipworks.search.engine import SearchEngine
    from clipworks.search.store import Store

    store = Store(tmp_path / "store")
    store.bind_model("RN-Tiny-64", 64)
    store.close()
    engine = SearchEngine(tmp_path / "store", model=object(), preprocess=None, tokenizer=None)
    with pytest.raises(InputFileError, match="no captioner"):
        engine.describe(image=object())
    engine.describer = lambda image: f"described {image}"
    assert engine.describe(image="x") == "described x"
