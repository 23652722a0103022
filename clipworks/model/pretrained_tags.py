"""Published CLIP weights by name: `create_model("ViT-B-32", pretrained="openai")`.

The registry is data (pretrained_tags.json: architecture -> tag -> where the publisher serves the weights, their
SHA-256 where the publisher gives one, and the activation and preprocessing they were trained with). A tag
resolves to a file in this order: clipworks' cache (~/.cache/clipworks/pretrained, or $CLIPWORKS_CACHE/pretrained,
or `cache_dir`), a Hugging Face hub cache, the ~/.cache/clip folder of open_clip and openai/CLIP; then, only where
the user allowed it, a download. A file is checked against a hash every time it is used: the published one, the
one the Hugging Face cache names its blob by, or the one recorded beside it when it was first downloaded (a tag
whose upstream file changes keeps loading the bytes it was first verified with)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from clipworks.errors import CheckpointError, ConfigError, DownloadError
from clipworks.model.config import ModelConfig, PreprocessConfig

REGISTRY_FILE = "pretrained_tags.json"
HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's order: safetensors first
HASH_SUFFIX = ".sha256"  # the record beside a downloaded file, in `sha256sum` format
_FIELDS = {"url", "sha256", "hf_hub", "quick_gelu", "preprocess"}
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PretrainedTag:
    """Where one set of published weights for an architecture lives, and how they were trained to be used."""

    architecture: str
    tag: str
    quick_gelu: bool
    url: str | None = None  # the publisher's own download
    sha256: str | None = None  # of the file at `url`: 64 hex digits, or the prefix open_clip's release names carry
    hf_hub: str | None = None  # a Hugging Face repo holding one of HF_FILES
    preprocess: dict[str, Any] = field(default_factory=dict, hash=False)  # overrides of the architecture's

    @property
    def name(self) -> str:
        return f"{self.architecture}/{self.tag}"

    def sources(self) -> list[tuple[str, str | None]]:
        """(url, expected sha256) in the order a download tries them."""
        if self.url:
            return [(self.url, self.sha256)]
        return [(f"https://huggingface.co/{self.hf_hub}/resolve/main/{name}", None) for name in HF_FILES]

    def apply(self, config: ModelConfig) -> ModelConfig:
        """The architecture's config with these weights' activation and preprocessing."""
        from dataclasses import replace

        pre = {k: tuple(v) if isinstance(v, list) else v for k, v in self.preprocess.items()}
        return replace(config, quick_gelu=self.quick_gelu, preprocess=replace(config.preprocess, **pre))


def _entry(architecture: str, tag: str, data: Any, where: str) -> PretrainedTag:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object")
    unknown = set(data) - _FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; expected {sorted(_FIELDS)}")
    if not isinstance(data.get("quick_gelu"), bool):
        raise ConfigError(f"{where}: field 'quick_gelu' must be true or false")
    if not data.get("url") and not data.get("hf_hub"):
        raise ConfigError(f"{where}: needs 'url' or 'hf_hub'")
    sha = data.get("sha256")
    if sha is not None and not re.fullmatch(r"[0-9a-f]{8,64}", sha):
        raise ConfigError(f"{where}: field 'sha256' must be 8 to 64 lowercase hex digits, got {sha!r}")
    if sha is not None and not data.get("url"):
        raise ConfigError(f"{where}: field 'sha256' is the hash of the file at 'url', which is missing")
    pre = data.get("preprocess", {})
    if not isinstance(pre, dict) or not set(pre) <= set(PreprocessConfig.__dataclass_fields__) - {"image_size"}:
        raise ConfigError(f"{where}: field 'preprocess' may set only mean, std, interpolation and resize_mode")
    return PretrainedTag(architecture, tag, data["quick_gelu"], data.get("url"), sha, data.get("hf_hub"), dict(pre))


@lru_cache(maxsize=1)
def _registry() -> dict[tuple[str, str], PretrainedTag]:
    from importlib import resources

    data = json.loads(resources.files("clipworks.model").joinpath(REGISTRY_FILE).read_text())
    return {(arch, tag): _entry(arch, tag, fields, f"{REGISTRY_FILE}: {arch}/{tag}")
            for arch, tags in data.items() if not arch.startswith("_") for tag, fields in tags.items()}


def list_pretrained(architecture: str | None = None) -> list[PretrainedTag]:
    """The registered tags, of one architecture or of all, in the registry's order."""
    return [e for (arch, _), e in _registry().items() if architecture is None or arch == architecture]


def find_pretrained(architecture: str, tag: str) -> PretrainedTag | None:
    """The registered tag, or None (architecture names as `clipworks models` prints them)."""
    return _registry().get((architecture, tag))


# ---- where files are looked for ------------------------------------------------------------------------------

def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $CLIPWORKS_CACHE/pretrained, else ~/.cache/clipworks/pretrained."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("CLIPWORKS_CACHE") or "~/.cache/clipworks").expanduser() / "pretrained"


def cache_path(entry: PretrainedTag, cache_dir: str | os.PathLike | None = None) -> Path:
    """The file clipworks' cache keeps these weights in (the first download source's name until one is there)."""
    folder = cache_root(cache_dir) / entry.architecture / entry.tag
    names = [url.rsplit("/", 1)[-1] for url, _ in entry.sources()]
    return next((folder / n for n in names if (folder / n).is_file()), folder / names[0])


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/...)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME") or "~/.cache/huggingface").expanduser() / "hub"


def _in_hf_cache(repo: str) -> Path | None:
    folder = hf_hub_cache() / f"models--{repo.replace('/', '--')}"
    ref = folder / "refs" / "main"
    if ref.is_file():
        snapshots = [folder / "snapshots" / ref.read_text().strip()]
    else:
        snapshots = sorted((folder / "snapshots").glob("*"))
    return next((s / n for s in snapshots for n in HF_FILES if (s / n).is_file()), None)


def _found(entry: PretrainedTag, cache_dir: str | os.PathLike | None) -> tuple[Path, str] | None:
    """(file, which cache) for the first cache holding these weights, without reading them."""
    ours = cache_path(entry, cache_dir)
    if ours.is_file():
        return ours, "clipworks"
    if entry.hf_hub and (hf := _in_hf_cache(entry.hf_hub)) is not None:
        return hf, "huggingface"
    if entry.url and (clip := Path("~/.cache/clip").expanduser() / entry.url.rsplit("/", 1)[-1]).is_file():
        return clip, "open_clip"
    return None


def cached_file(entry: PretrainedTag, cache_dir: str | os.PathLike | None = None) -> tuple[Path, str] | None:
    """(file, 'clipworks' | 'huggingface' | 'open_clip') where these weights are on disk, or None; not verified."""
    return _found(entry, cache_dir)


# ---- verification --------------------------------------------------------------------------------------------

def _expected_hash(entry: PretrainedTag, path: Path, where: str) -> tuple[str | None, str]:
    """(expected sha256 or None, where that expectation comes from) for a cached file."""
    if entry.url and entry.sha256 and path.name == entry.url.rsplit("/", 1)[-1]:
        return entry.sha256, "published"
    if where == "huggingface":
        blob = path.resolve().name  # the hub stores large files as blobs named by their sha256
        return (blob, "the Hugging Face blob name") if re.fullmatch(r"[0-9a-f]{64}", blob) else (None, "")
    record = path.with_name(path.name + HASH_SUFFIX)
    if where == "clipworks" and record.is_file():
        return record.read_text().split()[0], f"recorded in {record.name}"
    return None, ""


def _record(path: Path, sha256: str) -> None:
    from clipworks.io import atomic_write

    atomic_write(path.with_name(path.name + HASH_SUFFIX),
                 lambda tmp: tmp.write_text(f"{sha256}  {path.name}\n"))


def _verify(entry: PretrainedTag, path: Path, where: str) -> Path:
    from clipworks.io import sha256_file, sha256_matches

    expected, source = _expected_hash(entry, path, where)
    actual = sha256_file(path)
    if expected is None:
        if where == "clipworks":  # a file put there by hand: its hash is recorded now and checked from then on
            _record(path, actual)
        return path
    if not sha256_matches(actual, expected):
        raise CheckpointError(f"{path}: sha256 {actual} does not match {expected} ({source}) for {entry.name}; "
                              "delete the file to download it again")
    return path


def _readable(path: Path, suffix: str) -> None:
    """Raise unless `path` reads as a weights file of the kind `suffix` names (for files with no published hash)."""
    from clipworks.model.checkpoint.reading import read_weights

    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            load(path.read_bytes())
        except (SafetensorError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        read_weights(path)


# ---- resolving a tag ------------------------------------------------------------------------------------------

def download_allowed(download: bool | None = None) -> tuple[bool, str]:
    """(allowed, why not): `download`, else $CLIPWORKS_ALLOW_DOWNLOAD; never while $HF_HUB_OFFLINE is set."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE:
        return False, "HF_HUB_OFFLINE is set, so clipworks does not download"
    if download is None:
        download = os.environ.get("CLIPWORKS_ALLOW_DOWNLOAD", "").lower() in _TRUE
    if not download:
        return False, ("to let clipworks download it, pass download=True (CLI: --download) "
                       "or set CLIPWORKS_ALLOW_DOWNLOAD=1")
    return True, ""


def fetch_pretrained(entry: PretrainedTag, cache_dir: str | os.PathLike | None = None, download: bool | None = None,
                     progress: bool = True) -> Path:
    """A verified local file holding `entry`'s weights: from a cache, else downloaded where allowed."""
    from clipworks.io import download as download_file

    found = _found(entry, cache_dir)
    if found is not None:
        return _verify(entry, *found)
    target = cache_path(entry, cache_dir)
    allowed, why = download_allowed(download)
    if not allowed:
        raise DownloadError(f"{entry.name} is not in the cache ({target}); download it from {entry.sources()[0][0]} "
                            f"or pass the file; {why}")
    for url, sha256 in entry.sources():
        target = target.with_name(url.rsplit("/", 1)[-1])
        suffix = target.suffix
        try:
            actual = download_file(url, target, sha256, progress=progress,
                              check=None if sha256 else (lambda part: _readable(part, suffix)))
        except DownloadError as exc:
            if exc.status == 404 and url != entry.sources()[-1][0]:
                continue  # the repo has the other file name
            raise
        _record(target, actual)
        return target
    raise AssertionError("unreachable: the last source raises")

