"""Architecture configs recovered from a checkpoint: open_clip and Hugging Face config files, or the weights alone."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from clipworks.errors import CheckpointError, ConfigError
from clipworks.model.config import ModelConfig, PreprocessConfig, TextConfig, VisionConfig, validate

# open_clip fields whose default values clipworks' architecture matches; anything else is refused.
_OPENCLIP_VISION_DEFAULTS: dict[str, Any] = {
    "ls_init_value": None, "patch_dropout": 0.0, "attentional_pool": False, "no_ln_pre": False,
    "pos_embed_type": "learnable", "final_ln_after_pool": False, "pool_type": "tok", "output_tokens": False,
    "timm_model_name": None, "timm_model_pretrained": False, "act_kwargs": None, "norm_kwargs": None,
}
_OPENCLIP_TEXT_DEFAULTS: dict[str, Any] = {
    "ls_init_value": None, "embed_cls": False, "no_causal_mask": False, "final_ln_after_pool": False,
    "pool_type": "argmax", "proj_bias": False, "proj_type": "linear", "output_tokens": False,
    "hf_model_name": None, "act_kwargs": None, "norm_kwargs": None, "pad_id": 0,
    "hf_tokenizer_name": None, "tokenizer_kwargs": None,
}


def _refuse_unsupported(cfg: dict[str, Any], defaults: dict[str, Any], where: str) -> None:
    for key, value in cfg.items():
        if key in defaults and value != defaults[key] and not (value in (None, {}) and defaults[key] is None):
            raise CheckpointError(f"{where}: field '{key}' = {value!r} is not supported by clipworks' architecture")


def config_from_openclip(data: dict[str, Any], path: Path) -> ModelConfig:
    """Convert an `open_clip_config.json` ({'model_cfg': ..., 'preprocess_cfg': ...})."""
    model_cfg = data.get("model_cfg", data)
    if not isinstance(model_cfg, dict) or "vision_cfg" not in model_cfg or "text_cfg" not in model_cfg:
        raise CheckpointError(f"{path}: expected 'model_cfg' with 'vision_cfg' and 'text_cfg'")
    if model_cfg.get("custom_text") or model_cfg.get("multimodal_cfg") or model_cfg.get("init_logit_bias") is not None:
        raise CheckpointError(f"{path}: CoCa, custom-text and SigLIP models are not supported by clipworks")
    v, t = dict(model_cfg["vision_cfg"]), dict(model_cfg["text_cfg"])
    _refuse_unsupported(v, _OPENCLIP_VISION_DEFAULTS, f"{path}: vision_cfg")
    _refuse_unsupported(t, _OPENCLIP_TEXT_DEFAULTS, f"{path}: text_cfg")
    layers = v.get("layers", 12)
    width = v.get("width", 768)
    if isinstance(layers, (list, tuple)):
        head_width = v.get("head_width", 64)  # open_clip's ResNet attention pool: width * 32 // head_width heads
        vision = VisionConfig(image_size=_size(v.get("image_size", 224)), layers=tuple(layers), width=width, patch_size=None,
                              heads=None if head_width == 64 else width * 32 // head_width)
    else:
        vision = VisionConfig(
            image_size=_size(v.get("image_size", 224)), layers=layers, width=width,
            patch_size=_size(v.get("patch_size", 16)), heads=width // v.get("head_width", 64),
            mlp_ratio=float(v.get("mlp_ratio", 4.0)),
        )
    text = TextConfig(
        context_length=t.get("context_length", 77), vocab_size=t.get("vocab_size", 49408),
        width=t.get("width", 512), heads=t.get("heads", 8), layers=t.get("layers", 12),
        mlp_ratio=float(t.get("mlp_ratio", 4.0)),
    )
    pre = data.get("preprocess_cfg", {})
    preprocess = PreprocessConfig(
        image_size=_size(pre.get("size", vision.image_size)),
        mean=tuple(pre.get("mean", PreprocessConfig.mean)),
        std=tuple(pre.get("std", PreprocessConfig.std)),
        interpolation=pre.get("interpolation", "bicubic"),
        resize_mode=pre.get("resize_mode", "shortest"),
    )
    cfg = ModelConfig(
        embed_dim=model_cfg["embed_dim"], vision=vision, text=text,
        quick_gelu=bool(model_cfg.get("quick_gelu", False)),  # open_clip's own default is GELU
        init_logit_scale=float(model_cfg.get("init_logit_scale", math.log(1 / 0.07))),
        preprocess=preprocess,
    )
    _validated(cfg, path)
    return cfg


def config_to_openclip(cfg: ModelConfig) -> dict[str, Any]:
    """An `open_clip_config.json` ({'model_cfg': ..., 'preprocess_cfg': ...}): the inverse of `config_from_openclip`."""
    v, t, p = cfg.vision, cfg.text, cfg.preprocess
    # open_clip derives the head count from head_width: width // head_width (ViT), width * 32 // head_width (ResNet).
    pooled_width = v.width if v.kind == "vit" else v.width * 32
    head_width = pooled_width // v.num_heads
    if pooled_width % v.num_heads:
        raise ConfigError(f"{cfg.name or 'model'}: vision width {pooled_width} with {v.num_heads} heads has no whole "
                          "head_width, which open_clip's config needs")
    if v.kind == "vit":
        vision = {"image_size": v.image_size, "layers": v.layers, "width": v.width, "patch_size": v.patch_size,
                  "head_width": head_width, "mlp_ratio": v.mlp_ratio}
    else:
        vision = {"image_size": v.image_size, "layers": list(v.layers), "width": v.width, "head_width": head_width}
    text = {"context_length": t.context_length, "vocab_size": t.vocab_size, "width": t.width, "heads": t.heads,
            "layers": t.layers, "mlp_ratio": t.mlp_ratio}
    model_cfg = {"embed_dim": cfg.embed_dim, "quick_gelu": cfg.quick_gelu, "init_logit_scale": cfg.init_logit_scale,
                 "vision_cfg": vision, "text_cfg": text}
    preprocess = {"size": p.image_size, "mean": list(p.mean), "std": list(p.std), "interpolation": p.interpolation,
                  "resize_mode": p.resize_mode}
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess}


_HF_ACTIVATIONS = {"quick_gelu": True, "gelu": False}
_HF_RESAMPLE = {3: "bicubic", 2: "bilinear", 0: "nearest"}


def config_from_huggingface(data: dict[str, Any], preprocessor: dict[str, Any] | None, path: Path) -> ModelConfig:
    """Convert a transformers `CLIPModel` config.json (and preprocessor_config.json when present)."""
    if data.get("model_type") != "clip":
        raise CheckpointError(f"{path}: config.json has model_type {data.get('model_type')!r}, expected 'clip'")
    vc, tc = data.get("vision_config", {}), data.get("text_config", {})
    acts = {vc.get("hidden_act", "quick_gelu"), tc.get("hidden_act", "quick_gelu")}
    if len(acts) != 1 or next(iter(acts)) not in _HF_ACTIVATIONS:
        raise CheckpointError(f"{path}: hidden_act {sorted(acts)} not supported (both towers must use one of quick_gelu, gelu)")
    for tower, c in (("vision_config", vc), ("text_config", tc)):
        if abs(c.get("layer_norm_eps", 1e-5) - 1e-5) > 1e-12:
            raise CheckpointError(f"{path}: {tower}.layer_norm_eps = {c['layer_norm_eps']} is not supported (1e-5 expected)")
    v_width = vc.get("hidden_size", 768)
    t_width = tc.get("hidden_size", 512)
    vision = VisionConfig(
        image_size=vc.get("image_size", 224), layers=vc.get("num_hidden_layers", 12), width=v_width,
        patch_size=vc.get("patch_size", 32), heads=vc.get("num_attention_heads", 12),
        mlp_ratio=vc.get("intermediate_size", 3072) / v_width,
    )
    text = TextConfig(
        context_length=tc.get("max_position_embeddings", 77), vocab_size=tc.get("vocab_size", 49408),
        width=t_width, heads=tc.get("num_attention_heads", 8), layers=tc.get("num_hidden_layers", 12),
        mlp_ratio=tc.get("intermediate_size", 2048) / t_width,
    )
    preprocess = PreprocessConfig(image_size=vision.image_size)
    if preprocessor:
        crop = preprocessor.get("crop_size", vision.image_size)
        crop = crop.get("height", vision.image_size) if isinstance(crop, dict) else crop
        preprocess = PreprocessConfig(
            image_size=int(crop),
            mean=tuple(preprocessor.get("image_mean", PreprocessConfig.mean)),
            std=tuple(preprocessor.get("image_std", PreprocessConfig.std)),
            interpolation=_HF_RESAMPLE.get(preprocessor.get("resample", 3), "bicubic"),
            resize_mode=_hf_resize_mode(preprocessor),
        )
    cfg = ModelConfig(
        embed_dim=data.get("projection_dim", 512), vision=vision, text=text,
        quick_gelu=_HF_ACTIVATIONS[next(iter(acts))],
        init_logit_scale=float(data.get("logit_scale_init_value", math.log(1 / 0.07))),
        preprocess=preprocess,
    )
    _validated(cfg, path)
    return cfg


def _hf_resize_mode(preprocessor: dict[str, Any]) -> str:
    """'squash' for a resize straight to height x width without a crop, else 'shortest' (resize, centre crop)."""
    size = preprocessor.get("size")
    squash = isinstance(size, dict) and "height" in size and not preprocessor.get("do_center_crop", True)
    return "squash" if squash else "shortest"


def config_to_huggingface(cfg: ModelConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.json, preprocessor_config.json) of a transformers `CLIPModel`: the inverse of `config_from_huggingface`.
    A ResNet image tower has no CLIPModel form and is refused by name."""
    v, t, p = cfg.vision, cfg.text, cfg.preprocess
    if v.kind != "vit":
        raise ConfigError(f"{cfg.name or 'this model'}: a ModifiedResNet image tower (layers {list(v.layers)}) cannot be "
                          "exported to the Hugging Face CLIPModel format, whose image tower is a ViT; "
                          "export it to open_clip instead")
    act = next(name for name, quick in _HF_ACTIVATIONS.items() if quick == cfg.quick_gelu)
    common = {"hidden_act": act, "layer_norm_eps": 1e-5, "projection_dim": cfg.embed_dim}
    vision = {**common, "model_type": "clip_vision_model", "image_size": v.image_size, "patch_size": v.patch_size,
              "hidden_size": v.width, "intermediate_size": int(v.width * v.mlp_ratio),
              "num_attention_heads": v.num_heads, "num_hidden_layers": v.layers, "num_channels": 3}
    text = {**common, "model_type": "clip_text_model", "vocab_size": t.vocab_size,
            "max_position_embeddings": t.context_length, "hidden_size": t.width,
            "intermediate_size": int(t.width * t.mlp_ratio), "num_attention_heads": t.heads,
            "num_hidden_layers": t.layers,
            # Pooling at the first end-of-text token: where clipworks' argmax lands for its tokenizer's ids.
            "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1}
    config = {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": cfg.embed_dim,
              "logit_scale_init_value": cfg.init_logit_scale, "text_config": text, "vision_config": vision,
              "dtype": "float32"}
    resample = next(code for code, name in _HF_RESAMPLE.items() if name == p.interpolation)
    crop = p.resize_mode == "shortest"  # squash: resize straight to the square, no crop
    preprocessor = {
        "image_processor_type": "CLIPImageProcessor", "do_convert_rgb": True, "do_resize": True,
        "size": {"shortest_edge": p.image_size} if crop else {"height": p.image_size, "width": p.image_size},
        "resample": resample, "do_center_crop": crop, "crop_size": {"height": p.image_size, "width": p.image_size},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(p.mean), "image_std": list(p.std),
    }
    return config, preprocessor


def _size(value: Any) -> int:
    return int(value[0]) if isinstance(value, (list, tuple)) else int(value)


def _validated(cfg: ModelConfig, path: Path) -> None:
    try:
        validate(cfg, str(path))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m[1] for k in state if (m := regex.match(k))})


def infer_config(state: dict[str, torch.Tensor], quick_gelu: bool, path: Path) -> ModelConfig:
    """Recover the architecture from tensor shapes (clipworks layout), as OpenAI's build_model does."""
    try:
        text_width = state["text_tower.ln_final.weight"].shape[0]
        embed_dim = state["text_tower.text_projection"].shape[1]
        text = TextConfig(
            context_length=state["text_tower.positional_embedding"].shape[0],
            vocab_size=state["text_tower.token_embedding.weight"].shape[0],
            width=text_width, heads=max(text_width // 64, 1),
            layers=_count(state, r"text_tower\.transformer\.resblocks\.(\d+)\."),
            mlp_ratio=state["text_tower.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / text_width,
        )
        if "image_tower.proj" in state:
            conv = state["image_tower.conv1.weight"]
            width, patch = conv.shape[0], conv.shape[-1]
            grid = round((state["image_tower.positional_embedding"].shape[0] - 1) ** 0.5)
            vision = VisionConfig(
                image_size=grid * patch, layers=_count(state, r"image_tower\.transformer\.resblocks\.(\d+)\."),
                width=width, patch_size=patch, heads=width // 64,
                mlp_ratio=state["image_tower.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
            )
        else:
            layers = tuple(_count(state, rf"image_tower\.layer{b}\.(\d+)\.") for b in (1, 2, 3, 4))
            grid = round((state["image_tower.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
            vision = VisionConfig(
                image_size=grid * 32, layers=layers,  # type: ignore[arg-type]
                width=state["image_tower.layer1.0.conv1.weight"].shape[0], patch_size=None,
            )
    except KeyError as exc:
        raise CheckpointError(f"{path}: cannot infer the architecture, key {exc} is missing") from exc
    cfg = ModelConfig(embed_dim=embed_dim, vision=vision, text=text, quick_gelu=quick_gelu)
    _validated(cfg, path)
    return cfg
