"""The text tower: token + position embeddings, causal Transformer, ln_final, pool at end-of-text, project.

Pooling runs the Transformer only up to the batch's last end-of-text token: under the causal mask nothing after
it reaches the pooled output, so ordinary captions (under 32 tokens) skip most of the 77 positions."""

from __future__ import annotations

import torch
from torch import nn

from clipworks.errors import ContextLengthError
from clipworks.model.config import TextConfig
from clipworks.model.layers import LayerNorm, Transformer


class TextTransformer(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        self.context_length = cfg.context_length
        self.vocab_size = cfg.vocab_size
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.width))
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu)
        self.ln_final = LayerNorm(cfg.width)
        self.text_projection = nn.Parameter(torch.empty(cfg.width, embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=cfg.width**-0.5)
        self.transformer.init_weights()

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters by depth, as `ImageTower.layer_groups`: the embeddings, each block, then ln_final and the
        projection."""
        return [[self.token_embedding.weight, self.positional_embedding],
                *[list(block.parameters()) for block in self.transformer.resblocks],
                [*self.ln_final.parameters(), self.text_projection]]

    def tokens(self, text: torch.Tensor) -> torch.Tensor:
        """Per-token outputs [B, L, width] after ln_final."""
        if text.ndim != 2:
            raise ValueError(f"token ids must have shape [batch, length], got {list(text.shape)}")
        if text.shape[1] > self.context_length:
            raise ContextLengthError(
                f"token ids have length {text.shape[1]} but this text tower's context length is {self.context_length}"
            )
        x = self.token_embedding(text) + self.positional_embedding[: text.shape[1]].to(self.token_embedding.weight.dtype)
        return self.ln_final(self.transformer(x, causal=True))

    def forward(self, text: torch.Tensor, trim: bool = True) -> torch.Tensor:
        """Pooled text embeddings [B, embed_dim]; `trim=False` runs all positions (the same output, slower)."""
        # End-of-text has the largest id in CLIP's vocabulary, so argmax finds it.
        eot = text.argmax(dim=-1)
        if trim and text.ndim == 2 and text.numel() and text.shape[1] <= self.context_length:
            text = text[:, : int(eot.max()) + 1]  # later positions cannot reach any end-of-text under the causal mask
        x = self.tokens(text)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection
