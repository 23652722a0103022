"""ClipCap: a mapping network turns a CLIP image embedding into `prefix_length` GPT-2 input embeddings; the LM
continues the prefix with the caption.

Two variants, as in Mokady et al. (2021): an MLP mapper (one tanh hidden layer) with the LM fine-tuned, and a
Transformer mapper (the projected CLIP embedding plus learned constant queries through an encoder) with the LM
frozen. The LM is Hugging Face's GPT-2 architecture, built from a config (any size) or loaded from a local
GPT-2 checkpoint directory; nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from clipworks.errors import CheckpointError, ConfigError
from clipworks.weights import load_weights, parameter_counts, read_config, resolve, save_weights

MAPPERS = ("mlp", "transformer")
CONFIG_FILE = "clipcap_config.json"


@dataclass
class CaptionerConfig:
    """Everything needed to rebuild a captioner; `lm` holds GPT2Config fields, `lm_path` a local GPT-2 directory."""

    clip_dim: int
    clip_model: str = "default"
    mapper: str = "mlp"
    prefix_length: int = 10
    clip_length: int = 10  # Transformer mapper: tokens the CLIP embedding is projected to
    mapper_layers: int = 4
    mapper_heads: int = 4
    freeze_lm: bool = False
    lm: dict[str, Any] = field(default_factory=lambda: dict(n_layer=4, n_head=4, n_embd=256, n_positions=64))
    lm_path: str | None = None
    # A compact vocabulary: the GPT-2 ids the LM knows (its id i is GPT-2 id vocab[i]); None = all 50,257.
    # GPT-2's BPE still tokenizes; captions of a small world need a few hundred of its tokens, not 50,257.
    vocab: list[int] | None = None

    def __post_init__(self) -> None:
        if self.mapper not in MAPPERS:
            raise ConfigError(f"mapper {self.mapper!r}: choose one of {', '.join(MAPPERS)}")
        if self.prefix_length < 1:
            raise ConfigError(f"prefix_length must be >= 1; got {self.prefix_length}")


class MLPMapper(nn.Module):
    """CLIP embedding -> k x d prefix through one tanh hidden layer of width k*d/2."""

    def __init__(self, clip_dim: int, prefix_length: int, width: int) -> None:
        super().__init__()
        self.prefix_length, self.width = prefix_length, width
        hidden = prefix_length * width // 2
        self.net = nn.Sequential(nn.Linear(clip_dim, hidden), nn.Tanh(), nn.Linear(hidden, prefix_length * width))

    def forward(self, clip_embedding: torch.Tensor) -> torch.Tensor:
        return self.net(clip_embedding).view(-1, self.prefix_length, self.width)


class TransformerMapper(nn.Module):
    """CLIP embedding -> `clip_length` tokens, concatenated with k learned constants, through a Transformer
    encoder; the outputs at the constants' positions are the prefix."""

    def __init__(self, clip_dim: int, prefix_length: int, width: int, clip_length: int, layers: int, heads: int) -> None:
        super().__init__()
        self.prefix_length, self.clip_length, self.width = prefix_length, clip_length, width
        self.project = nn.Linear(clip_dim, clip_length * width)
        self.constants = nn.Parameter(torch.randn(prefix_length, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, clip_embedding: torch.Tensor) -> torch.Tensor:
        x = self.project(clip_embedding).view(-1, self.clip_length, self.width)
        x = torch.cat([x, self.constants.expand(x.shape[0], -1, -1)], dim=1)
        return self.encoder(x)[:, self.clip_length:]


GPT2_EOS = 50256


class Vocabulary:
    """GPT-2 ids <-> the LM's ids (identity without a compact vocabulary); unknown tokens map to end-of-text."""

    def __init__(self, gpt2_ids: list[int] | None) -> None:
        self.gpt2_ids = gpt2_ids
        self.to_lm = {g: i for i, g in enumerate(gpt2_ids)} if gpt2_ids is not None else None
        self.eos = self.to_lm[GPT2_EOS] if self.to_lm is not None else GPT2_EOS

    def __len__(self) -> int:
        return len(self.gpt2_ids) if self.gpt2_ids is not None else 50257

    def encode(self, ids: list[int]) -> list[int]:
        return ids if self.to_lm is None else [self.to_lm.get(i, self.eos) for i in ids]

    def decode(self, ids: list[int]) -> list[int]:
        return ids if self.gpt2_ids is None else [self.gpt2_ids[i] for i in ids]

    @staticmethod
    def from_captions(texts: list[str], tokenizer) -> list[int]:
        """The sorted GPT-2 ids used by `texts`, plus end-of-text."""
        used = {GPT2_EOS}
        for t in texts:
            used.update(tokenizer(t)["input_ids"])
        return sorted(used)


def _build_lm(config: CaptionerConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    if config.lm_path:
        path = Path(config.lm_path).expanduser()
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a GPT-2 checkpoint directory (no config.json)")
        return GPT2LMHeadModel.from_pretrained(str(path), local_files_only=True)
    vocab = Vocabulary(config.vocab)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), bos_token_id=vocab.eos, eos_token_id=vocab.eos, **config.lm))


class ClipCap(nn.Module):
    """Mapper + GPT-2. `forward` gives the caption loss; `generate` decodes (see decoding.py)."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab = Vocabulary(config.vocab)
        self.lm = _build_lm(config)
        width = self.lm.config.n_embd
        if config.mapper == "mlp":
            self.mapper: nn.Module = MLPMapper(config.clip_dim, config.prefix_length, width)
        else:
            self.mapper = TransformerMapper(config.clip_dim, config.prefix_length, width, config.clip_length,
                                            config.mapper_layers, config.mapper_heads)
        if config.freeze_lm:
            self.lm.requires_grad_(False)

    @property
    def width(self) -> int:
        return self.lm.config.n_embd

    def prefix(self, clip_embedding: torch.Tensor) -> torch.Tensor:
        """[B, k, d] LM input embeddings from [B, clip_dim] CLIP embeddings."""
        return self.mapper(clip_embedding)

    def forward(self, clip_embedding: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over caption tokens only: positions of the prefix and of padding are not
        predicted, and padding is masked out of attention. `tokens` end with the end token; `mask` is 1 on
        real tokens (including that end token) and 0 on padding."""
        prefix = self.prefix(clip_embedding)
        embeds = torch.cat([prefix, self.lm.transformer.wte(tokens)], dim=1)
        attention = torch.cat([torch.ones(prefix.shape[:2], dtype=mask.dtype, device=mask.device), mask], dim=1)
        logits = self.lm(inputs_embeds=embeds, attention_mask=attention).logits
        k = prefix.shape[1]
        predicted = logits[:, k - 1:-1]  # the prefix's last position predicts the first caption token
        labels = tokens.masked_fill(mask == 0, -100)
        return F.cross_entropy(predicted.reshape(-1, predicted.shape[-1]), labels.reshape(-1), ignore_index=-100)

    def parameter_counts(self) -> dict[str, int]:
        return parameter_counts(self)

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Weights (in `dtype` if given; loading upcasts to float32) and config into `directory`."""
        state = dict(self.state_dict())
        # GPT-2 ties the output layer to the token embedding: store the shared tensor once.
        state.pop("lm.lm_head.weight", None)
        out = save_weights(state, directory, dtype)
        config = asdict(self.config)
        config["lm"] = {k: getattr(self.lm.config, k) for k in ("n_layer", "n_head", "n_embd", "n_positions")}
        config["lm_path"] = None  # the weights now hold the LM
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return out


def shipped_captioner_path(name: str) -> Path:
    """The packaged directory of a shipped captioner ('default'; made by `python -m clipworks.captioning.make_default`)."""
    return resolve(name, "clipworks.captioning")


def load_captioner(directory: str | Path = "default", device: str | torch.device | None = None) -> ClipCap:
    """A captioner saved by `save_pretrained`, or a shipped one by name ('default'); a mapper that does not fit
    the LM's width is a clear error."""
    path = resolve(directory, "clipworks.captioning")
    try:
        config = CaptionerConfig(**read_config(path, CONFIG_FILE, "captioner"))
    except TypeError as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: unreadable captioner config ({exc})") from None
    model = ClipCap(config)
    load_weights(model, path, not_stored=lambda k: k == "lm.lm_head.weight",  # tied to the token embedding
                 mismatch=lambda k, got, want: f"{k} has shape {got}, but a {config.mapper} mapper for an LM of "
                                               f"width {model.width} needs {want}")
    model.lm.tie_weights()
    if device is not None:
        model.to(device)
    return model.eval()
