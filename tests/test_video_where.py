"""The video model's where-readout: glimpses over each frame's last grid read out as expected cell centres and their
change from frame to frame, so a video embedding holds motion direction, which pooled frame embeddings hardly keep."""

from __future__ import annotations

import pytest
import torch

import clipworks
from clipworks.errors import ConfigError
from clipworks.video.model import VideoCLIP, VideoConfig, WhereReadout, load_video_model


@pytest.mark.parametrize("name", ["RN-Tiny-64", "ViT-Tiny-8-64"])
@torch.no_grad()
def test_head_and_grid_in_one_pass_equal_the_separate_calls(name):
    torch.manual_seed(0)
    clip, _ = clipworks.create_model(name, device="cpu")
    tower, x = clip.image_tower.eval(), torch.randn(2, 3, 64, 64)
    embedding, grid = tower.forward_head_and_grid(tower.forward_trunk(x))
    torch.testing.assert_close(embedding, tower(x))
    torch.testing.assert_close(grid, tower.forward_grid(x))


def test_a_glimpse_on_one_cell_reads_that_cells_centre():
    readout = WhereReadout(channels=4, rows=3, cols=3, glimpses=1, width=8)
    with torch.no_grad():
        readout.score.weight.zero_()
        readout.score.bias.zero_()
        readout.score.weight[0, 0] = 50.0  # the glimpse looks at the cell whose channel 0 is lit
    grid = torch.zeros(2, 9, 4)
    grid[0, 2, 0] = 1.0  # top-right cell (row 0, column 2)
    grid[1, 6, 0] = 1.0  # bottom-left cell (row 2, column 0)
    centres = readout.centres_of(grid)[:, 0]
    torch.testing.assert_close(centres, torch.tensor([[2 / 3, -2 / 3], [-2 / 3, 2 / 3]]), atol=1e-4, rtol=0)


@torch.no_grad()
def test_an_untrained_readout_leaves_frames_as_they_were_and_a_trained_one_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    clip, _ = clipworks.create_model("RN-Tiny-64", device="cpu")
    plain = VideoCLIP(VideoConfig(num_frames=3, clip_model="RN-Tiny-64"), clip).eval()
    where = VideoCLIP(VideoConfig(num_frames=3, clip_model="RN-Tiny-64", where_glimpses=2), clip).eval()
    trunk = plain.trunk(torch.randn(2, 3, 3, 64, 64))
    torch.testing.assert_close(where.frame_features(trunk), plain.frame_features(trunk))
    torch.nn.init.normal_(where.where.out.weight)  # as if trained: now the place changes the frame embedding
    torch.nn.init.normal_(where.where.out.bias)
    moved = where.frame_features(trunk) - plain.frame_features(trunk)
    grid = clip.image_tower.forward_head_and_grid(trunk.flatten(0, 1))[1]
    centres = where.where.centres_of(grid).flatten(1).view(2, 3, -1)  # [clips, frames, 2 * glimpses]
    change = torch.stack([torch.zeros_like(centres[:, 0]), centres[:, 1] - centres[:, 0], centres[:, 2] - centres[:, 1]], 1)
    expected = torch.cat([centres, change], -1) @ where.where.out.weight.t() + where.where.out.bias
    torch.testing.assert_close(moved, expected, atol=1e-5, rtol=1e-4)
    # averaged over the frames, the change is the net displacement (last frame's centres minus the first's)
    torch.testing.assert_close(change.sum(1), centres[:, -1] - centres[:, 0])
    assert moved.abs().max() > 0.1
    assert any(p is where.where.out.weight for p in where.new_parameters())
    where.save_pretrained(tmp_path / "m")
    loaded = load_video_model(tmp_path / "m")
    assert loaded.config.where_glimpses == 2
    torch.testing.assert_close(loaded.where.out.weight, where.where.out.weight)


def test_negative_glimpses_are_refused():
    with pytest.raises(ConfigError, match="where_glimpses"):
        VideoConfig(where_glimpses=-1)
