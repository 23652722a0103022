"""The image towers' feature API (`clipworks.model.image_tower`): on a seeded random ResNet and ViT, the trunk and
head compose to `encode_image` at every split, the intermediates and the grid equal the tower's internals read
by hand (the code path the applications used before, including interpolated position embeddings at a larger
input), and a third tower type, defined only here, works in the video, VQA and sketch applications unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import clipworks
from clipworks.model.image_tower import ImageTower
from clipworks.model.layers import resize_position_embedding


@pytest.fixture(scope="module", params=["RN-Tiny-64", "ViT-Tiny-8-64"])
def clip(request):
    torch.manual_seed(0)
    model, _ = clipworks.create_model(request.param, device="cpu")
    return model.eval()


def _images(size: int, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(size))


def _blocks_by_hand(tower: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Every block's output, read from the module's internals as the applications did before the feature API."""
    if hasattr(tower, "attnpool"):  # ModifiedResNet
        x = images
        for conv, bn in ((tower.conv1, tower.bn1), (tower.conv2, tower.bn2), (tower.conv3, tower.bn3)):
            x = F.relu(bn(conv(x)))
        x, stages = tower.avgpool(x), (tower.layer1, tower.layer2, tower.layer3, tower.layer4)
    else:  # VisionTransformer
        x = tower.conv1(images)
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([tower.class_embedding.expand(x.shape[0], 1, -1), x], dim=1)
        x = tower.ln_pre(x + resize_position_embedding(tower.positional_embedding, grid))
        stages = tower.transformer.resblocks
    out = []
    for block in stages:
        x = block(x)
        out.append(x)
    return out


def _grid_by_hand(tower: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """What `vqa/grid.py` returned: the ResNet's last feature map, or the ViT's patch tokens after ln_post."""
    last = _blocks_by_hand(tower, images)[-1]
    if hasattr(tower, "attnpool"):
        return last.flatten(2).transpose(1, 2)
    return tower.ln_post(last[:, 1:])


@torch.no_grad()
def test_head_of_trunk_is_the_image_embedding_at_every_split(clip):
    tower, x = clip.image_tower, _images(64)
    expected = clip.encode_image(x)
    n = tower.num_blocks()
    for split in (None, *range(n + 1)):
        head = tower.forward_head(tower.forward_trunk(x, split), split)
        torch.testing.assert_close(head, expected, atol=1e-5, rtol=0)
    # the trunk may be cached in float16, as video/data.py does: the head casts it back
    trunk = tower.forward_trunk(x)
    torch.testing.assert_close(tower.forward_head(trunk.half()), tower.forward_head(trunk), atol=2e-2, rtol=1e-2)
    with pytest.raises(ValueError, match="split"):
        tower.forward_trunk(x, n + 1)


def test_default_split_and_head_parameters(clip):
    """ResNet: the head is attention pooling; ViT: the last block, ln_post and the projection (as video trained)."""
    tower = clip.image_tower
    names = {id(p): name for name, p in tower.named_parameters()}
    head = sorted(names[id(p)] for p in tower.head_parameters())
    if clip.config.vision.kind == "vit":
        last = f"transformer.resblocks.{clip.config.vision.layers - 1}."
        assert tower.default_split == clip.config.vision.layers - 1
        expected = sorted(n for n in names.values() if n.startswith((last, "ln_post.")) or n == "proj")
    else:
        assert tower.default_split == 4
        expected = sorted(n for n in names.values() if n.startswith("attnpool."))
    assert head == expected and len(head) > 2
    pool = sorted(names[id(p)] for p in tower.head_parameters(tower.num_blocks()))
    assert pool == sorted(n for n in names.values() if n.startswith(("attnpool.", "ln_post.")) or n == "proj")
    stem = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "class_embedding", "positional_embedding", "ln_pre")
    everything_but_the_stem = sorted(n for n in names.values() if not n.startswith(stem))
    assert sorted(names[id(p)] for p in tower.head_parameters(0)) == everything_but_the_stem


@torch.no_grad()
@pytest.mark.parametrize("size", [64, 128])
def test_intermediates_and_grid_equal_the_internals_read_by_hand(clip, size):
    """At the trained size and at twice it (ViT: interpolated position embeddings, a 16 x 16 grid)."""
    tower, x = clip.image_tower, _images(size)
    by_hand = _blocks_by_hand(tower, x)
    n = tower.num_blocks()
    embedding, found = tower.forward_intermediates(x, list(range(n)) + [-1])
    torch.testing.assert_close(embedding, clip.encode_image(x), atol=1e-5, rtol=0)
    assert len(found) == n + 1
    for got, want in zip(found, by_hand + by_hand[-1:]):
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    torch.testing.assert_close(found[-1], tower.forward_trunk(x, n), atol=0, rtol=0)
    if clip.config.vision.kind == "vit":
        side, width = size // 8, clip.config.vision.width
        assert all(a.shape == (2, 1 + side * side, width) for a in found)
    else:
        width = clip.config.vision.width
        sides = [size // 4 // 2**i for i in range(4)]  # stem: /4, then stages 2-4 each halve
        assert [a.shape for a in found[:n]] == [(2, width * 4 * 2**i, s, s) for i, s in enumerate(sides)]

    grid = tower.forward_grid(x)
    rows, cols, channels = tower.grid_shape(size)
    assert grid.shape == (2, rows * cols, channels)
    torch.testing.assert_close(grid, _grid_by_hand(tower, x), atol=0, rtol=0)
    with pytest.raises(ValueError, match="block index"):
        tower.forward_intermediates(x, [n])


def test_mid_level_indices_are_the_sketch_defaults_of_before(clip):
    """ResNet stages 2 and 3 (CLIPasso); ViT blocks n//3 - 1 and 2n//3 - 1 (a 4-block ViT: blocks 0 and 1)."""
    expected = (0, 1) if clip.config.vision.kind == "vit" else (1, 2)
    assert clip.image_tower.mid_level_indices() == expected


class PatchCNN(ImageTower):
    """A third tower type, defined only here: a patchifying conv, two conv blocks and a mean-pool projection."""

    default_split = 1

    def __init__(self, embed_dim: int, width: int = 16, patch: int = 8) -> None:
        super().__init__()
        self.patch = patch
        self.patchify = nn.Conv2d(3, width, patch, stride=patch)
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.GELU()) for _ in range(2))
        self.proj = nn.Linear(width, embed_dim)

    def _stem(self, images):
        return self.patchify(images.to(self.dtype))

    def _blocks(self):
        return self.stages

    def _pool(self, x):
        return self.proj(x.mean(dim=(2, 3)))

    def _pool_parameters(self):
        return list(self.proj.parameters())

    def _grid(self, x):
        return x.flatten(2).transpose(1, 2)

    def grid_shape(self, image_size, blocks=None):  # every block keeps the patch grid and the width
        return image_size // self.patch, image_size // self.patch, self.patchify.out_channels

    def mid_level_indices(self):
        return 0, 1

    def forward(self, images):
        return self._pool(self.stages[1](self.stages[0](self._stem(images))))


def test_a_third_tower_type_works_in_every_application_unchanged():
    from clipworks.sketch.losses import SketchLoss
    from clipworks.video.model import VideoCLIP, VideoConfig
    from clipworks.vqa.model import VQAConfig, VQAModel

    torch.manual_seed(0)
    clip, _ = clipworks.create_model("RN-Tiny-64", device="cpu")
    clip.image_tower = PatchCNN(clip.config.embed_dim)
    clip.eval()
    frames = _images(64, 3)[None]

    video = VideoCLIP(VideoConfig(num_frames=3), clip).eval()
    with torch.no_grad():
        torch.testing.assert_close(video.encode_frames(frames)[0], clip.encode_image(frames[0]))
    trained = {n for n, p in clip.image_tower.named_parameters() if p.requires_grad}
    assert trained == {"stages.1.0.weight", "stages.1.0.bias", "proj.weight", "proj.bias"}

    vqa = VQAModel(VQAConfig(image_size=64), clip).eval()
    tokens = vqa.tokenize(["what colour is the star?", "is there a circle?"])
    with torch.no_grad():
        assert vqa.grid(frames[0, :2]).shape == (2, 64, 16)
        assert vqa(frames[0, :2], tokens).shape == (2, len(vqa.config.answers))

    target, sketch = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64, requires_grad=True)
    loss, parts = SketchLoss(clip, target, augmentations=1)(sketch, torch.Generator().manual_seed(0))
    loss.backward()
    assert parts["geometric"] > 0 and parts["semantic"] > 0 and sketch.grad.abs().sum() > 0
