"""Architecture configs as data: one JSON file per architecture in `configs/`, read into dataclasses."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from clipworks.errors import ConfigError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
RESIZE_MODES = ("shortest", "squash")


@dataclass(frozen=True)
class VisionConfig:
    """Image tower: an int `layers` builds a ViT, four ints build OpenAI's ModifiedResNet."""

    image_size: int = 224
    layers: int | tuple[int, int, int, int] = 12
    width: int = 768
    patch_size: int | None = 32
    heads: int | None = None  # None: width // 64 (ViT), width * 32 // 64 (ResNet attention pool)
    mlp_ratio: float = 4.0

    @property
    def kind(self) -> str:
        return "resnet" if isinstance(self.layers, tuple) else "vit"

    @property
    def num_heads(self) -> int:
        if self.heads is not None:
            return self.heads
        return self.width // 64 if self.kind == "vit" else self.width * 32 // 64


@dataclass(frozen=True)
class TextConfig:
    """Causal text Transformer pooled at the end-of-text token."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes the tower's input tensor; saved beside the weights."""

    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"  # shortest side to image_size then centre crop; or squash to a square


@dataclass(frozen=True)
class ModelConfig:
    """A whole CLIP model. `quick_gelu` is required: OpenAI's weights need True, most others False."""

    embed_dim: int
    vision: VisionConfig
    text: TextConfig
    quick_gelu: bool
    init_logit_scale: float = math.log(1 / 0.07)
    preprocess: PreprocessConfig = field(default=None)  # type: ignore[assignment]
    name: str | None = None

    def __post_init__(self) -> None:
        if self.preprocess is None:
            object.__setattr__(self, "preprocess", PreprocessConfig(image_size=self.vision.image_size))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(self.vision.layers, tuple):
            d["vision"]["layers"] = list(self.vision.layers)
        return d

    def with_quick_gelu(self, quick_gelu: bool) -> "ModelConfig":
        return replace(self, quick_gelu=quick_gelu)


def _build(cls: type, data: Any, where: str) -> Any:
    """Build a dataclass from a dict, naming `where` and the field on any unknown or mistyped entry."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(known)}")
    return cls(**data)


def config_from_dict(data: dict[str, Any], source: str = "config") -> ModelConfig:
    """Parse and validate a model config dict (the JSON layout of `configs/*.json`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    data = dict(data)
    for required in ("embed_dim", "vision", "text", "quick_gelu"):
        if required not in data:
            raise ConfigError(f"{source}: missing field '{required}'")
    vision = dict(data.pop("vision"))
    if isinstance(vision.get("layers"), list):
        vision["layers"] = tuple(vision["layers"])
    vision_cfg = _build(VisionConfig, vision, f"{source}: field 'vision'")
    text_cfg = _build(TextConfig, data.pop("text"), f"{source}: field 'text'")
    pre = data.pop("preprocess", None)
    if pre is None:
        pre_cfg = PreprocessConfig(image_size=vision_cfg.image_size)
    else:
        pre = dict(pre)
        for key in ("mean", "std"):
            if key in pre:
                pre[key] = tuple(float(v) for v in pre[key])
        pre_cfg = _build(PreprocessConfig, pre, f"{source}: field 'preprocess'")
    cfg = _build(ModelConfig, {**data, "vision": vision_cfg, "text": text_cfg, "preprocess": pre_cfg}, source)
    validate(cfg, source)
    return cfg


def validate(cfg: ModelConfig, source: str = "config") -> None:
    """Reject configs that cannot build a model, naming the field."""
    v, t, p = cfg.vision, cfg.text, cfg.preprocess
    if not isinstance(cfg.quick_gelu, bool):
        raise ConfigError(f"{source}: field 'quick_gelu' must be true or false")
    if v.kind == "vit":
        if not v.patch_size or v.image_size % v.patch_size:
            raise ConfigError(f"{source}: vision.image_size {v.image_size} is not a multiple of patch_size {v.patch_size}")
    else:
        if len(v.layers) != 4 or v.image_size % 32:
            raise ConfigError(f"{source}: a ResNet needs 4 stage depths and image_size a multiple of 32")
    if v.kind == "vit" and v.width % v.num_heads:
        raise ConfigError(f"{source}: vision.width {v.width} is not divisible by heads {v.num_heads}")
    if t.width % t.heads:
        raise ConfigError(f"{source}: text.width {t.width} is not divisible by text.heads {t.heads}")
    if p.interpolation not in INTERPOLATIONS:
        raise ConfigError(f"{source}: preprocess.interpolation must be one of {INTERPOLATIONS}")
    if p.resize_mode not in RESIZE_MODES:
        raise ConfigError(f"{source}: preprocess.resize_mode must be one of {RESIZE_MODES}")
    if len(p.mean) != 3 or len(p.std) != 3:
        raise ConfigError(f"{source}: preprocess.mean and preprocess.std need three values")


def _natural_key(name: str) -> list[Any]:
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", name)]


@lru_cache(maxsize=1)
def _registry() -> dict[str, ModelConfig]:
    configs: dict[str, ModelConfig] = {}
    for entry in resources.files("clipworks.model").joinpath("configs").iterdir():
        if entry.name.endswith(".json"):
            name = entry.name[: -len(".json")]
            data = json.loads(entry.read_text())
            configs[name] = replace(config_from_dict(data, f"configs/{entry.name}"), name=name)
    return configs


def canonical_name(name: str) -> str:
    """Accept OpenAI's spellings too: 'ViT-B/32' -> 'ViT-B-32', 'ViT-L/14@336px' -> 'ViT-L-14-336'."""
    return name.replace("@336px", "-336").replace("/", "-")


def list_models() -> list[str]:
    """Names of the architectures clipworks can build."""
    return sorted(_registry(), key=_natural_key)


def is_model_name(name: str) -> bool:
    return canonical_name(name) in _registry()


def get_model_config(name: str) -> ModelConfig:
    """The config of a named architecture; an unknown name lists the known ones."""
    registry = _registry()
    key = canonical_name(name)
    if key not in registry:
        raise ConfigError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return registry[key]
