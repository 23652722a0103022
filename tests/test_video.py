"""Video: decoding every supported container from files written here, frame sampling, the generated video world,
the similarity calculators' invariants (meanP is the masked mean of normalised frames; an untrained seqTransf is
meanP), the losses (ActionCLIP's multi-positive KL target), training with exact resume, and the CLI with a
corrupt video skipped and counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import clipworks
from clipworks.errors import InputFileError
from clipworks.video.decode import read_video, sample_indices, write_video
from clipworks.video.losses import kl_multi_positive, same_label_targets, symmetric_cross_entropy
from clipworks.video.model import VideoCLIP, VideoConfig, mean_pool
from clipworks.video.world import HELDOUT_ACTIONS, PHRASES, TRAIN_ACTIONS, VideoWorld

REPO = Path(__file__).resolve().parents[1]


def _moving_square(t: int = 20, size: int = 64) -> np.ndarray:
    frames = np.full((t, size, size, 3), 40, np.uint8)
    for i in range(t):
        frames[i, 20:40, 2 * i:2 * i + 16] = (220, 30, 30)
    return frames


@pytest.mark.parametrize("ext", [".mp4", ".webm", ".avi", ".mkv", ".mov", ".gif"])
def test_each_container_round_trips_through_pyav(tmp_path, ext):
    frames = _moving_square()
    path = write_video(tmp_path / f"clip{ext}", frames, fps=10)
    video = read_video(path, num_frames=8)
    keep = sample_indices(20, 8)
    assert keep == [1, 3, 6, 8, 11, 13, 16, 18]  # segment centres
    assert video.frames.shape == (8, 64, 64, 3) and video.mask.all() and video.source_frames == 20
    assert video.fps == pytest.approx(10.0)
    error = np.abs(video.frames.astype(int) - frames[keep].astype(int)).mean()
    assert error < 4.0, error  # lossy codecs, but the same frames in the same order
    # the red square's left edge moves right frame after frame
    left = [int(np.argmax(f[30, :, 0] > 150)) for f in video.frames]
    assert left == sorted(left) and left[-1] - left[0] > 20


def test_sampling_at_a_frame_rate_padding_and_frame_folders(tmp_path):
    assert sample_indices(20, None, source_fps=10, fps=2) == [0, 5, 10, 15]
    assert sample_indices(100, 4, source_fps=25, fps=1) == [0, 25, 50, 75]
    assert sample_indices(3, 8) == [0, 1, 2]
    path = write_video(tmp_path / "short.mp4", _moving_square(t=5), fps=5)
    video = read_video(path, num_frames=8)
    assert video.mask.tolist() == [True] * 5 + [False] * 3 and not video.frames[5:].any()
    folder = tmp_path / "frames"
    folder.mkdir()
    from PIL import Image

    for i, frame in enumerate(_moving_square(t=12)):
        Image.fromarray(frame).save(folder / f"img_{i + 1}.png")  # natural order: img_2 before img_10
    video = read_video(folder, num_frames=4)
    np.testing.assert_array_equal(video.frames, _moving_square(t=12)[sample_indices(12, 4)])
    # a decode cache returns the same frames without decoding again
    cached = read_video(tmp_path / "short.mp4", num_frames=8, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = read_video(tmp_path / "short.mp4", num_frames=8, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(cached.frames, again.frames)


def test_corrupt_and_truncated_videos_are_named(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 50)
    (tmp_path / "empty.webm").write_bytes(b"")
    good = write_video(tmp_path / "good.webm", _moving_square(), fps=10).read_bytes()
    (tmp_path / "cut.webm").write_bytes(good[: len(good) // 2])
    mp4 = write_video(tmp_path / "good.mp4", _moving_square(), fps=10).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(mp4[: len(mp4) // 2])
    for name, words in (("junk.mp4", "not a readable video"), ("empty.webm", "empty file"),
                        ("cut.webm", "truncated"), ("cut.mp4", "not a readable video"), ("gone.mp4", "no such")):
        with pytest.raises(InputFileError, match=words) as info:
            read_video(tmp_path / name)
        assert name in str(info.value)


def test_video_world_is_deterministic_holds_actions_out_and_groups_hard_negatives():
    world = VideoWorld(40, seed=3, split="train", num_frames=6)
    a, b = world[5], VideoWorld(40, seed=3, split="train", num_frames=6)[5]
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.captions == b.captions and a.frames.shape == (6, 64, 64, 3)
    clips = [world.clip(i) for i in range(40)]
    assert all(t.action not in HELDOUT_ACTIONS for c in clips for t in c.tracks)
    for c in clips:
        main = c.tracks[0]
        assert any(p.format(frm=main.start_colour, to=main.end_colour) in c.captions[0] for p in PHRASES[main.action])
    # a group of 4 shares its objects and background; its main actions all differ
    for g in range(10):
        group = clips[4 * g:4 * g + 4]
        assert len({(c.tracks[0].shape, c.tracks[0].start_colour, c.background.kind) for c in group}) == 1
        assert len({c.label for c in group}) == 4
    held = VideoWorld(12, split="heldout")
    assert {held[i].label for i in range(12)} <= set(HELDOUT_ACTIONS)
    # actions are visible in the pixels: "grows" ends with more object pixels than it starts with
    grows = next(c for c in clips if c.label == "grows" and len(c.tracks) == 1)
    assert grows.tracks[0].radius[-1] > 2 * grows.tracks[0].radius[0]
    assert set(TRAIN_ACTIONS) | set(HELDOUT_ACTIONS) == set(PHRASES) - {"stays still"}


def test_losses_and_the_multi_positive_target():
    labels = ["run", "jump", "run", "sit", "run"]
    target = same_label_targets(labels)
    expected = torch.tensor([[1 / 3, 0, 1 / 3, 0, 1 / 3], [0, 1, 0, 0, 0], [1 / 3, 0, 1 / 3, 0, 1 / 3],
                             [0, 0, 0, 1, 0], [1 / 3, 0, 1 / 3, 0, 1 / 3]])
    torch.testing.assert_close(target, expected)
    logits = torch.randn(5, 5)
    manual = 0.0
    for lg in (logits, logits.t()):
        logp = lg.log_softmax(dim=1)
        manual += sum(float((target[i][target[i] > 0] * (target[i][target[i] > 0].log() - logp[i][target[i] > 0])).sum())
                      for i in range(5)) / 5
    assert kl_multi_positive(logits, labels).item() == pytest.approx(manual / 2, rel=1e-5)
    # logits whose softmax is the target give zero loss; with distinct labels KL equals InfoNCE
    assert kl_multi_positive((expected + 1e-9).log(), labels).item() == pytest.approx(0.0, abs=1e-6)
    distinct = ["a", "b", "c", "d", "e"]
    assert kl_multi_positive(logits, distinct).item() == pytest.approx(symmetric_cross_entropy(logits).item(), rel=1e-5)
    ce = (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.t(), torch.arange(5))) / 2
    assert symmetric_cross_entropy(logits).item() == pytest.approx(ce.item())


@pytest.fixture(scope="module")
def clip_model():
    torch.manual_seed(0)
    model, _ = clipworks.create_model("default", device="cpu")
    return model


def test_mean_p_is_the_masked_mean_of_normalised_frames_and_seq_transf_starts_as_mean_p(clip_model):
    torch.manual_seed(0)
    feats = torch.randn(3, 6, clip_model.config.embed_dim) * 5
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    pooled = mean_pool(feats, mask)
    for b in range(3):
        frames = [feats[b, t] / feats[b, t].norm() for t in range(6) if mask[b, t]]
        mean = torch.stack(frames).mean(0)
        torch.testing.assert_close(pooled[b], mean / mean.norm())
    noisy = feats.clone()
    noisy[~mask] = 1e3  # padded frames do not count
    torch.testing.assert_close(mean_pool(noisy, mask), pooled)
    meanp = VideoCLIP(VideoConfig(method="meanP", num_frames=6), clip_model).eval()
    seq = VideoCLIP(VideoConfig(method="seqTransf", num_frames=6), clip_model).eval()
    torch.testing.assert_close(seq.encode_video(feats, mask), meanp.encode_video(feats, mask))
    text = torch.randn(4, clip_model.config.embed_dim)
    logits = meanp.logits(text, feats, mask)
    scale = clip_model.logit_scale.exp()
    torch.testing.assert_close(logits, scale * F.normalize(text, dim=-1) @ pooled.t())


def test_trunk_and_head_compose_to_the_image_tower_and_tight_scores_every_pair(clip_model):
    frames = torch.randn(1, 5, 3, 64, 64)
    vit, _ = clipworks.create_model("ViT-Tiny-8-64", device="cpu")
    for clip in (clip_model, vit):
        video = VideoCLIP(VideoConfig(num_frames=5), clip).eval()
        with torch.no_grad():
            torch.testing.assert_close(video.encode_frames(frames)[0], clip.encode_image(frames[0]))
    tight = VideoCLIP(VideoConfig(method="tightTransf", num_frames=4, temporal_layers=1), clip_model).eval()
    text, frames = torch.randn(3, 128), torch.randn(5, 4, 128)
    mask = torch.ones(5, 4, dtype=torch.bool)
    mask[2, 2:] = False
    with torch.no_grad():
        full = tight.logits(text, frames, mask)
        one_by_one = torch.stack([torch.cat([tight.cross(text[i:i + 1], frames[j:j + 1], mask[j:j + 1]) for j in range(5)], 1)[0]
                                  for i in range(3)])
        chunked = tight.cross(text, frames, mask, chunk=2)
    assert full.shape == (3, 5)
    torch.testing.assert_close(full, one_by_one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full, chunked, atol=1e-5, rtol=1e-5)
    with pytest.raises(clipworks.errors.ConfigError, match="no video embedding"):
        tight.encode_video(frames, mask)


@pytest.mark.slow
def test_training_resumes_exactly_and_saves_only_what_trained(tmp_path):
    from clipworks.video.config import VideoTrainConfig
    from clipworks.video.data import world_tensors
    from clipworks.video.evaluate import action_accuracy, video_retrieval
    from clipworks.video.inference import frame_features, label_probabilities, scores, text_features
    from clipworks.video.model import load_video_model
    from clipworks.video.train import train_video
    from clipworks.video.world import ACTION_TEMPLATES

    base = dict(train_size=48, steps=4, batch_size=8, num_frames=4, checkpoint_every=2, warmup=1, temporal_layers=1)
    for method in ("seqTransf", "actionclip"):
        full = train_video(VideoTrainConfig(out=str(tmp_path / method / "full"), method=method, **base), progress=False)
        split = VideoTrainConfig(out=str(tmp_path / method / "split"), method=method, **base)
        train_video(split, progress=False, stop_after=2)
        resumed = train_video(split, resume=True, progress=False)
        assert resumed["final_loss"] == pytest.approx(full["final_loss"], rel=1e-5)
        assert full["trainable_parameters"]["new"] > 0
    model = load_video_model(tmp_path / "actionclip" / "full" / "model")
    assert model.config.labels == tuple(sorted(TRAIN_ACTIONS)) and model.config.method == "seqTransf"
    import safetensors.torch

    saved = safetensors.torch.load_file(str(tmp_path / "actionclip" / "full" / "model" / "model.safetensors"))
    assert any(k.startswith("clip.text_tower.") for k in saved) and any(k.startswith("temporal.") for k in saved)
    assert not any(k.startswith("clip.image_tower.layer") for k in saved)  # the frozen trunk comes from the CLIP model
    test = world_tensors(model, 16, seed=1)
    result = action_accuracy(model, test, TRAIN_ACTIONS, ACTION_TEMPLATES)
    metrics = video_retrieval(model, test)
    # Both metrics against a reference computed here from the model's own scores, by counting instead of sorting.
    frames = frame_features(model, test)
    probs = label_probabilities(model, frames, test.mask, TRAIN_ACTIONS, ACTION_TEMPLATES).detach().numpy()
    truth = np.array([list(TRAIN_ACTIONS).index(label) for label in test.labels])
    above = (probs > probs[np.arange(len(truth)), truth][:, None]).sum(axis=1)  # labels scored above the true one
    assert result["videos"] == 16
    assert result["top1"] == pytest.approx(np.mean(above == 0)) and result["top5"] == pytest.approx(np.mean(above < 5))
    sims = scores(model, text_features(model, [c[0] for c in test.captions]), frames, test.mask).detach().numpy()  # [text, video]
    ranks = np.sort((sims > np.diag(sims)[:, None]).sum(axis=1) + 1)
    assert metrics["text_to_video_median_rank"] == ranks[(len(ranks) - 1) // 2]  # the lower median, as torch takes it


def test_cli_writes_indexes_searches_and_classifies_with_bad_videos_counted(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "clipworks.cli.main", "video"]

    def run(*args):
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True)

    proc = run("world", "--out", str(tmp_path / "w"), "--size", "12", "--format", "webm")
    assert proc.returncode == 0, proc.stderr
    videos = tmp_path / "w" / "videos"
    records = [json.loads(x) for x in (tmp_path / "w" / "clips.jsonl").read_text().splitlines()]
    assert len(list(videos.glob("*.webm"))) == 12 and len(records) == 12
    (videos / "broken.mp4").write_bytes(b"\x00" * 300)
    good = (videos / "000000.webm").read_bytes()
    (videos / "cut.webm").write_bytes(good[: len(good) // 2])
    proc = run("index", str(tmp_path / "w"), "--store", str(tmp_path / "store"))
    assert proc.returncode == 0, proc.stderr
    assert "added 12" in proc.stdout and "skipped 2" in proc.stdout and "broken.mp4" in proc.stdout
    proc = run("index", str(tmp_path / "w"), "--store", str(tmp_path / "store"))  # nothing to do the second time
    assert "added 0" in proc.stdout and "unchanged 14" in proc.stdout
    proc = run("search", records[3]["captions"][0], "--store", str(tmp_path / "store"), "-k", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert len(hits) == 4 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # The queried clip (3) is among the top 4 of 12 for its own caption.
    assert Path(records[3]["video"]).name in {Path(h["path"]).name for h in hits}, hits
    proc = run("classify", str(videos / "000001.webm"), "--labels", "moves left", "grows", "changes colour", "--json")
    assert proc.returncode == 0, proc.stderr
    ranked = json.loads(proc.stdout)
    assert sorted(r["label"] for r in ranked) == ["changes colour", "grows", "moves left"]
    assert sum(r["probability"] for r in ranked) == pytest.approx(1.0, abs=1e-4)
    for args, expected in ((("classify", str(videos / "broken.mp4"), "--labels", "a", "b"), "broken.mp4"),
                           # a CLIP model wrapped zero-shot has no labels of its own (the shipped video model has)
                           (("classify", str(videos / "000001.webm"), "--model",
                             str(REPO / "clipworks" / "model" / "pretrained" / "default")), "give --labels"),
                           (("search", "a star", "--store", str(tmp_path / "nowhere")), "no clipworks store")):
        proc = run(*args)
        assert proc.returncode == 1 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_training_on_a_folder_of_videos_skips_and_counts_bad_ones(tmp_path):
    from clipworks.video.config import VideoTrainConfig
    from clipworks.video.model import load_video_model
    from clipworks.video.train import train_video

    world = VideoWorld(12, seed=4, group=1, num_frames=6)
    for i in range(12):
        sample = world[i]
        path = write_video(tmp_path / "clips" / sample.label.replace(" ", "_") / f"{i}.mp4", sample.frames, fps=6)
        path.with_suffix(".txt").write_text("\n".join(sample.captions) + "\n")
    (tmp_path / "clips" / "grows" / "bad.mp4").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "clips" / "grows" / "bad.mp4").write_bytes(b"\x00\x01" * 100)
    base = dict(data=str(tmp_path / "clips"), steps=2, batch_size=4, num_frames=4, warmup=1, temporal_layers=1)
    summary = train_video(VideoTrainConfig(out=str(tmp_path / "ac"), method="actionclip", **base), progress=False)
    assert summary["train_videos"] == 12 and len(summary["skipped"]) == 1 and summary["skipped"][0][0].endswith("bad.mp4")
    labels = load_video_model(tmp_path / "ac" / "model").config.labels
    assert set(labels) == {world[i].label.replace(" ", "_") for i in range(12)}
    summary = train_video(VideoTrainConfig(out=str(tmp_path / "mp"), method="meanP", **base), progress=False)
    assert summary["train_videos"] == 12 and summary["steps_done"] == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no videos"):
        train_video(VideoTrainConfig(out=str(tmp_path / "x"), method="meanP", **{**base, "data": str(tmp_path / "empty")}),
                    progress=False)
