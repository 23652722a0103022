"""The video world in the image world's styles: "classic" renders exactly what the world rendered before styles
existed, a styled clip is a pure function of its seed with one style and one backdrop over its frames, training
never sees a held-out style, and a colourless style neither changes colour nor names one."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest

from clipworks.data import styles as style_lib
from clipworks.data.world import COLOURS, render
from clipworks.errors import ConfigError
from clipworks.video.config import VideoTrainConfig
from clipworks.video.train import check_config
from clipworks.video.world import VideoWorld, sample_group

# sha256 of the clips below as the world rendered them before it had styles (commit 5f598a8): frames, captions,
# label, key and facts of 6 clips each of three (split, seed, group) settings.
CLASSIC_DIGEST = "3e68eef27f66a2a3e57272e0e520aec2ce90732e73d6eb14b793159c91788688"


def test_classic_clips_are_bit_identical_to_the_world_before_styles():
    digest = hashlib.sha256()
    for split, seed, group in (("train", 3, 4), ("heldout", 5, 3), ("all", 7, 1)):
        world = VideoWorld(6, seed=seed, split=split, num_frames=8, group=group, styles="classic")
        for i in range(6):
            s = world[i]
            digest.update(s.frames.tobytes())
            digest.update(json.dumps([s.captions, s.label, s.key, s.facts]).encode())
    assert digest.hexdigest() == CLASSIC_DIGEST


def test_styled_clips_are_pure_functions_of_the_seed_with_one_style_and_backdrop():
    a, b = VideoWorld(8, seed=5, styles="all", num_frames=6), VideoWorld(8, seed=5, styles="all", num_frames=6)
    for i in (0, 3, 7):
        x, y = a[i], b[i]
        np.testing.assert_array_equal(x.frames, y.frames)
        assert x.captions == y.captions and x.facts == y.facts and x.key == y.key
    assert not np.array_equal(a[0].frames, VideoWorld(8, seed=6, styles="all", num_frames=6)[0].frames)
    for i in range(8):
        clip = a.clip(i)
        scenes = [clip.frame_scene(t)[0] for t in range(6)]
        assert {s.style for s in scenes} == {clip.style} and clip.style in style_lib.STYLES
        assert all(s.background == clip.background and s.seed == clip.seed for s in scenes)
        # With the objects faded out, every frame is the same picture: the backdrop does not flicker.
        empty = [np.asarray(render(s, 64, opacity=[0.0] * len(s.objects))) for s in scenes]
        assert all(np.array_equal(empty[0], e) for e in empty[1:]), (i, clip.style)
    # a group shares its style and backdrop, as it shares its objects
    group = sample_group(random.Random(1), "train", size=4, styles="train")
    assert len({(c.style, c.background.kind, c.seed) for c in group}) == 1 and len({c.label for c in group}) == 4


def test_style_sets_are_the_image_worlds_and_training_never_sees_a_heldout_style():
    train = VideoWorld(800, seed=2, split="train", styles="train")
    seen = {train.clip(i).style for i in range(len(train))}
    assert seen == set(style_lib.TRAIN_STYLES) and not seen & set(style_lib.HELDOUT_STYLES)
    held = VideoWorld(60, seed=2, styles="heldout")
    assert {held.clip(i).style for i in range(60)} == set(style_lib.HELDOUT_STYLES)
    assert {VideoWorld(8, styles="sketch+mosaic").clip(i).style for i in range(8)} <= {"sketch", "mosaic"}
    with pytest.raises(ValueError, match="styles"):
        VideoWorld(4, styles="crayon")
    for styles in ("train", "classic", "flat+neon"):
        check_config(VideoTrainConfig(out="", styles=styles))
    for styles in ("all", "heldout", "flat+sketch"):
        with pytest.raises(ConfigError, match="held-out"):
            check_config(VideoTrainConfig(out="", styles=styles))


def test_a_colourless_style_neither_changes_colour_nor_names_one():
    world = VideoWorld(120, seed=4, styles=("silhouette",), group=4)
    for i in range(0, 120, 3):
        clip = world.clip(i)
        assert all(t.action != "changes colour" and t.ink is not None for t in clip.tracks)
        assert not any(colour in caption.split() for caption in clip.captions for colour in COLOURS), clip.captions
    sample = world[0]
    assert sample.facts["style"] == "silhouette" and sample.key.startswith("video-world/train/silhouette/")
