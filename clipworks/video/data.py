"""Video data for training and evaluation: clips of the generated video world, or a folder of videos with
captions (a same-name .txt) and labels (the parent folder's name), turned once into the frozen trunk's features.
Unreadable videos are skipped and counted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from clipworks.cache import cached, weights_hash
from clipworks.errors import InputFileError
from clipworks.video.decode import VIDEO_EXTENSIONS, frame_files, read_video


@dataclass
class VideoTensors:
    """N clips as trunk features [N, T, ...] (float16), frame mask [N, T], captions and labels per clip."""

    trunk: torch.Tensor
    mask: torch.Tensor
    captions: list[list[str]]
    labels: list[str]
    keys: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)  # clips of one group share their objects (the world's); else one each

    def __post_init__(self) -> None:
        if not self.groups:
            self.groups = list(range(len(self.keys)))

    def __len__(self) -> int:
        return len(self.keys)


def trunk_features(model, frames: np.ndarray, batch_clips: int = 32) -> torch.Tensor:
    """Frames [N, T, H, W, 3] uint8 -> the model's frozen trunk features [N, T, ...] in float16."""
    from clipworks.video.model import preprocess_frames

    out = []
    for start in range(0, len(frames), batch_clips):
        x = preprocess_frames(model, frames[start:start + batch_clips])
        out.append(model.trunk(x).half().cpu())
    return torch.cat(out)


def world_tensors(model, size: int, seed: int = 0, split: str = "train", cache_dir: Path | None = None,
                  progress: bool = True, chunk: int = 64, group: int = 4, styles: str | Sequence[str] = "classic"
                  ) -> VideoTensors:
    """`size` clips of the generated video world (see `clipworks.video.world`; `styles` as its) through the
    model's trunk; cached in `cache_dir` by the image tower's weights, the preprocessing, sampling and world
    parameters."""
    from tqdm import tqdm

    from clipworks.video.world import VideoWorld, style_name

    t = model.config.num_frames
    image_size = model.clip.config.vision.image_size

    def build() -> dict:
        world = VideoWorld(size, seed, split, t, image_size, group=group, styles=styles)
        trunks, captions, labels, keys, groups = [], [], [], [], []
        desc = f"video world {split}" + ("" if styles == "classic" else f", {style_name(styles)} styles")
        for start in tqdm(range(0, size, chunk), desc=desc, unit="chunk", disable=not progress):
            samples = [world[i] for i in range(start, min(size, start + chunk))]
            trunks.append(trunk_features(model, np.stack([s.frames for s in samples])))
            captions += [s.captions for s in samples]
            labels += [s.label for s in samples]
            keys += [s.key for s in samples]
            groups += [s.group for s in samples]
        trunk = torch.cat(trunks).numpy()
        return {"trunk": trunk, "mask": np.ones(trunk.shape[:2], dtype=bool), "captions": captions, "labels": labels,
                "keys": keys, "groups": groups}

    key = {"weights": weights_hash(model.clip.image_tower), "preprocess": asdict(model.clip.config.preprocess),
           "size": size, "seed": seed, "split": split, "num_frames": t, "group": group, "image_size": image_size,
           "styles": style_name(styles)}
    z = cached(cache_dir, "video-world", key, build)
    return VideoTensors(torch.from_numpy(z["trunk"]), torch.from_numpy(z["mask"]), z["captions"], z["labels"],
                        z["keys"], [], z["groups"])


def list_videos(root: str | Path) -> list[Path]:
    """Video files and frame folders under `root`, recursively, in sorted order; hidden ones are skipped."""
    from clipworks.data.folders import walk

    root = Path(root).expanduser()
    if not root.exists():
        raise InputFileError(f"{root}: no such folder")
    if root.is_file():
        return [root]
    found = []
    for folder, dirnames, filenames in walk(root):
        found += [Path(folder, f) for f in filenames if f.lower().endswith(VIDEO_EXTENSIONS)]
        found += [Path(folder, d) for d in dirnames if frame_files(Path(folder, d))]
    return sorted(found)


def caption_file(path: Path) -> Path:
    """Where a video's captions are: its same-name .txt (a frame folder's: <folder>.txt beside it)."""
    return path.with_suffix(".txt") if path.is_file() else path.parent / f"{path.name}.txt"


def captions_of(path: Path) -> list[str]:
    """The captions in a video's `caption_file`, one a line; none if absent or empty."""
    from clipworks.data.captions import read_caption_file

    side = caption_file(path)
    try:
        return read_caption_file(side) if side.is_file() else []
    except InputFileError:
        return []


def folder_tensors(model, root: str | Path, cache_dir: Path | None = None, progress: bool = True) -> VideoTensors:
    """Every readable video under `root`: captions from a same-name .txt (one a line), label from the parent
    folder (the UCF101 / Kinetics layout); decoded frames cached in `cache_dir`. Bad videos are skipped and listed."""
    from tqdm import tqdm

    videos = list_videos(root)
    if not videos:
        raise InputFileError(f"{root}: no videos ({', '.join(VIDEO_EXTENSIONS)}) or frame folders")
    size = model.clip.config.vision.image_size
    frames, masks, captions, labels, keys, skipped = [], [], [], [], [], []
    for path in tqdm(videos, desc="decoding", unit="video", disable=not progress):
        try:
            video = read_video(path, model.config.num_frames, size=(size, size),
                               cache_dir=None if cache_dir is None else Path(cache_dir) / "frames")
        except InputFileError as exc:
            skipped.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        frames.append(video.frames)
        masks.append(torch.from_numpy(video.mask))
        captions.append(captions_of(path))
        labels.append(path.parent.name)
        keys.append(str(path))
    if not frames:
        raise InputFileError(f"{root}: none of the {len(videos)} videos could be read (first: {skipped[0][0]}: {skipped[0][1]})")
    trunk = trunk_features(model, np.stack(frames))
    return VideoTensors(trunk, torch.stack(masks), captions, labels, keys, skipped)
