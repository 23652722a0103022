"""A VQA model on CLIP grid features (CLIP-ViL "Direct"): MCAN-style co-attention over question tokens and
image grid features, then an answer classifier.

- Question: the CLIP model's text tower (frozen) gives per-token features; a linear layer maps them to the
  fusion width. Every variant shares this, so only the visual encoder differs between them. With
  `token_adapter`, a trained linear map of each token's own (frozen) word embedding and a learned position
  per token are added: the frozen contextual features of "left" and "right" are nearly the same vector
  (cosine 0.998, `clipworks.vqa.diagnose`), so without it the model cannot tell the two questions apart.
- Image: grid features of an image tower (`forward_grid`: a ResNet's feature map after `grid_blocks` stages,
  a ViT's patch tokens after ln_post) at `image_size`, a linear map with LayerNorm, plus a learned position
  embedding per grid cell and, with `cell_coordinates`, a linear map of the cell's centre (x, y). The tower
  is the CLIP model's (`encoder="clip"`, frozen or fine-tuned) or the same architecture randomly initialised
  and trained on the VQA data only (`encoder="scratch"`), the baseline without CLIP pre-training.
- Fusion (MCAN encoder–decoder, Yu et al. 2019): `layers` self-attention layers over the question; then
  `layers` decoder layers over the image, each self-attention, attention guided by the final question
  features, and a feed-forward block. Attentional pooling reduces each side to one vector; their sum
  (LayerNorm) feeds the classifier over the answer vocabulary. With `glimpses` > 1 the grid is pooled by
  that many question-conditioned attention maps, each also reading out where it looked (the map's expected
  cell centre), so "is A left of B" can compare the two objects' places; `classifier_hidden` > 0 makes the
  classifier an MLP, which such a comparison (relation word times coordinate difference) needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clipworks.errors import CheckpointError, ConfigError
from clipworks.weights import load_weights, parameter_counts, read_config, resolve, save_weights
from clipworks.vqa.questions import ANSWERS

ENCODERS = ("clip", "scratch")
CONFIG_FILE = "vqa_config.json"


@dataclass
class VQAConfig:
    """Everything needed to rebuild a VQA model (the CLIP model is named, not stored, when it stays frozen)."""

    clip_model: str = "default"
    encoder: str = "clip"
    freeze_encoder: bool = True
    image_size: int = 128
    width: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    answers: list[str] = field(default_factory=lambda: list(ANSWERS))
    # Added for relations (issue 16); the defaults are the first design, so models saved before still load.
    token_adapter: bool = False
    cell_coordinates: bool = False
    grid_blocks: int | None = None  # image tower blocks before the grid (None: all)
    glimpses: int = 1
    classifier_hidden: int = 0  # 0: a linear classifier

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ConfigError(f"encoder {self.encoder!r}: choose one of {', '.join(ENCODERS)}")
        if self.encoder == "scratch" and self.freeze_encoder:
            raise ConfigError("a 'scratch' encoder is randomly initialised: it must be trained (freeze_encoder=False)")
        if self.glimpses < 1 or self.classifier_hidden < 0:
            raise ConfigError(f"glimpses must be >= 1 and classifier_hidden >= 0; got {self.glimpses}, "
                              f"{self.classifier_hidden}")


class _Block(nn.Module):
    """Pre-LN attention (self- or guided) with a residual, optionally followed by a feed-forward block."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_padding: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(x)
        kv = h if context is x else context
        return x + self.attn(h, kv, kv, key_padding_mask=context_padding, need_weights=False)[0]


class _FeedForward(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class _AttentionPool(nn.Module):
    """MCAN's attentional reduction: a softmax over tokens of a learned score, then a weighted sum."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        score = self.score(x).squeeze(-1)
        if padding is not None:
            score = score.masked_fill(padding, float("-inf"))
        return self.out((score.softmax(dim=-1).unsqueeze(-1) * x).sum(dim=1))


class _GlimpsePool(nn.Module):
    """Several question-conditioned attention maps over the grid: each gives a weighted sum of the cells and,
    given the cells' centres, the map's expected centre (where it looked); all of them go through one linear map."""

    def __init__(self, width: int, glimpses: int, coordinates: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, glimpses))
        self.out = nn.Linear(glimpses * (width + coordinates), width)

    def forward(self, x: torch.Tensor, centres: torch.Tensor | None) -> torch.Tensor:
        weights = self.score(x).softmax(dim=1)  # [B, N, G]
        parts = [weights.transpose(1, 2) @ x]  # [B, G, width]
        if centres is not None:
            parts.append(weights.transpose(1, 2) @ centres.to(x.dtype))  # [B, G, 2]
        return self.out(torch.cat(parts, dim=-1).flatten(1))


def cell_centres(rows: int, cols: int) -> torch.Tensor:
    """The (x, y) centre of each cell of a rows x cols grid in row-major order, in [-1, 1] (x right, y down)."""
    y, x = torch.meshgrid((torch.arange(rows) + 0.5) / rows, (torch.arange(cols) + 0.5) / cols, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=1) * 2 - 1


class VQAModel(nn.Module):
    """`forward(images, tokens)` -> answer logits [B, len(answers)]; `forward_grid` takes grid features."""

    def __init__(self, config: VQAConfig, clip: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.preprocess_config = clip.config.preprocess  # the CLIP model's normalisation
        self.text_tower = clip.text_tower.requires_grad_(False)
        if config.encoder == "scratch":
            from clipworks.model.clip import CLIP

            self.image_tower = CLIP(clip.config).image_tower  # the same architecture, randomly initialised
        else:
            self.image_tower = clip.image_tower
        self.image_tower.requires_grad_(not config.freeze_encoder)
        rows, cols, channels = self.image_tower.grid_shape(config.image_size, config.grid_blocks)
        w = config.width
        self.question_in = nn.Linear(self.text_tower.ln_final.normalized_shape[0], w)
        if config.token_adapter:
            self.word_in = nn.Linear(self.text_tower.token_embedding.embedding_dim, w)
            self.question_position = nn.Parameter(torch.randn(self.text_tower.context_length, w) * 0.02)
        self.grid_in = nn.Sequential(nn.Linear(channels, w), nn.LayerNorm(w))
        self.grid_position = nn.Parameter(torch.randn(rows * cols, w) * 0.02)
        self.register_buffer("centres", cell_centres(rows, cols), persistent=False)
        if config.cell_coordinates:
            self.coordinates_in = nn.Linear(2, w)
        self.encoder = nn.ModuleList(
            nn.ModuleList([_Block(w, config.heads, config.dropout), _FeedForward(w, config.dropout)]) for _ in range(config.layers))
        self.decoder = nn.ModuleList(
            nn.ModuleList([_Block(w, config.heads, config.dropout), _Block(w, config.heads, config.dropout),
                           _FeedForward(w, config.dropout)]) for _ in range(config.layers))
        self.question_pool = _AttentionPool(w)
        self.grid_pool = (_AttentionPool(w) if config.glimpses == 1 else
                          _GlimpsePool(w, config.glimpses, 2 if config.cell_coordinates else 0))
        self.norm = nn.LayerNorm(w)
        self.classifier = (nn.Linear(w, len(config.answers)) if not config.classifier_hidden else nn.Sequential(
            nn.Linear(w, config.classifier_hidden), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(config.classifier_hidden, len(config.answers))))

    def train(self, mode: bool = True) -> VQAModel:
        super().train(mode)
        self.text_tower.eval()  # always frozen
        if self.config.freeze_encoder:
            self.image_tower.eval()  # frozen BatchNorm statistics too
        return self

    def tokenize(self, questions: list[str]) -> torch.Tensor:
        """CLIP token ids [B, context_length] for questions; one longer than the context is an error (cutting it
        would drop the end of the question)."""
        from clipworks.model.tokenizer import Tokenizer

        return Tokenizer(context_length=self.text_tower.context_length)(questions, truncate=False)

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The (mean, std) of the CLIP model's preprocessing."""
        return tuple(self.preprocess_config.mean), tuple(self.preprocess_config.std)

    def grid(self, images: torch.Tensor) -> torch.Tensor:
        """Grid features [B, N, C] of preprocessed images at `config.image_size`."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_encoder):
            return self.image_tower.forward_grid(images, self.config.grid_blocks)

    @torch.no_grad()
    def question_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The frozen text tower's per-token features [B, L, width] (what `forward_grid` computes when not given
        them; a training loop can compute them once per question)."""
        return self.text_tower.tokens(tokens)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.forward_grid(self.grid(images), tokens)

    def forward_grid(self, grid: torch.Tensor, tokens: torch.Tensor,
                     question_features: torch.Tensor | None = None) -> torch.Tensor:
        """Answer logits from grid features [B, N, C] and CLIP token ids [B, L] (0 = padding), optionally with
        the tokens' `question_features` already computed."""
        if grid.shape[1] != self.grid_position.shape[0]:
            raise ValueError(f"grid of {grid.shape[1]} cells; this model was built for {self.grid_position.shape[0]} "
                             f"(image size {self.config.image_size})")
        padding = tokens == 0
        if question_features is None:
            question_features = self.question_features(tokens)
        q = self.question_in(question_features.to(self.question_in.weight.dtype))
        if self.config.token_adapter:
            with torch.no_grad():
                words = self.text_tower.token_embedding(tokens)
            q = q + self.word_in(words) + self.question_position[:tokens.shape[1]]
        for attend, feed in self.encoder:
            q = feed(attend(q, q, padding))
        v = self.grid_in(grid.to(q.dtype)) + self.grid_position
        if self.config.cell_coordinates:
            v = v + self.coordinates_in(self.centres.to(q.dtype))
        for attend, guided, feed in self.decoder:
            v = feed(guided(attend(v, v, None), q, padding))
        pooled = (self.grid_pool(v, None) if self.config.glimpses == 1 else
                  self.grid_pool(v, self.centres if self.config.cell_coordinates else None))
        fused = self.norm(self.question_pool(q, padding) + pooled)
        return self.classifier(fused)

    def parameter_counts(self) -> dict[str, int]:
        return parameter_counts(self)

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """The head, and the image tower unless it is the frozen CLIP one (then `clip_model` names it)."""
        state = {k: v for k, v in self.state_dict().items() if _stored(self.config, k)}
        out = save_weights(state, directory, dtype)
        (out / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        return out


def _stored(config: VQAConfig, key: str) -> bool:
    """Whether a weight is saved with the model: never the CLIP text tower, the image tower only if trained."""
    return not key.startswith("text_tower.") and not (config.freeze_encoder and key.startswith("image_tower."))


def shipped_vqa_path(name: str) -> Path:
    """The packaged directory of a shipped VQA model ('default'; made by `python -m clipworks.vqa.make_default`)."""
    return resolve(name, "clipworks.vqa")


def load_vqa(directory: str | Path = "default", device: str | torch.device | None = None) -> VQAModel:
    """A VQA model saved by `save_pretrained`, or a shipped one by name ('default'); its CLIP model is loaded
    by the name in its config."""
    from clipworks.model.factory import create_model

    path = resolve(directory, "clipworks.vqa")
    try:
        config = VQAConfig(**read_config(path, CONFIG_FILE, "VQA model"))
    except TypeError as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: unreadable VQA model config ({exc})") from None
    clip, _ = create_model(config.clip_model, device="cpu")
    model = VQAModel(config, clip)
    load_weights(model, path,
                 not_stored=lambda k: not _stored(config, k),
                 mismatch=lambda k, got, want: f"{k} has shape {got}; this config needs {want}")
    if device is not None:
        model.to(device)
    return model.eval()


def preprocess_for(config: VQAConfig, clip_preprocess_config) -> Any:
    """The image transform at the VQA model's input size, with the CLIP model's normalisation."""
    from clipworks.model.transforms import image_transform

    return image_transform(replace(clip_preprocess_config, image_size=config.image_size))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft answer scores [B, A] (each row sums to 1; a one-hot row is the usual CE)."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
