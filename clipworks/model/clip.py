"""The CLIP model: an image tower and a text tower projected into one space, compared by scaled cosine."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from clipworks.model.config import ModelConfig
from clipworks.model.image_tower import ImageTower
from clipworks.model.modified_resnet import ModifiedResNet
from clipworks.model.text_transformer import TextTransformer
from clipworks.model.vision_transformer import VisionTransformer

CONFIG_FILE = "clipworks_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
MAX_LOGIT_SCALE = math.log(100.0)  # the log-temperature's ceiling: logits at most 100 x cosine, as in CLIP


class CLIP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.vision.kind == "vit":
            self.image_tower: ImageTower = VisionTransformer(config.vision, config.embed_dim, config.quick_gelu)
        else:
            self.image_tower = ModifiedResNet(config.vision, config.embed_dim)
        self.text_tower = TextTransformer(config.text, config.embed_dim, config.quick_gelu)
        # A learnable log-temperature: logits = exp(logit_scale) * cosine similarity.
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.text_tower.token_embedding.weight.dtype

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image embeddings [B, embed_dim] on the model's device from preprocessed images [B, 3, H, W] on any device."""
        features = self.image_tower(images.to(self.device))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text embeddings [B, embed_dim] on the model's device from token ids [B, L] on any device
        (see `clipworks.tokenize`)."""
        features = self.text_tower(text.to(self.device))
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits_per_image [B_img, B_txt], logits_per_text [B_txt, B_img]), as in OpenAI's CLIP."""
        image_features = self.encode_image(images, normalize=True)
        text_features = self.encode_text(text, normalize=True)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute Transformer activations in the backward pass to save memory (ViT and text towers)."""
        self.text_tower.transformer.grad_checkpointing = enable
        if isinstance(self.image_tower, VisionTransformer):
            self.image_tower.transformer.grad_checkpointing = enable

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write `model.safetensors` and `clipworks_config.json`; `create_model(directory)` loads them back.

        `dtype=torch.float16` halves the file; loading upcasts to float32 again."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        if dtype is not None:
            state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "clipworks", "version": str(FORMAT_VERSION)})
        meta = {"format_version": FORMAT_VERSION, "model": self.config.to_dict()}
        (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return out
