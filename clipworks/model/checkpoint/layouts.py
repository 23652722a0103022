"""Map the key layouts people have (OpenAI / open_clip, Hugging Face CLIPModel) onto clipworks' layout, and
back (for export), from one set of tables.

clipworks keeps OpenAI's names inside each tower, so OpenAI's layout maps by prefix alone:
`visual.*` -> `image_tower.*`, the text keys -> `text_tower.*`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from clipworks.errors import CheckpointError

# Present in OpenAI's TorchScript archives or open_clip checkpoints, but not weights of the model.
_DROPPED = ("input_resolution", "context_length", "vocab_size")
_TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def detect_layout(keys: list[str]) -> str:
    """'clipworks', 'openai' (also open_clip's CLIP and CustomTextCLIP) or 'huggingface'."""
    if any(k.startswith(("image_tower.", "text_tower.")) for k in keys):
        return "clipworks"
    if any(k.startswith(("text_model.", "vision_model.")) for k in keys):
        return "huggingface"
    if any(k.startswith("visual.") for k in keys) and any(k.startswith(("token_embedding.", "text.")) for k in keys):
        return "openai"
    return "unknown"


def _strip_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DataParallel/DDP and torch.compile prefixes when every key carries them."""
    for prefix in ("module.", "_orig_mod.", "model."):
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def to_clipworks_layout(tensors: dict[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict in clipworks' layout with floats upcast to float32, detected source layout)."""
    tensors = _strip_prefix(dict(tensors))
    layout = detect_layout(list(tensors))
    if layout == "openai":
        out = _from_openai(tensors, path)
    elif layout == "huggingface":
        out = _from_huggingface(tensors, path)
    elif layout == "clipworks":
        out = dict(tensors)
    else:
        sample = ", ".join(sorted(tensors)[:4])
        raise CheckpointError(f"{path}: not a CLIP checkpoint (no image and text tower keys; first keys: {sample})")
    if "logit_scale" in out and out["logit_scale"].ndim > 0:
        out["logit_scale"] = out["logit_scale"].reshape(())
    upcast = {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}
    return upcast, layout


def _from_openai(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key in _DROPPED or key.endswith("attn_mask"):
            continue
        if key == "logit_bias":
            raise CheckpointError(f"{path}: has a 'logit_bias' (a SigLIP-style model), which clipworks does not support")
        if key.startswith("visual."):
            out["image_tower." + key[len("visual."):]] = value
        elif key.startswith("text."):  # open_clip's CustomTextCLIP nests the text tower
            out["text_tower." + key[len("text."):]] = value
        elif key.startswith(_TEXT_KEYS):
            out["text_tower." + key] = value
        else:
            out[key] = value
    return out


_HF_BLOCK = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
_HF_FIXED = {
    "text_model.embeddings.token_embedding.weight": "text_tower.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "text_tower.positional_embedding",
    "text_model.final_layer_norm.weight": "text_tower.ln_final.weight",
    "text_model.final_layer_norm.bias": "text_tower.ln_final.bias",
    "vision_model.embeddings.class_embedding": "image_tower.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "image_tower.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "image_tower.positional_embedding",
    "vision_model.pre_layrnorm.weight": "image_tower.ln_pre.weight",  # sic: HF's spelling
    "vision_model.pre_layrnorm.bias": "image_tower.ln_pre.bias",
    "vision_model.post_layernorm.weight": "image_tower.ln_post.weight",
    "vision_model.post_layernorm.bias": "image_tower.ln_post.bias",
    "logit_scale": "logit_scale",
}
_HF_LAYER = re.compile(r"^(text|vision)_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def _from_huggingface(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.endswith("position_ids"):
            continue
        if key in _HF_FIXED:
            out[_HF_FIXED[key]] = value
        elif key == "visual_projection.weight":  # nn.Linear [out, in] -> OpenAI's x @ proj [in, out]
            out["image_tower.proj"] = value.t().contiguous()
        elif key == "text_projection.weight":
            out["text_tower.text_projection"] = value.t().contiguous()
        elif (m := _HF_LAYER.match(key)) is not None:
            tower = "text_tower" if m[1] == "text" else "image_tower"
            block = f"{tower}.transformer.resblocks.{m[2]}"
            module, kind = m[3], m[4]
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((block, kind, ""), {})[module[-6]] = value
            elif module in _HF_BLOCK:
                out[f"{block}.{_HF_BLOCK[module]}.{kind}"] = value
            else:
                raise CheckpointError(f"{path}: unexpected Hugging Face key '{key}'")
        else:
            raise CheckpointError(f"{path}: unexpected Hugging Face key '{key}'")
    for (block, kind, _), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{path}: {block} lacks one of the q/k/v projections ({kind})")
        out[f"{block}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


# Export: the same tables read the other way.


def to_openai_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """clipworks' state dict in OpenAI's layout (what open_clip's `CLIP` loads): the inverse of `_from_openai`."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("image_tower."):
            out["visual." + key[len("image_tower."):]] = value
        elif key.startswith("text_tower.") and key[len("text_tower."):].startswith(_TEXT_KEYS):
            out[key[len("text_tower."):]] = value
        elif key == "logit_scale":
            out[key] = value
        else:
            raise CheckpointError(f"no OpenAI/open_clip name for clipworks key '{key}'")
    return out


_TO_HF_FIXED = {ours: theirs for theirs, ours in _HF_FIXED.items()}
_TO_HF_BLOCK = {ours: theirs for theirs, ours in _HF_BLOCK.items()}
# `attn.in_proj_weight` is the one name that joins its kind with "_".
_OUR_LAYER = re.compile(r"^(text|image)_tower\.transformer\.resblocks\.(\d+)\.(.+)[._](weight|bias)$")


def to_huggingface_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ViT clipworks state dict in transformers' `CLIPModel` layout: the inverse of `_from_huggingface`
    (q/k/v unpacked, projections transposed back to nn.Linear's [out, in])."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _TO_HF_FIXED:
            out[_TO_HF_FIXED[key]] = value
        elif key == "image_tower.proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif key == "text_tower.text_projection":
            out["text_projection.weight"] = value.t().contiguous()
        elif (m := _OUR_LAYER.match(key)) is not None:
            block = f"{'text' if m[1] == 'text' else 'vision'}_model.encoder.layers.{m[2]}"
            module, kind = m[3], m[4]
            if module == "attn.in_proj":
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{block}.self_attn.{name}_proj.{kind}"] = part.contiguous()
            elif module in _TO_HF_BLOCK:
                out[f"{block}.{_TO_HF_BLOCK[module]}.{kind}"] = value
            else:
                raise CheckpointError(f"no Hugging Face CLIPModel name for clipworks key '{key}'")
        else:
            raise CheckpointError(f"no Hugging Face CLIPModel name for clipworks key '{key}'")
    return out
