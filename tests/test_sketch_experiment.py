"""The CLIPasso experiment: both judges' answers recorded on a tiny run, the recognisability summary against a known
answer, the verdict on the claim, the judges' training data, and the second judge's default."""

from __future__ import annotations

import hashlib
import json

import pytest

from clipworks.sketch import experiment
from clipworks.sketch.experiment import Plan, claim_verdict, recognisability, summarise


def _record(name: str, init: str, strokes: int, default: str, second: str, label: str = "circle") -> dict:
    return {"set": "world", "name": name, "label": label, "style": "classic", "init": init, "strokes": strokes,
            "predicted": {"default": default, "second": second}, "outline_recall": 0.5, "ink_on_object": 1.0,
            "loss": 0.5, "seconds": 1.0}


def test_recognisability_and_summary_count_right_answers_per_judge_and_stroke_count():
    # 4 objects (all circles); at 4 strokes the default judge names 1 right, the second 0; at 8: 3 and 2
    sketches = [_record(f"o{k}", "saliency", 4, "circle" if k == 0 else "star", "square") for k in range(4)]
    sketches += [_record(f"o{k}", "saliency", 8, "circle" if k < 3 else "heart", "circle" if k < 2 else "star")
                 for k in range(4)]
    sketches += [_record("o0", "random", n, "star", "circle") for n in (4, 8)]
    sketches += [{**_record("cat", "saliency", 4, "a cat", "a cat", label="a cat"), "set": "photos"}]
    curves = recognisability(sketches, (4, 8))
    assert curves["default"]["saliency"] == [0.25, 0.75] and curves["second"]["saliency"] == [0.0, 0.5]
    assert curves["default"]["random"] == [0.0, 0.0] and curves["second"]["random"] == [1.0, 1.0]
    assert curves["default"]["saliency_sketches"] == 4 and curves["default"]["random_sketches"] == 1
    assert curves["default"]["claim"]["holds"] == "yes" and curves["second"]["claim"]["holds"] == "yes"
    targets = [{"set": "world", "label": "circle", "predicted": {"default": "circle", "second": "star"}},
               {"set": "world", "label": "star", "predicted": {"default": "star", "second": "star"}},
               {"set": "photos", "label": "a cat", "predicted": {"default": "a cat", "second": "a rocket"}}]
    summary = summarise(sketches, targets)
    assert summary["world/target_accuracy"] == {"default": 1.0, "second": 0.5}
    assert summary["photos/target_accuracy"] == {"default": 1.0, "second": 0.0}
    assert summary["world/saliency/8"]["sketch_accuracy"] == {"default": 0.75, "second": 0.5}
    assert summary["world/saliency/8"]["sketches"] == 4 and summary["world/random/4"]["sketches"] == 1
    assert summary["photos/saliency/4"]["sketch_accuracy"] == {"default": 1.0, "second": 1.0}
    assert "photos/random/4" not in summary


def test_claim_verdict():
    assert claim_verdict([0.2, 0.4, 0.4, 0.6], [4, 8, 16, 32])["holds"] == "yes"
    overall = claim_verdict([0.2, 0.5, 0.4, 0.6], [4, 8, 16, 32])
    assert overall["holds"] == "overall" and "8 to 16" in overall["text"]
    assert claim_verdict([0.5, 0.6, 0.6, 0.5], [4, 8, 16, 32])["holds"] == "no"
    assert claim_verdict([0.5, 0.5], [4, 8])["holds"] == "no"


def test_judge_card_reads_the_training_data_beside_the_weights(tmp_path):
    (tmp_path / "stage1" / "model-fp16").mkdir(parents=True)
    (tmp_path / "stage1" / "model-fp16" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "stage1" / "train_config.json").write_text(json.dumps({"data": "world", "data_options": {"size": 10}}))
    card = experiment.judge_card(str(tmp_path / "stage1" / "model-fp16"))
    assert card["training_data"] == ["world:size=10"] and card["styles_seen"] == ["flat"]
    assert card["weights_sha256"] == hashlib.sha256(b"weights").hexdigest()
    recipe = {"stages": [{"data": "world", "data_options": {"grayscale": 0.5}},
                         {"data": "world:size=9,styles=train,hard_negatives=true"}]}
    (tmp_path / "shipped").mkdir()
    (tmp_path / "shipped" / "recipe.json").write_text(json.dumps(recipe))
    card = experiment.judge_card(str(tmp_path / "shipped"))
    assert card["training_data"] == ["world:grayscale=0.5", "world:size=9,styles=train,hard_negatives=true"]
    assert "outline" in card["styles_seen"] and "hatching" in card["styles_seen"] and "sketch" not in card["styles_seen"]


def test_the_second_judge_must_be_named(capsys):
    with pytest.raises(SystemExit) as info:
        experiment.main(["--out", "unused"])
    assert info.value.code == 2
    assert "--second-judge" in capsys.readouterr().err and "make_default" in experiment.MAKE_SECOND_JUDGE


@pytest.mark.slow
def test_a_tiny_run_records_both_judges_and_writes_the_report(tmp_path):
    import torch

    import clipworks

    # a second judge that is not the default: random weights of the default's architecture, saved as a checkpoint
    torch.manual_seed(0)
    other, _ = clipworks.create_model("RN-Tiny-64", device="cpu")
    other.save_pretrained(tmp_path / "judge")
    plan = Plan(steps=2, per_shape=1, random_per_shape=0, strokes=(4,), shapes=("circle", "star"))
    results = experiment.run(tmp_path / "out", plan, str(tmp_path / "judge"), "test", progress=False)
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["judges"]["second"]["model"] == str(tmp_path / "judge")
    assert on_disk["judges"]["default"]["model"] == "default" and on_disk["judges"]["default"]["training_data"]
    assert len(on_disk["sketches"]) == 2 and {r["label"] for r in on_disk["sketches"]} == {"circle", "star"}
    for record in on_disk["sketches"] + on_disk["targets"]:
        assert set(record["predicted"]) == {"default", "second"}
        assert all(answer in on_disk["classes"]["world"] for answer in record["predicted"].values())
    assert set(results["recognisability"]) == {"default", "second"}
    assert set(results["recogniser_control"]) == {"default", "second"}
    for name in ("README.md", "recognisability.png", "sketches_saliency.png"):
        assert (tmp_path / "out" / name).is_file()
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "Not the default plan" in readme and "second judge" in readme
