"""`clipworks vqa ask --batch`: every row of a JSONL or CSV question table answered with the model loaded once,
as the model answers each pair alone, in table order, with unusable rows skipped, named and counted; the output
file written whole or not at all, and never over an existing one."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from clipworks.cli.main import main
from clipworks.model.transforms import load_image
from clipworks.vqa.inference import ask, ask_many
from clipworks.vqa.model import load_vqa, preprocess_for
from clipworks.vqa.questions import VQADataset

SCENES = 6


@pytest.fixture(scope="module")
def model():
    return load_vqa("default")


@pytest.fixture
def scenes(tmp_path):
    """Generated scenes saved as PNGs in tmp_path/img, with a generated question about each."""
    (tmp_path / "img").mkdir()
    data = VQADataset(SCENES, seed=5, split="heldout")
    items = []
    for i in range(SCENES):
        item = data[i]
        item.image.save(tmp_path / "img" / f"scene{i}.png")
        items.append((f"img/scene{i}.png", item.question.text))
    return items


def _reference(model, image_path, question: str, top: int = 3) -> list[tuple[str, float]]:
    """The answers straight from the model's forward pass, one pair at a time (no inference helpers)."""
    x = preprocess_for(model.config, model.preprocess_config)(load_image(image_path)).unsqueeze(0)
    with torch.no_grad():
        probs = model.eval()(x, model.tokenize([question])).softmax(dim=-1)[0]
    return [(model.config.answers[i], float(probs[i])) for i in probs.argsort(descending=True)[:top].tolist()]


def _assert_same_answers(got, expected):
    assert [a for a, _ in got] == [a for a, _ in expected], (got, expected)
    assert [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-5)


def test_ask_many_answers_each_pair_as_the_model_does_alone(model, scenes, tmp_path):
    images = [load_image(tmp_path / path) for path, _ in scenes]
    questions = [q for _, q in scenes]
    # batches of 4 over 6 pairs: a full batch and a partial one
    batched = ask_many(model, images, questions, top=5, batch_size=4)
    assert len(batched) == SCENES
    for (path, question), got in zip(scenes, batched):
        _assert_same_answers(got, _reference(model, tmp_path / path, question, top=5))
    _assert_same_answers(ask(model, images[2], questions[2]), _reference(model, tmp_path / scenes[2][0], questions[2]))


def test_batch_jsonl_keeps_order_skips_bad_rows_and_matches_single_answers(model, scenes, tmp_path, capsys):
    (tmp_path / "img" / "corrupt.png").write_bytes(b"not an image at all")
    rows = [json.dumps({"image": path, "question": q}) for path, q in scenes[:3]]
    rows += [
        json.dumps({"image": "img/missing.png", "question": "what colour is the star?"}),  # line 4
        json.dumps({"image": "img/corrupt.png", "question": "what colour is the star?"}),  # line 5
        json.dumps({"image": scenes[0][0], "question": "   "}),  # line 6: empty question
        json.dumps({"image": scenes[1][0]}),  # line 7: no question field
        "{not json",  # line 8
        json.dumps({"image": scenes[2][0], "question": "why " * 80}),  # line 9: longer than the text context
    ]
    rows += [json.dumps({"Image": path, "Question": q}) for path, q in scenes[3:]]  # column names in any case
    table = tmp_path / "questions.jsonl"
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "answers" / "out.jsonl"
    assert main(["vqa", "ask", "--batch", str(table), "--out", str(out), "--batch-size", "4", "--top", "3"]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(rows)  # one record per input row, in input order
    answered = [r for r in records if "answers" in r]
    assert [(r["image"], r["question"]) for r in answered] == scenes
    for record in answered:
        _assert_same_answers([tuple(pair) for pair in record["answers"]],
                             _reference(model, tmp_path / record["image"], record["question"]))
    skipped = {i + 1: r["skipped"] for i, r in enumerate(records) if "skipped" in r}
    assert list(skipped) == [4, 5, 6, 7, 8, 9]
    assert skipped[4] == "no such file"
    assert "image" in skipped[5] and records[4]["image"] == "img/corrupt.png"
    assert skipped[6] == "empty question" and skipped[7] == "no question field (expected one of question, text; found image)"
    assert skipped[8].startswith("malformed JSON line") and records[7] == {"image": None, "question": None,
                                                                            "skipped": skipped[8]}
    assert skipped[9].startswith(f"question longer than the text tower's context length of "
                                 f"{model.text_tower.context_length} tokens ('why why")
    # the tally names the rows and files
    assert "skipped 6 of 12 rows: " in captured.err and "1 no such file" in captured.err
    assert f"{table}:4 (img/missing.png): no such file" in captured.err
    assert f"{table}:5 (img/corrupt.png)" in captured.err
    assert f"answered 6 of 12 rows; wrote {out}" in captured.out
    # the single form prints the same answers for a row
    path, question = scenes[1]
    assert main(["vqa", "ask", str(tmp_path / path), question]) == 0
    printed = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [[f"{p:6.3f}".strip(), a] for a, p in answered[1]["answers"]] == printed
    # an existing --out is refused before anything is read or loaded, and left as it was
    before = out.read_bytes()
    assert main(["vqa", "ask", "--batch", str(table), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before


def test_batch_csv_to_stdout_and_tables_that_cannot_be_answered(model, scenes, tmp_path, capsys):
    table = tmp_path / "questions.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "image"])
        writer.writerow([scenes[0][1], scenes[0][0]])
        writer.writerow(["is the star, the big one, red?", scenes[1][0]])  # a comma inside a quoted cell
        writer.writerow(["what colour is the star?", "img/nowhere.png"])
        writer.writerow([scenes[2][1], scenes[2][0]])
    assert main(["vqa", "ask", "--batch", str(table), "--top", "2"]) == 0  # no --out: JSON lines on stdout
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["image"], r["question"]) for r in records] == [
        (scenes[0][0], scenes[0][1]), (scenes[1][0], "is the star, the big one, red?"),
        ("img/nowhere.png", "what colour is the star?"), (scenes[2][0], scenes[2][1])]
    assert records[2]["skipped"] == "no such file" and f"{table}:4 (img/nowhere.png)" in captured.err
    for record in (records[0], records[1], records[3]):
        assert len(record["answers"]) == 2
        _assert_same_answers([tuple(pair) for pair in record["answers"]],
                             _reference(model, tmp_path / record["image"], record["question"], top=2))

    # a header without a question column, and a table none of whose rows can be answered: errors, no output file
    no_question = tmp_path / "no_question.csv"
    no_question.write_text("image,caption\nimg/scene0.png,a star\n")
    out = tmp_path / "out.jsonl"
    assert main(["vqa", "ask", "--batch", str(no_question), "--out", str(out)]) == 1
    assert "the header row has no a question column (question, text)" in capsys.readouterr().err
    all_bad = tmp_path / "all_bad.jsonl"
    all_bad.write_text(json.dumps({"image": "img/nowhere.png", "question": "what shape?"}) + "\n")
    assert main(["vqa", "ask", "--batch", str(all_bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no row could be answered" in err and "img/nowhere.png" in err and not out.exists()
    assert not list(tmp_path.glob(".out.*"))  # nor a temporary file
