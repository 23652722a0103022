"""Training invariants: 2 DDP ranks with B/2 == 1 process with B; accumulation == one batch; resume is exact."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from clipworks.model.clip import CLIP
from clipworks.model.config import get_model_config
from clipworks.model.tokenizer import tokenize
from clipworks.training.loss import ClipLoss
from clipworks.training.schedule import warmup_cosine
from clipworks.training.contrastive import FeatureModel, TrainConfig, contrastive_step, train
from clipworks.training.run import read_metrics

REPO = Path(__file__).resolve().parents[1]
BATCH = 8


def _batch(negatives: bool = False) -> tuple[torch.Tensor, ...]:
    """Images and tokens; with `negatives` also hard-negative tokens and their validity (one is missing)."""
    g = torch.Generator().manual_seed(3)
    images = torch.randn(BATCH, 3, 64, 64, generator=g)
    colours = "red green blue pink cyan gold grey teal".split()
    tokens = tokenize([f"a {c} shape number {i}" for i, c in enumerate(colours)], 32)
    if not negatives:
        return images, tokens
    negative_tokens = tokenize([f"a {c} shape number {i + 1}" for i, c in enumerate(colours)], 32)
    valid = torch.ones(BATCH, dtype=torch.bool)
    valid[5] = False
    return images, tokens, negative_tokens, valid


def _micro(batch: tuple[torch.Tensor, ...], accum: int, local: slice = slice(None)) -> list[tuple[torch.Tensor, ...]]:
    return list(zip(*(x[local].chunk(accum) for x in batch)))


def _model() -> CLIP:
    torch.manual_seed(0)
    return CLIP(get_model_config("ViT-Tiny-8-64"))


def _grads(model: CLIP) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _single_process(accum: int, negatives: bool = False) -> tuple[float, dict[str, torch.Tensor]]:
    model = _model()
    feats = FeatureModel(model)
    micro = _micro(_batch(negatives), accum)
    loss = contrastive_step(feats, feats, ClipLoss(0.5 if negatives else 0.0), micro, contextlib.nullcontext)
    return float(loss), _grads(model)


def _rank_worker(rank: int, world: int, port: int, accum: int, out: str, negatives: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = _model()
    feats = FeatureModel(model)
    ddp = torch.nn.parallel.DistributedDataParallel(feats)
    local = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    micro = _micro(_batch(negatives), accum, local)
    loss = contrastive_step(ddp, feats, ClipLoss(0.5 if negatives else 0.0), micro, contextlib.nullcontext)
    dist.all_reduce(loss)
    if rank == 0:
        torch.save({"loss": float(loss) / world, "grads": _grads(model)}, out)
    dist.destroy_process_group()


@pytest.mark.parametrize("accum,negatives", [(1, False), (2, False), (2, True)])
def test_two_ranks_match_one_process(tmp_path, accum, negatives, free_port):
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank_worker, args=(2, free_port(), accum, str(out), negatives), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    loss, grads = _single_process(accum=1, negatives=negatives)
    assert abs(ddp["loss"] - loss) < 1e-5, (ddp["loss"], loss)
    assert grads.keys() == ddp["grads"].keys() and "logit_scale" in grads
    worst = max(((ddp["grads"][n] - g).abs().max() / (g.abs().max() + 1e-12)).item() for n, g in grads.items())
    assert worst < 1e-4, f"largest relative gradient difference {worst:.2e}"


@pytest.mark.parametrize("negatives", [False, True])
def test_accumulation_keeps_the_contrastive_batch(tmp_path, negatives):
    loss1, grads1 = _single_process(accum=1, negatives=negatives)
    loss4, grads4 = _single_process(accum=4, negatives=negatives)
    assert abs(loss1 - loss4) < 1e-5
    worst = max(((grads4[n] - g).abs().max() / (g.abs().max() + 1e-12)).item() for n, g in grads1.items())
    assert worst < 1e-4, f"largest relative gradient difference {worst:.2e}"


def test_hard_negatives_are_extra_image_to_text_columns():
    g = torch.Generator().manual_seed(0)
    img, txt, neg = (torch.nn.functional.normalize(torch.randn(4, 6, generator=g), dim=-1) for _ in range(3))
    valid = torch.tensor([True, False, True, True])
    scale = torch.tensor(2.0)
    loss = ClipLoss()(img, txt, scale, neg, valid)
    s = scale.exp()
    labels = torch.arange(4)
    per_image = torch.cat([s * img @ txt.t(), (s * img @ neg.t())[:, [0, 2, 3]]], dim=1)  # column 1 missing
    expected = (torch.nn.functional.cross_entropy(per_image, labels)
                + torch.nn.functional.cross_entropy(s * txt @ img.t(), labels)) / 2
    assert torch.allclose(loss, expected, atol=1e-6)
    assert loss > ClipLoss()(img, txt, scale)  # negatives can only add to the image->text loss

    # negative_weight adds a two-way (caption vs its twin) cross-entropy, averaged over samples that have a twin
    pair = torch.stack([s * (img * txt).sum(-1), s * (img * neg).sum(-1)], dim=1)
    two_way = torch.nn.functional.cross_entropy(pair, torch.zeros(4, dtype=torch.long), reduction="none")[valid].mean()
    assert torch.allclose(ClipLoss(0.5)(img, txt, scale, neg, valid), expected + 0.5 * two_way, atol=1e-6)


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 1.0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 1.0, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 1.0, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine(110, 1.0, 10, 110, min_lr=0.1) == pytest.approx(0.1)


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out=str(out), model="ViT-Tiny-8-64", data="world", data_options={"size": 256}, steps=6,
                batch_size=16, warmup=2, lr=1e-3, checkpoint_every=3, log_every=1, seed=4)
    return TrainConfig(**{**base, **kw})


def test_resume_continues_exactly(tmp_path, capsys):
    """Stopped at step 3, resumed, killed after logging step 5 with step 3 its last checkpoint, then continued by
    `clipworks train --out RUN --resume` alone: the same losses and bit-identical weights as one whole run."""
    import shutil

    from clipworks.cli.main import main

    full = train(_cfg(tmp_path / "full"), progress=False)
    run = tmp_path / "split"
    train(_cfg(run), progress=False, stop_after=3)
    assert not (run / "model").exists()
    shutil.copy(run / "checkpoint.pt", tmp_path / "step3.pt")
    train(_cfg(run), resume=True, progress=False, stop_after=2)  # logs steps 4 and 5 ...
    shutil.copy(tmp_path / "step3.pt", run / "checkpoint.pt")  # ... then "dies" with step 3 its last checkpoint
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]

    # A flag that disagrees with the run is refused by name, with both values; an agreeing one is fine.
    assert main(["train", "--out", str(run), "--resume", "--batch-size", "32"]) == 1
    assert capsys.readouterr().err == (f"clipworks: error: --batch-size 32: the run in {run} was started with "
                                       "--batch-size 16; leave the flag out to continue it\n")
    assert main(["train", "--out", str(run), "--resume", "--batch-size", "16"]) == 0
    assert json.loads((run / "train_config.json").read_text())["data_options"] == {"size": 256}

    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the rows logged after the checkpoint were dropped, not repeated
    a = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    b = [r["loss"] for r in read_metrics(run / "metrics.jsonl")]
    assert len(a) == 6 and a == b, (a, b)
    wa = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    wb = load_file(str(run / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "full" / "loss.png").stat().st_size > 1000 and full["steps"] == 6
    # The loss goes down on this tiny run (a real signal, not a constant).
    assert a[-1] < a[0]


def test_resume_from_a_checkpoint_written_before_the_shared_run_loop(tmp_path):
    """A CLIP checkpoint in the trainer's earlier format (no "rng" entry) resumes to the same weights as one
    whole run: runs started with the old code can be continued and exported with this one."""
    full = train(_cfg(tmp_path / "full", steps=4), progress=False)
    run = tmp_path / "old"
    train(_cfg(run, steps=4), progress=False, stop_after=3)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    old = {k: state[k] for k in ("model", "optimizer", "step", "config", "skipped_samples", "skipped_draws")}
    torch.save(old, run / "checkpoint.pt")
    resumed = train(_cfg(run, steps=4), resume=True, progress=False)
    assert resumed["steps"] == full["steps"] == 4
    wa = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    wb = load_file(str(run / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert set(torch.load(run / "checkpoint.pt", weights_only=True)) >= {"model", "optimizer", "step", "rng", "config"}


def test_training_on_world_hard_negatives(tmp_path):
    summary = train(_cfg(tmp_path / "neg", data_options={"size": 64, "hard_negatives": True}, steps=2), progress=False)
    losses = [r["loss"] for r in read_metrics(tmp_path / "neg" / "metrics.jsonl")]
    assert summary["steps"] == 2 and len(losses) == 2 and all(v == v and v > 0 for v in losses)
    # Same images, captions and weights without the negatives: extra columns can only raise the first loss.
    train(_cfg(tmp_path / "plain", data_options={"size": 64}, steps=1, warmup=1), progress=False)
    plain = read_metrics(tmp_path / "plain" / "metrics.jsonl")[0]["loss"]
    assert losses[0] > plain


@pytest.mark.slow
def test_torchrun_two_ranks_train_like_one_process(tmp_path, free_port):
    args = ["train", "--model", "ViT-Tiny-8-64", "--data", "world:size=64", "--steps", "2", "--batch-size", "16",
            "--warmup", "1", "--log-every", "1", "--seed", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "clipworks.cli.main", *args, "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
                            str(free_port()), "-m", "clipworks.cli.main", *args, "--out", str(tmp_path / "two")],
                           env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-2000:]
    one = read_metrics(tmp_path / "one" / "metrics.jsonl")
    two = read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert [round(r["loss"], 4) for r in one] == [round(r["loss"], 4) for r in two]
    wa = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4
    assert json.loads((tmp_path / "two" / "train_config.json").read_text())["batch_size"] == 16


def test_training_on_a_user_folder_skips_and_counts_bad_files(tmp_path):
    """A real folder of captioned images with a corrupt JPEG and a text file posing as an image."""
    from PIL import Image

    from clipworks.data.world import WorldDataset

    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    world = WorldDataset(14, seed=9)
    for i in range(14):
        sample = world[i]
        target = folder / ("nested" if i % 2 else "") / f"img{i}.png"
        sample.image.save(target)
        target.with_suffix(".txt").write_text("\n".join(sample.captions), encoding="utf-16" if i == 3 else "utf-8")
    corrupt = folder / "broken.jpg"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:150])
    corrupt.with_suffix(".txt").write_text("a red square")
    fake = folder / "fake.png"
    fake.write_text("not an image")
    fake.with_suffix(".txt").write_text("a blue circle")
    cfg = _cfg(tmp_path / "run", data=str(folder), data_options={}, steps=4, batch_size=8)
    summary = train(cfg, progress=False)
    # 16 samples, 2 epochs: each bad file is drawn (and replaced) at least twice, but counted once.
    assert summary["steps"] == 4 and summary["skipped"] == 2 and summary["skipped_draws"] >= 4
    reasons = summary["skip_summary"].split("; e.g.")[0]
    assert reasons.startswith("skipped 2 of 16 samples: ")
    assert "1 corrupt or truncated image" in reasons and "1 not a recognised image file" in reasons
    assert f"(drawn {summary['skipped_draws']} times in all" in summary["skip_summary"]
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["skipped"] == 2
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    # A new run into the finished run's folder is refused instead of overwriting it.
    from clipworks.errors import CheckpointError

    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match="holds a training run already; continue it with --resume"):
        train(cfg, progress=False)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


def test_empty_folder_is_a_clear_error(tmp_path):
    from clipworks.errors import InputFileError

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="empty"):
        train(_cfg(tmp_path / "run", data=str(tmp_path / "empty"), data_options={}), progress=False)
