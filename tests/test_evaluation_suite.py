"""The evaluation suite: metrics against CLIP_benchmark's own code, the probe against scikit-learn, data sets,
the `clipworks eval` CLI and report, and the paper-claims report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipworks.errors import InputFileError
from clipworks.evaluation.datasets import SPATIAL, classification_names, load_classification, load_retrieval
from clipworks.evaluation.probe import _stratified_split, few_shot, linear_probe, select_c
from clipworks.evaluation.retrieval import retrieval_metrics
from clipworks.evaluation.zeroshot import classification_metrics, load_templates, template_names


# ---------------------------------------------------------------- metrics vs CLIP_benchmark


def _topk_reference(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """CLIP_benchmark's documented top-k accuracy: the share of samples whose label is among the k highest
    logits. (Their `accuracy` itself calls float() on a 1-element array, which NumPy 2.3 refuses.)"""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float(np.mean([labels[i] in top[i] for i in range(len(labels))]))


def test_classification_metrics_equal_clip_benchmark():
    from sklearn.metrics import balanced_accuracy_score

    g = torch.Generator().manual_seed(0)
    for n, c in ((500, 10), (77, 3), (1000, 64)):
        logits = torch.randn(n, c, generator=g, dtype=torch.float64)
        labels = torch.randint(0, c, (n,), generator=g)
        labels[:c] = torch.arange(c)  # every class present
        ours = classification_metrics(logits, labels, topk=(1, 5))
        assert abs(ours["top1"] - _topk_reference(logits.numpy(), labels.numpy(), 1)) < 1e-9
        assert abs(ours["top5"] - _topk_reference(logits.numpy(), labels.numpy(), min(5, c))) < 1e-9
        # CLIP_benchmark's mean_per_class_recall is balanced_accuracy_score(target, argmax)
        ref = balanced_accuracy_score(labels.numpy(), logits.argmax(1).numpy())
        assert abs(ours["mean_per_class_recall"] - ref) < 1e-9


def test_retrieval_recall_equals_clip_benchmark():
    from clip_benchmark.metrics.zeroshot_retrieval import recall_at_k

    g = torch.Generator().manual_seed(1)
    n_images = 120
    owner = torch.cat([torch.arange(n_images), torch.randint(0, n_images, (200,), generator=g)])  # 1-4 captions each
    images = torch.nn.functional.normalize(torch.randn(n_images, 16, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(images[owner] + 0.9 * torch.randn(len(owner), 16, generator=g), dim=-1)
    ours = retrieval_metrics(images, texts, owner, ks=(1, 5, 10))
    scores = texts @ images.t()  # CLIP_benchmark: [texts, images]
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(owner)), owner] = True
    for k in (1, 5, 10):
        image_retrieval = (recall_at_k(scores, positive, k) > 0).float().mean().item()
        text_retrieval = (recall_at_k(scores.t(), positive.t(), k) > 0).float().mean().item()
        assert abs(ours[f"text_to_image_R@{k}"] - image_retrieval) < 1e-9
        assert abs(ours[f"image_to_text_R@{k}"] - text_retrieval) < 1e-9
    assert 0 < ours["text_to_image_R@1"] < ours["text_to_image_R@10"] < 1  # the comparison is not trivial


# ---------------------------------------------------------------- probe and few-shot


def _digit_pixels():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data / 16.0
    test = np.arange(len(x)) % 5 == 4
    return x[~test], d.target[~test], x[test], d.target[test]


def test_linear_probe_equals_sklearn_refit_at_the_chosen_c():
    from sklearn.linear_model import LogisticRegression

    xtr, ytr, xte, yte = _digit_pixels()
    result = linear_probe(xtr, ytr, xte, yte, n_classes=10)
    ref = LogisticRegression(C=result["C"], max_iter=1000).fit(xtr, ytr)
    assert abs(result["metrics"]["top1"] - (ref.predict(xte) == yte).mean()) < 1e-9
    assert result["metrics"]["top1"] > 0.93  # logistic regression on raw digits pixels
    sweep = dict(map(tuple, result["sweep"]))
    assert sweep[result["C"]] == max(sweep.values())  # the chosen C is the best on validation
    assert len(sweep) > 9  # the grid plus bisection steps


def test_select_c_prefers_strong_regularisation_when_it_helps():
    rng = np.random.default_rng(0)
    # 2 informative features among 200 noisy ones and few samples: large C overfits the noise
    n, d = 60, 200
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d))
    x[:, 0] += 1.5 * (2 * y - 1)
    yv = rng.integers(0, 2, 400)
    xv = rng.normal(size=(400, d))
    xv[:, 0] += 1.5 * (2 * yv - 1)
    c, sweep = select_c(x, y, xv, yv)
    assert sweep[c] >= sweep[max(sweep)] and c < max(sweep)


def test_stratified_split_keeps_every_class_in_both_parts():
    y = np.repeat(np.arange(5), [2, 3, 10, 10, 40])
    tr, va = _stratified_split(y, 0.2, seed=0)
    assert set(y[tr]) == set(y[va]) == set(range(5)) and len(set(tr) & set(va)) == 0 and len(tr) + len(va) == len(y)


def test_few_shot_uses_k_images_per_class_and_reports_spread():
    xtr, ytr, xte, yte = _digit_pixels()
    out = few_shot(xtr, ytr, xte, yte, 10, shots=(1, 4), seeds=(0, 1, 2))
    assert set(out) == {"1", "4"} and all(len(v["runs"]) == 3 for v in out.values())
    assert out["4"]["top1_mean"] > out["1"]["top1_mean"] > 0.3  # chance is 0.1
    assert out["1"]["top1_std"] > 0  # different draws give different probes
    assert abs(out["4"]["top1_mean"] - np.mean(out["4"]["runs"])) < 1e-12
    again = few_shot(xtr, ytr, xte, yte, 10, shots=(1,), seeds=(0, 1, 2))
    assert again["1"]["runs"] == out["1"]["runs"]  # seeded draws


# ---------------------------------------------------------------- data sets and templates


def test_templates_ship_and_each_has_one_slot():
    names = template_names()
    assert {"plain", "photo", "ensemble", "digits", "world_shape"} <= set(names)
    assert load_templates("plain") == ["{}"] and len(load_templates("ensemble")) >= 15
    with pytest.raises(InputFileError, match="ensemble"):
        load_templates("no-such-set")


def test_world_tasks_labels_follow_the_facts():
    from clipworks.data.world import HELDOUT_PAIRS

    shape = load_classification("world-shape", "test", n=40)
    assert len(shape.images) == 40 and shape.classnames[shape.labels[0]] in {s for _, s in HELDOUT_PAIRS}
    count = load_classification("world-count", "eval", n=60)
    assert set(count.labels) <= {0, 1, 2} and len(set(count.labels)) > 1
    rel = load_classification("world-relation", "eval", n=20)
    assert len(rel.prompts) == 20 and all(len(p) == len(SPATIAL) for p in rel.prompts)
    for prompts, label in zip(rel.prompts, rel.labels):
        assert SPATIAL[label].split()[0] in prompts[label]
    train = load_classification("world-shape", "train", n=30)
    assert not any(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(train.images, shape.images))


def test_unknown_data_set_lists_the_valid_ones():
    with pytest.raises(InputFileError) as err:
        load_classification("imagenet")
    for name in classification_names():
        assert name in str(err.value)


def _write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), (value, 255 - value, 0)).save(path)


def test_class_folder_reads_skips_corrupt_files_and_names_empty_classes(tmp_path):
    for k in range(6):
        _write_png(tmp_path / "red_things" / f"{k}.png", 250)
        _write_png(tmp_path / "green_things" / f"{k}.png", 5)
    (tmp_path / "green_things" / "broken.png").write_bytes(b"not an image")
    data = load_classification(str(tmp_path), "eval")
    assert data.classnames == ["green things", "red things"] and len(data.images) == 12
    assert sum(data.skipped.values()) == 1
    train, test = load_classification(str(tmp_path), "train"), load_classification(str(tmp_path), "test")
    assert len(train.images) + len(test.images) == 12 and len(test.images) == 2
    (tmp_path / "blue_things").mkdir()
    with pytest.raises(InputFileError, match="blue_things"):
        load_classification(str(tmp_path), "eval")


def test_retrieval_set_from_a_captioned_folder(tmp_path):
    for k in range(3):
        _write_png(tmp_path / f"{k}.png", 60 * k)
        (tmp_path / f"{k}.txt").write_text(f"picture {k}\nanother caption {k}\n", encoding="utf-8")
    data = load_retrieval(str(tmp_path))
    assert len(data.images) == 3 and len(data.captions) == 6 and list(np.bincount(data.text_to_image)) == [2, 2, 2]
    world = load_retrieval("world-captions", n=10)
    assert len(world.images) == 10 and len(world.captions) >= 40


# ---------------------------------------------------------------- CLI and report


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clipworks.cli.main", *args], cwd=cwd, capture_output=True, text=True)


def test_eval_cli_writes_a_result_and_report_merges(tmp_path):
    proc = _cli("eval", "zeroshot", "--data", "world-colour", "-n", "64", "--out", "r/colour.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "r/colour.json").read_text())
    assert {"task", "model", "data", "metrics", "versions", "hardware", "wall_time_s"} <= set(record)
    assert record["metrics"]["top1"] > 0.9  # the default model knows colours
    assert (tmp_path / "r/colour/confusion.png").stat().st_size > 1000
    (tmp_path / "r/bad.json").write_text("{not json", encoding="utf-8")
    proc = _cli("eval", "report", "r/colour.json", "r/bad.json", "--out", "rep", cwd=tmp_path)
    assert proc.returncode == 1 and "r/bad.json" in proc.stderr and "Traceback" not in proc.stderr
    report = (tmp_path / "rep/report.md").read_text()
    assert "| zeroshot | default | world-colour |" in report and "r/bad.json" in report
    assert (tmp_path / "rep/results.png").exists()


def test_eval_cli_unknown_task_lists_the_tasks(tmp_path):
    proc = _cli("eval", "captioning", "--data", "digits", cwd=tmp_path)
    assert proc.returncode == 2 and "'zeroshot', 'probe', 'fewshot', 'retrieval'" in proc.stderr
    proc = _cli("eval", "zeroshot", "--data", "cifar", cwd=tmp_path)
    assert proc.returncode == 1 and "world-shape" in proc.stderr and "digits" in proc.stderr


# ---------------------------------------------------------------- paper claims


def test_bag_of_words_targets():
    from clipworks.experiments.claims import bag_of_words_targets

    tokens = torch.tensor([[1, 5, 7, 5, 2, 0, 0], [1, 9, 2, 0, 0, 0, 0]])
    t = bag_of_words_targets(tokens, 12, special=(0, 1, 2))
    assert torch.allclose(t[0, [5, 7]], torch.tensor([2 / 3, 1 / 3])) and t[1, 9] == 1
    assert torch.allclose(t.sum(1), torch.ones(2)) and t[:, [0, 1, 2]].sum() == 0


@pytest.mark.slow
def test_claims_report_quick_run(tmp_path):
    from clipworks.experiments.claims import main

    assert main(["--out", str(tmp_path), "--quick"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["prompts"]) >= {"world-shape", "digits"}
    assert len(results["efficiency"]["curve"]) == 3  # before training, and every 3 of 6 steps
    text = (tmp_path / "README.md").read_text()
    for k in range(1, 5):
        assert f"Claim {k}" in text and (tmp_path / next(p.name for p in tmp_path.glob(f"claim{k}_*.png"))).exists()
