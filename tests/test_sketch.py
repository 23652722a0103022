"""Sketching (CLIPasso): the rasteriser's gradients against finite differences and a known rendering, the SVG
round trip, the paired augmentation, the automatic mask, saliency starts, the optimisation lowering its loss
with the best seed kept, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clipworks.errors import InputFileError
from clipworks.sketch.raster import bezier_points, render
from clipworks.sketch.svg import Strokes, parse_svg, render_strokes, to_svg

REPO = Path(__file__).resolve().parents[1]


def test_rasteriser_gradients_match_finite_differences():
    torch.manual_seed(0)
    control = (torch.rand(2, 3, 4, 2, dtype=torch.float64) * 14 + 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: render(c, 16, stroke_width=3.0, softness=1.0), (control,),
                                    eps=1e-6, atol=1e-5)
    # and by hand: nudging one control point changes the image as the gradient says
    weights = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    loss = (render(control, 16, 3.0, 1.0) * weights).sum()
    (grad,) = torch.autograd.grad(loss, control)
    bumped = control.detach().clone()
    bumped[1, 2, 1, 0] += 1e-5
    numeric = ((render(bumped, 16, 3.0, 1.0) * weights).sum() - loss.detach()) / 1e-5
    assert float(numeric) == pytest.approx(float(grad[1, 2, 1, 0]), rel=1e-3, abs=1e-6)


def test_rasteriser_draws_a_known_line_and_batches():
    line = torch.tensor([[[[4.0, 10.5], [10.0, 10.5], [16.0, 10.5], [22.0, 10.5]]]])
    paper = render(line, (20, 28), stroke_width=2.0, softness=0.25)[0, 0]
    assert paper.shape == (20, 28)
    assert paper[10, 5:21].max() < 0.02  # on the line: ink (distance 0.5 px from pixel centres)
    assert paper[5, :].min() > 0.999 and paper[:, :1].min() > 0.999  # 3.5 px and more from it: paper
    assert paper[10, 1] == pytest.approx(1 - torch.sigmoid(torch.tensor((1.0 - 2.5) / 0.25)).item(), abs=1e-5)
    assert bezier_points(line, 4)[0, 0, :, 0].tolist() == pytest.approx([4.0, 10.0, 16.0, 22.0])
    torch.manual_seed(1)
    control = torch.rand(3, 5, 4, 2) * 32
    batch = render(control, 32)
    for b in range(3):
        torch.testing.assert_close(batch[b:b + 1], render(control[b:b + 1], 32))
    hidden = render(control, 32, opacity=torch.zeros(3, 5))
    assert torch.all(hidden == 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_rasteriser_on_cuda_matches_cpu():
    control = torch.rand(2, 8, 4, 2) * 64
    torch.testing.assert_close(render(control.cuda(), 64).cpu(), render(control, 64), atol=1e-5, rtol=1e-5)


def test_svg_round_trip_parses_back_and_re_renders_the_same(tmp_path):
    rng = np.random.default_rng(0)
    strokes = Strokes(rng.uniform(0, 96, (7, 4, 2)), 96, 80, 2.5)
    path = tmp_path / "s.svg"
    path.write_text(to_svg(strokes))
    back = parse_svg(path)
    assert (back.width, back.height, back.stroke_width) == (96, 80, 2.5)
    np.testing.assert_allclose(back.control, strokes.control, atol=5e-4)
    np.testing.assert_allclose(render_strokes(back), render_strokes(strokes), atol=2e-3)
    assert render_strokes(strokes).shape == (80, 96) and render_strokes(strokes, size=192).shape == (160, 192)
    # relative commands and several curves in one path read the same as absolute ones
    (tmp_path / "rel.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                                      '<path d="m 1 2 c 1 0 2 1 3 3 C 5 5 6 6 7 8" stroke-width="1"/></svg>')
    rel = parse_svg(tmp_path / "rel.svg")
    np.testing.assert_allclose(rel.control, [[[1, 2], [2, 2], [3, 3], [4, 5]], [[4, 5], [5, 5], [6, 6], [7, 8]]])
    (tmp_path / "arc.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><path d="M 1 1 A 2 2 0 0 1 5 5"/></svg>')
    (tmp_path / "bad.svg").write_text("not xml <")
    for name, words in (("arc.svg", "not supported"), ("bad.svg", "not an SVG"), ("none.svg", "cannot read")):
        with pytest.raises(InputFileError, match=words) as info:
            parse_svg(tmp_path / name)
        assert name in str(info.value)


def test_paired_augmentation_is_shared_and_differentiable():
    from clipworks.sketch.losses import augment_pair

    image = torch.rand(1, 3, 32, 32)
    pair = torch.cat([image, image]).requires_grad_(True)
    generator = torch.Generator().manual_seed(3)
    views = [augment_pair(pair, generator) for _ in range(4)]
    for view in views:
        torch.testing.assert_close(view[0], view[1])  # the same warp for sketch and image
        assert view.shape == pair.shape and 0.0 <= view.min().item() and view.max().item() <= 1.0 + 1e-6
    assert not torch.allclose(views[0], views[1])  # but a new one each call
    sum(v.sum() for v in views).backward()
    assert pair.grad is not None and pair.grad.abs().sum() > 0


def _world_object(index: int = 0):
    from clipworks.data.world import render as render_scene
    from clipworks.data.world import single_object_dataset

    data = single_object_dataset(60, seed=5, split="train", image_size=128)
    i = [k for k in range(60) if data.scene(k).objects[0].colour != "white" and data.scene(k).objects[0].size == "large"][index]
    scene = data.scene(i)
    image = np.asarray(render_scene(scene, 128), dtype=np.float32)
    empty = np.asarray(render_scene(scene, 128, opacity=[0.0]), dtype=np.float32)
    return scene, image, np.abs(image - empty).max(axis=2) > 40


def test_auto_mask_finds_the_object_and_saliency_starts_on_it():
    import clipworks
    from clipworks.sketch.initialise import auto_mask, edge_map, relevance_map, start_points

    scene, image, truth = _world_object()
    mask = auto_mask(image / 255.0)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.85, iou
    clip, _ = clipworks.create_model("default", device="cpu")
    target = torch.from_numpy(image / 255.0).permute(2, 0, 1)[None].float()
    relevance = relevance_map(clip, target, samples=2)
    assert relevance.shape == (128, 128) and relevance.max() == pytest.approx(1.0)
    weights = relevance * edge_map(image / 255.0) * mask
    points = start_points(16, 128, torch.Generator().manual_seed(0), weights)
    xs, ys = points[:, 0].long().clamp(0, 127), points[:, 1].long().clamp(0, 127)
    assert mask[ys.numpy(), xs.numpy()].all()  # every start lies on the object


@pytest.mark.slow
def test_optimisation_lowers_the_loss_and_keeps_the_best_seed():
    import clipworks
    from clipworks.sketch.clipasso import SketchConfig, sketch_image

    _, image, _ = _world_object(1)
    from PIL import Image

    picture = Image.fromarray(image.astype(np.uint8))
    clip, _ = clipworks.create_model("default", device="cpu")
    start = sketch_image(picture, SketchConfig(strokes=6, steps=1, seeds=1), clip=clip, progress=False)
    done = sketch_image(picture, SketchConfig(strokes=6, steps=40, seeds=2, patience=1000), clip=clip, progress=False)
    assert done.loss < start.loss
    assert done.loss == min(done.seed_losses) and done.seed == int(np.argmin(done.seed_losses))
    assert done.strokes.control.shape == (6, 4, 2) and done.steps_run == [40, 40]
    assert len(done.snapshots) >= 3 and done.snapshots[-1][0] == 40


def test_cli_writes_svg_png_and_steps_and_names_bad_input(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    from PIL import Image

    _, image, truth = _world_object()
    Image.fromarray(image.astype(np.uint8)).save(tmp_path / "object.png")
    Image.fromarray((truth * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    cli = [sys.executable, "-m", "clipworks.cli.main", "sketch", str(tmp_path / "object.png")]
    proc = subprocess.run([*cli, "--strokes", "4", "--steps", "6", "--seeds", "1", "--mask", str(tmp_path / "mask.png"),
                           "--out", str(tmp_path / "out" / "s.svg")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert parse_svg(tmp_path / "out" / "s.svg").control.shape == (4, 4, 2)
    assert Image.open(tmp_path / "out" / "s.png").size == (512, 512)
    assert Path(report["steps"]).is_file() and report["steps_run"] == [6]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    for args, expected in (([str(tmp_path / "broken.png")], "broken.png"),
                           ([str(tmp_path / "object.png"), "--out", str(tmp_path / "s.png")], "must end in .svg"),
                           ([str(tmp_path / "object.png"), "--mask", str(tmp_path / "nomask.png")], "nomask.png"),
                           ([str(tmp_path / "object.png"), "--out", str(tmp_path / "object.svg")], "overwrite the input")):
        proc = subprocess.run([sys.executable, "-m", "clipworks.cli.main", "sketch", *args], env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 1 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
