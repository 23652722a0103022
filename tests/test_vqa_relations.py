"""Spatial relations in VQA (issue 16): the relation answers are true of the scene as drawn, in the first world
and the styled one (and colourless scenes never ask about colour); the finer ResNet grid has the shape it
claims; the pieces of the relation design (token adapter, cell coordinates, glimpses with their expected
centres) change what they should; models saved before these pieces load as the first design; and the
diagnosis measures what it says on small inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import clipworks
from clipworks.data.world import COLOURS
from clipworks.vqa.diagnose import _drawn_centroids, _flip, question_token_study, relation_data_study
from clipworks.vqa.model import VQAConfig, VQAModel, cell_centres
from clipworks.vqa.questions import TYPES, VQADataset, relation_truth


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    model, _ = clipworks.create_model("RN-Tiny-64", device="cpu")
    return model.eval()


@pytest.mark.parametrize("styles", ["classic", "train", "heldout"])
def test_relation_answers_are_true_of_the_facts_and_of_the_drawn_objects(styles):
    data = VQADataset(200, seed=3, split="heldout", styles=styles)
    relations = [data.item(i) for i in range(TYPES.index("relation"), 200, len(TYPES))]
    assert {q.answer for _, q in relations} == {"yes", "no"}
    for scene_index, q in relations:
        scene = data._world.scene(scene_index)
        assert relation_truth(q.text, scene.facts()) == q.answer, q
    for scene_index, q in relations[:4]:  # where the objects are drawn (centroids of their own pixels) agrees too
        scene = data._world.scene(scene_index)
        drawn = scene.facts()
        for o, (x, y) in zip(drawn["objects"], _drawn_centroids(scene, 64)):
            o["x"], o["y"] = x, y
        assert relation_truth(q.text, drawn) == q.answer, (q, drawn)


def test_relation_truth_reads_the_question_against_the_centres():
    facts = {"objects": [{"shape": "circle", "colour": "red", "x": 0.2, "y": 0.7},
                         {"shape": "square", "colour": "blue", "x": 0.6, "y": 0.3}]}
    assert relation_truth("is the red circle to the left of the square?", facts) == "yes"
    assert relation_truth("is the circle to the right of the blue object?", facts) == "no"
    assert relation_truth("is the red object above the square?", facts) == "no"  # y points down
    assert relation_truth("is the circle below the blue square?", facts) == "yes"
    with pytest.raises(ValueError, match="fits 0 objects"):
        relation_truth("is the star above the square?", facts)


def test_colourless_scenes_never_name_or_ask_a_colour():
    data = VQADataset(400, seed=0, split="train", styles="train")
    silhouettes = 0
    for i in range(400):
        scene_index, q = data.item(i)
        if data._world.scene(scene_index).facts()["style"] != "silhouette":
            continue
        silhouettes += 1
        assert not set(q.text.rstrip("?").split()) & {*COLOURS, "colour"}, q
        assert q.answer not in COLOURS, q
    assert silhouettes >= 10


def test_a_finer_resnet_grid_from_an_earlier_stage(tiny_clip):
    tower = tiny_clip.image_tower
    x = torch.randn(2, 3, 128, 128)
    for blocks, side, channels in ((None, 4, 512), (4, 4, 512), (3, 8, 256), (-1, 8, 256), (2, 16, 128)):
        assert tower.grid_shape(128, blocks) == (side, side, channels)
        assert tower.forward_grid(x, blocks).shape == (2, side * side, channels)
    torch.testing.assert_close(tower.forward_grid(x, 3), tower.forward_trunk(x, 3).flatten(2).transpose(1, 2))
    with pytest.raises(ValueError, match="outside"):
        tower.grid_shape(128, -5)


def test_cell_centres_are_row_major_x_right_y_down():
    centres = cell_centres(2, 3)
    assert centres.shape == (6, 2)
    torch.testing.assert_close(centres[:3, 0], torch.tensor([-2 / 3, 0.0, 2 / 3]))  # first row, left to right
    torch.testing.assert_close(centres[:, 1], torch.tensor([-0.5] * 3 + [0.5] * 3))  # top row first


@torch.no_grad()
def test_the_token_adapter_carries_the_words_themselves(tiny_clip):
    """With the frozen contextual features switched off (their map zeroed), the adapter alone still tells "left of"
    from "right of"; without it the two questions get the same answer scores."""
    questions = ["is the red circle to the left of the blue square?", "is the red circle to the right of the blue square?"]
    grid = torch.randn(1, 4, 512, generator=torch.Generator().manual_seed(0)).expand(2, -1, -1)
    logits = {}
    for adapter in (False, True):
        torch.manual_seed(0)
        model = VQAModel(VQAConfig(width=32, layers=1, heads=2, image_size=64, token_adapter=adapter), tiny_clip).eval()
        model.question_in.weight.zero_()
        logits[adapter] = model.forward_grid(grid, model.tokenize(questions))
    torch.testing.assert_close(logits[False][0], logits[False][1])
    assert not torch.allclose(logits[True][0], logits[True][1], atol=1e-4)
    assert "word_in.weight" in model.state_dict() and "question_position" in model.state_dict()  # trained, saved


@torch.no_grad()
def test_each_glimpse_reads_out_the_centre_it_looked_at(tiny_clip):
    config = VQAConfig(width=32, layers=1, heads=2, image_size=128, cell_coordinates=True, glimpses=2)
    model = VQAModel(config, tiny_clip).eval()
    assert model.centres.shape == (16, 2) and "centres" not in model.state_dict()  # rebuilt, never stored
    pool = model.grid_pool
    pool.score[0].weight.copy_(torch.eye(32))
    pool.score[0].bias.zero_()
    pool.score[2].weight.zero_()
    pool.score[2].weight[0, 0] = pool.score[2].weight[1, 1] = 100.0  # glimpse g scores feature g
    pool.score[2].bias.zero_()
    pool.out = torch.nn.Identity()  # what goes into the output map: [glimpse features, expected centre] per glimpse
    v = torch.zeros(1, 16, 32)
    v[0, 5, 0] = v[0, 10, 1] = 1.0  # cell 5 lights glimpse 0, cell 10 glimpse 1
    read = pool(v, model.centres).view(2, 34)
    torch.testing.assert_close(read[0, 32:], model.centres[5], atol=1e-3, rtol=0)
    torch.testing.assert_close(read[1, 32:], model.centres[10], atol=1e-3, rtol=0)


@torch.no_grad()
def test_cell_coordinates_tell_the_model_where_each_cell_is(tiny_clip):
    """Without learned positions the fusion is blind to cell order (attention and pooling are permutation
    invariant); the cells' coordinates give the order back."""
    grid = torch.randn(1, 16, 512, generator=torch.Generator().manual_seed(0))
    moved = grid[:, torch.randperm(16, generator=torch.Generator().manual_seed(1))]
    answers = {}
    for coordinates in (False, True):
        torch.manual_seed(0)
        model = VQAModel(VQAConfig(width=32, layers=1, heads=2, image_size=128, token_adapter=True,
                                   cell_coordinates=coordinates, glimpses=2, classifier_hidden=64), tiny_clip).eval()
        model.grid_position.zero_()
        tokens = model.tokenize(["is the red circle to the left of the blue square?"])
        answers[coordinates] = (model.forward_grid(grid, tokens), model.forward_grid(moved, tokens))
    torch.testing.assert_close(*answers[False], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(*answers[True], atol=1e-3)


def test_a_config_saved_before_the_relation_design_reads_as_the_first_design():
    old = {"clip_model": "default-v1", "encoder": "clip", "freeze_encoder": True, "image_size": 128, "width": 128,
           "layers": 2, "heads": 4, "dropout": 0.1}
    config = VQAConfig(**old)
    assert (config.token_adapter, config.cell_coordinates, config.grid_blocks, config.glimpses,
            config.classifier_hidden) == (False, False, None, 1, 0)


@torch.no_grad()
def test_diagnosis_on_tiny_inputs(tiny_clip):
    questions = [q.text for q in (VQADataset(300, seed=0).item(i)[1] for i in range(3, 300, 5))]
    assert all(_flip(_flip(q)) == q and _flip(q) != q for q in questions)
    result = question_token_study(tiny_clip, questions)
    cos = result["example"]["cosine_per_position"]
    at = result["example"]["tokens"].index("left")
    assert cos[:at] == pytest.approx([1.0] * at, abs=1e-5) and cos[at] < 1.0  # causal: only from the word on
    assert result["left_right_probe_accuracy"]["raw_token_embedding"] == 1.0  # one vector per word
    assert result["variance_share_of_relation_word"]["raw_token_embeddings"] == pytest.approx(1.0)
    data = relation_data_study(100, seed=0, rendered=2, image_size=64)
    assert data["relation_questions"] == 20
    assert sum(data["answers_per_relation_word"].values()) == 20
    assert data["answers_disagreeing_with_scene_facts"] == 0 and data["answers_disagreeing_with_drawn_centroids"] == 0
    assert 0.0 <= data["text_only_majority_accuracy"] <= 1.0
    assert np.isfinite(data["largest_gap_between_fact_and_drawn_centre"])
