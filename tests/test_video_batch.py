"""`clipworks video classify` on many videos: several paths or a --batch list (.txt, .jsonl, .csv), the model
and the labels' text features computed once, one JSON line per video in input order, each ranking what the
model gives that video alone; unreadable videos skipped, named and counted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clipworks.cli.main import main
from clipworks.video.decode import read_video, write_video
from clipworks.video.inference import label_probabilities
from clipworks.video.model import preprocess_frames, video_model
from clipworks.video.world import write_video_world

LABELS = ["moves left", "grows", "spins", "changes colour"]
TEMPLATES = ["{}", "a video of a shape that {}"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Five world clips as .webm with clips.jsonl beside them, a larger .mp4 (a batch of mixed sizes), and a
    corrupt file."""
    root = tmp_path_factory.mktemp("clips")
    write_video_world(root, 5, fmt="webm", num_frames=12)
    frames = np.full((10, 96, 96, 3), 30, np.uint8)
    for i in range(10):
        frames[i, 30:60, 5 * i:5 * i + 24] = (220, 40, 40)
    write_video(root / "videos" / "square.mp4", frames, fps=8)
    (root / "videos" / "broken.mp4").write_bytes(b"\x00" * 400)
    return root


@pytest.fixture(scope="module")
def model():
    return video_model("default")


def _reference(model, path) -> list[tuple[str, float]]:
    """The ranking from the model's pieces for one video alone (no batching, no inference helpers' ranking)."""
    video = read_video(path, model.config.num_frames)
    with torch.no_grad():
        frames = model.eval().encode_frames(preprocess_frames(model, video.frames[None]))
        probs = label_probabilities(model, frames, torch.from_numpy(video.mask)[None], LABELS, TEMPLATES)[0]
    return sorted(zip(LABELS, probs.tolist()), key=lambda pair: -pair[1])


def _assert_same_ranking(got, expected):
    assert [label for label, _ in got] == [label for label, _ in expected], (got, expected)
    assert [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-5)


def test_batch_list_keeps_order_skips_bad_videos_and_matches_each_video_alone(model, clips, capsys):
    listed = [json.loads(line)["video"] for line in (clips / "clips.jsonl").read_text().splitlines()]
    rows = [json.dumps({"video": v}) for v in listed[:2]]
    rows += [json.dumps({"video": "videos/broken.mp4"}), json.dumps({"video": "videos/missing.webm"}),
             json.dumps({"caption": "no video field"}), json.dumps({"path": "videos/square.mp4"})]
    rows += [json.dumps({"video": v}) for v in listed[2:]]
    table = clips / "list.jsonl"
    table.write_text("\n".join(rows) + "\n")
    out = clips / "out" / "labels.jsonl"
    argv = ["video", "classify", "--batch", str(table), "--labels", *LABELS, "--templates", *TEMPLATES]
    assert main([*argv, "--out", str(out), "--batch-size", "3"]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["video"] for r in records] == [*listed[:2], "videos/broken.mp4", "videos/missing.webm", None,
                                             "videos/square.mp4", *listed[2:]]
    for record in records:
        if "labels" in record:
            _assert_same_ranking([tuple(pair) for pair in record["labels"]], _reference(model, clips / record["video"]))
    assert [i for i, r in enumerate(records) if "skipped" in r] == [2, 3, 4]
    assert "no such file" in records[3]["skipped"] and records[4]["skipped"].startswith("no video field")
    assert "skipped 3 of 9 videos" in captured.err and f"{table}:3 (videos/broken.mp4)" in captured.err
    assert f"classified 6 of 9 videos; wrote {out}" in captured.out
    # an existing --out is refused
    assert main([*argv, "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_several_paths_and_a_txt_list_give_json_lines(model, clips, capsys):
    videos = [clips / "videos" / "000003.webm", clips / "videos" / "square.mp4"]
    assert main(["video", "classify", *map(str, videos), "--labels", *LABELS, "--templates", *TEMPLATES]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # no --out: stdout
    assert [r["video"] for r in records] == [str(v) for v in videos]
    for record, video in zip(records, videos):
        _assert_same_ranking([tuple(pair) for pair in record["labels"]], _reference(model, video))

    (clips / "sub").mkdir(exist_ok=True)
    listing = clips / "sub" / "videos.txt"  # relative paths are read from the list's folder
    listing.write_text("../videos/000001.webm\n\n../videos/broken.mp4\n")
    out = clips / "txt.jsonl"
    assert main(["video", "classify", "--batch", str(listing), "--labels", *LABELS, "--templates", *TEMPLATES,
                 "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["video"] for r in records] == ["../videos/000001.webm", "../videos/broken.mp4"]
    _assert_same_ranking([tuple(p) for p in records[0]["labels"]], _reference(model, clips / "videos" / "000001.webm"))
    assert "labels" not in records[1] and f"{listing}:3 (../videos/broken.mp4)" in capsys.readouterr().err

    # a CSV list none of whose videos can be read: an error, and no output file
    bad = clips / "bad.csv"
    bad.write_text("video,label\nvideos/broken.mp4,x\n")
    out = clips / "bad_out.jsonl"
    assert main(["video", "classify", "--batch", str(bad), "--labels", *LABELS, "--out", str(out)]) == 1
    assert "none of the 1 videos could be read" in capsys.readouterr().err and not out.exists()
