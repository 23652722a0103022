"""OpenAI's ModifiedResNet image tower: a 3-conv stem, anti-aliased strided bottlenecks, attention pooling."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clipworks.model.config import VisionConfig
from clipworks.model.image_tower import ImageTower
from clipworks.model.layers import resize_position_embedding


class Bottleneck(nn.Module):
    """All convolutions have stride 1; a stride-s block downsamples with an average pool after conv2."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            # Key names "-1", "0", "1" follow OpenAI's layout; the pool has no weights.
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place activations: no extra buffers per block (batch-norm outputs are not needed for backward).
        out = F.relu_(self.bn1(self.conv1(x)))
        out = F.relu_(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu_(out + identity)


class AttentionPool2d(nn.Module):
    """Multi-head attention from the mean feature (the query) to every spatial position."""

    def __init__(self, spatial_dim: int, embed_dim: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial_dim**2 + 1, embed_dim) / embed_dim**0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        pos = resize_position_embedding(self.positional_embedding, (h, w))  # other input sizes: interpolated
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + pos.to(x.dtype)
        head_dim = c // self.heads
        q = self.q_proj(x[:, :1]).view(b, 1, self.heads, head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, -1, self.heads, head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, -1, self.heads, head_dim).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(y.transpose(1, 2).reshape(b, c))


class ModifiedResNet(ImageTower):
    """Blocks: the four stages. Default split: before attention pooling. Grid: the last stage's feature map."""

    default_split = 4

    def __init__(self, cfg: VisionConfig, embed_dim: int) -> None:
        super().__init__()
        width = cfg.width
        self.image_size = cfg.image_size
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)

        self._inplanes = width
        self.layer1 = self._make_layer(width, cfg.layers[0])
        self.layer2 = self._make_layer(width * 2, cfg.layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, cfg.layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, cfg.layers[3], stride=2)
        self.attnpool = AttentionPool2d(cfg.image_size // 32, width * 32, cfg.num_heads, embed_dim)
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        std = self.attnpool.c_proj.in_features**-0.5
        for proj in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj, self.attnpool.c_proj):
            nn.init.normal_(proj.weight, std=std)
        # Zero the last BN of each residual branch so every block starts as the identity.
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                nn.init.zeros_(block.bn3.weight)

    def _stem(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.conv1.weight.dtype)
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)  # cuDNN's faster layout; later layers keep it
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        x = F.relu_(self.bn3(self.conv3(x)))
        return self.avgpool(x)

    def _blocks(self) -> Sequence[nn.Module]:
        return self.layer1, self.layer2, self.layer3, self.layer4

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.attnpool(x)

    def _pool_parameters(self) -> list[nn.Parameter]:
        return list(self.attnpool.parameters())

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)  # a ResNet's grid needs no position embedding

    def grid_shape(self, image_size: int, blocks: int | None = None) -> tuple[int, int, int]:
        blocks = self._grid_blocks(blocks)
        stride = 4 * 2 ** max(blocks - 1, 0)  # the stem divides by 4, each stage after the first by 2
        side = image_size // stride
        if side < 1:
            raise ValueError(f"image size {image_size} is below the ResNet's stride of {stride} after {blocks} stages")
        channels = self.bn3.num_features if blocks == 0 else self._blocks()[blocks - 1][-1].bn3.num_features
        return side, side, channels

    def mid_level_indices(self) -> tuple[int, int]:
        """Stages 2 and 3, as CLIPasso."""
        return 1, 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self._stem(images)
        return self.attnpool(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
