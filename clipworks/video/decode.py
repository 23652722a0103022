"""Reading and writing videos: T frames sampled uniformly (or at a frame rate) from a video file through PyAV
(FFmpeg), or from a folder of frame images; decoded once and cached. Bad files raise InputFileError naming them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clipworks.cache import cached
from clipworks.errors import InputFileError, require_extra

if TYPE_CHECKING:
    from PIL import Image

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ogv", ".gif")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Encoder per container when writing; all ship inside PyAV's wheel.
ENCODERS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9",
            ".avi": "mpeg4"}


@dataclass
class Video:
    """Sampled frames [T, H, W, 3] uint8 (padded with zeros past `mask`), which are real, and the source's facts."""

    frames: np.ndarray
    mask: np.ndarray  # bool [T]
    path: str
    source_frames: int  # frames in the file (or images in the folder)
    fps: float | None
    indices: np.ndarray | None = None  # int64: each real frame's number in the source

    def seconds(self) -> np.ndarray:
        """Each real frame's time in the source (NaN where the frame rate is unknown: a folder without one)."""
        return np.asarray(self.indices, dtype=np.float64) / self.fps if self.fps else np.full(len(self.indices), np.nan)


def is_video(path: str | os.PathLike) -> bool:
    """A video file by extension, or a folder holding frame images."""
    p = Path(path)
    if p.is_dir():
        return bool(frame_files(p))
    return p.suffix.lower() in VIDEO_EXTENSIONS


def sample_indices(total: int, num_frames: int | None, source_fps: float | None = None,
                   fps: float | None = None) -> list[int]:
    """Which of `total` frames to keep: with `fps`, one every 1/fps seconds (CLIP4Clip samples 1 fps), then, if
    more than `num_frames`, `num_frames` of those spread uniformly; without, `num_frames` uniform over the whole
    video (each the centre of an equal segment, as TSN samples at test time). Fewer frames than asked stay fewer."""
    if total <= 0:
        return []
    candidates = list(range(total))
    if fps is not None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not source_fps:
            raise InputFileError("sampling at a frame rate needs the source's frame rate (unknown for this input)")
        step = source_fps / fps
        candidates = sorted({min(total - 1, int(round(i * step))) for i in range(int(np.ceil(total / step)))})
    if num_frames is None or len(candidates) <= num_frames:
        return candidates
    positions = (np.arange(num_frames) + 0.5) * len(candidates) / num_frames
    return [candidates[int(p)] for p in positions]


def _stack(frames: list[np.ndarray], num_frames: int | None, path: str, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    if size is not None:
        from PIL import Image

        frames = [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BICUBIC)) for f in frames]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise InputFileError(f"{path}: frames of different sizes {sorted(shapes)[:2]}; pass a resize")
    stack = np.stack(frames)
    t = len(frames) if num_frames is None else num_frames
    out = np.zeros((t, *stack.shape[1:]), np.uint8)
    out[: len(stack)] = stack
    mask = np.zeros(t, bool)
    mask[: len(stack)] = True
    return out, mask


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def frame_files(folder: Path) -> list[Path]:
    """The frame images in a frame folder, in natural order (frame2 before frame10); hidden files are not frames."""
    from clipworks.data.folders import list_files

    return sorted(list_files(folder, FRAME_EXTENSIONS, recursive=False), key=lambda f: _natural_key(f.name))


def _read_folder(path: Path, num_frames: int | None, fps: float | None, folder_fps: float | None,
                 size: tuple[int, int] | None) -> Video:
    from clipworks.model.transforms import decode_image

    files = frame_files(path)
    if not files:
        raise InputFileError(f"{path}: a folder without frame images ({', '.join(FRAME_EXTENSIONS)})")
    try:
        keep = sample_indices(len(files), num_frames, folder_fps, fps)
    except InputFileError:
        raise InputFileError(f"{path}: a frame folder has no frame rate; pass folder_fps to sample at {fps} fps") from None
    frames = [np.asarray(decode_image(files[i], str(files[i]))) for i in keep]
    padded, mask = _stack(frames, num_frames, str(path), size)
    return Video(padded, mask, str(path), len(files), folder_fps, np.asarray(keep, dtype=np.int64))


def _read_file(path: Path, num_frames: int | None, fps: float | None, size: tuple[int, int] | None) -> Video:
    name = str(path)
    require_extra("video", f"{name}: reading a video file")
    import av

    if not path.is_file():
        raise InputFileError(f"{name}: no such video file")
    if path.stat().st_size == 0:
        raise InputFileError(f"{name}: empty file (0 bytes), not a video")
    try:
        with av.open(name) as container:
            if not container.streams.video:
                raise InputFileError(f"{name}: no video stream")
            stream = container.streams.video[0]
            source_fps = float(stream.average_rate) if stream.average_rate else None
            announced = stream.frames
            if not announced and container.duration and source_fps:
                announced = round(container.duration / av.time_base * source_fps)
            total = sum(1 for packet in container.demux(stream) if packet.size)
        if announced and total < 0.9 * announced:
            raise InputFileError(f"{name}: truncated: {total} of the {announced} frames its header announces are there")
        keep = set(sample_indices(total, num_frames, source_fps, fps))
        frames = []
        with av.open(name) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in keep:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if i >= max(keep, default=-1):
                    break
    except InputFileError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputFileError(f"{name}: not a readable video ({type(exc).__name__}: {exc})") from None
    if not frames:
        raise InputFileError(f"{name}: no decodable frames (truncated or corrupt)")
    if len(frames) < len(keep):
        raise InputFileError(f"{name}: corrupt: {len(frames)} of the {len(keep)} sampled frames decode")
    padded, mask = _stack(frames, num_frames, name, size)
    return Video(padded, mask, name, total, source_fps, np.asarray(sorted(keep), dtype=np.int64))


def read_video(path: str | os.PathLike, num_frames: int | None = 8, fps: float | None = None,
               size: tuple[int, int] | None = None, cache_dir: str | os.PathLike | None = None,
               folder_fps: float | None = None) -> Video:
    """Sample `num_frames` frames (None: all) of a video file or frame folder, resized to `size` (W, H) if given.
    With `cache_dir`, decoded frames are kept there, keyed by the file's path, size, mtime and the sampling, so
    each video is decoded once."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputFileError(f"{p}: no such file or folder")
    def decode() -> dict:
        video = _read_folder(p, num_frames, fps, folder_fps, size) if p.is_dir() else _read_file(p, num_frames, fps, size)
        return {"frames": video.frames, "mask": video.mask, "source_frames": video.source_frames, "fps": video.fps,
                "indices": video.indices}

    stat = p.stat()
    key = {"path": str(p.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "num_frames": num_frames,
           "fps": fps, "size": size, "folder_fps": folder_fps, "recipe": 2}  # 2: with the frames' indices
    z = cached(cache_dir, "frames", key, decode)
    return Video(z["frames"], z["mask"], str(p), int(z["source_frames"]), z["fps"], z["indices"])


def poster_frame(path: str | os.PathLike) -> Image.Image:
    """A still for a video's thumbnail: its middle frame (the first is often black or a fade-in), as a PIL image.
    Raises InputFileError, naming the file, for one that does not decode."""
    from PIL import Image

    return Image.fromarray(read_video(path, num_frames=1).frames[0])


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Write frames [T, H, W, 3] uint8 to a video file; the container and codec follow the extension
    (.mp4/.mov/.mkv: H.264, .webm: VP9, .avi: MPEG-4 Part 2, .gif: PIL). H and W must be even except for GIF."""
    out = Path(path)
    ext = out.suffix.lower()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(out, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return out
    if ext not in ENCODERS:
        raise ValueError(f"{out}: cannot write {ext or 'no extension'}; use one of {', '.join([*ENCODERS, '.gif'])}")
    require_extra("video", f"{out}: writing {ext}")
    import av
    from fractions import Fraction

    with av.open(str(out), "w") as container:
        stream = container.add_stream(ENCODERS[ext], rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if ENCODERS[ext] == "libx264":
            stream.options = {"crf": "12"}  # near-lossless at these tiny sizes
        elif ENCODERS[ext] == "mpeg4":
            stream.options = {"qscale": "2"}
        elif ENCODERS[ext] == "libvpx-vp9":
            stream.options = {"crf": "10", "b": "0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out
