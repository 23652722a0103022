"""A generated video world: short clips of the image world's shapes acting (moving, growing, turning, changing
colour, appearing, bouncing), with captions and action labels, held-out actions for zero-shot, and a writer that
saves clips as real video files so the decoding path is exercised.

Clip i is a pure function of (seed, split, i). Its label is the main (first) object's action; a second object,
when there is one, acts too or stays still, and the caption names both. `styles` draws each clip in one of the
image world's styles (`clipworks.data.styles`), the same in every frame, over one backdrop; "classic" is the
first look (flat shapes on muted backdrops), rendered exactly as before.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch.utils.data

from clipworks.data import styles as style_lib
from clipworks.data import world as image_world
from clipworks.data.world import SceneObject

ACTIONS = ("moves left", "moves right", "moves up", "moves down", "grows", "shrinks", "rotates", "changes colour",
           "appears", "disappears", "bounces")
# Never done by any object in the "train" split; each one's opposite is seen, so zero-shot asks for composition.
HELDOUT_ACTIONS = ("moves up", "shrinks", "disappears")
TRAIN_ACTIONS = tuple(a for a in ACTIONS if a not in HELDOUT_ACTIONS)
STILL = "stays still"
SPLITS = ("train", "heldout", "all")

PHRASES: dict[str, tuple[str, ...]] = {
    "moves left": ("moves to the left", "moves left", "slides to the left", "goes left"),
    "moves right": ("moves to the right", "moves right", "slides to the right", "goes right"),
    "moves up": ("moves up", "moves upwards", "slides up", "goes up"),
    "moves down": ("moves down", "moves downwards", "slides down", "goes down"),
    "grows": ("grows", "gets bigger", "expands", "becomes larger"),
    "shrinks": ("shrinks", "gets smaller", "contracts", "becomes smaller"),
    "rotates": ("rotates", "spins", "turns around", "rotates in place"),
    "changes colour": ("turns {to}", "changes colour to {to}", "changes from {frm} to {to}", "becomes {to}"),
    "appears": ("appears", "fades in", "comes into view", "shows up"),
    "disappears": ("disappears", "fades out", "vanishes", "goes out of view"),
    "bounces": ("bounces", "bounces up and down", "hops", "jumps up and down"),
    STILL: ("stays still", "does not move", "stays where it is"),
}
# ActionCLIP-style prompts for an action label ("{}" is the label's first phrase).
ACTION_TEMPLATES = ("a shape {}", "an object {}", "a video of a shape that {}", "something {}", "a clip where a shape {}",
                    "look, the shape {}", "the object {}", "{}")


@dataclass
class Track:
    """One object's state over the clip's T frames."""

    shape: str
    action: str
    x: list[float]
    y: list[float]
    radius: list[float]
    rotation: list[float]
    colour: list[str]
    opacity: list[float]
    size: str = "medium"
    warp: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # the outline's warp (styled clips), fixed
    ink: tuple[int, int, int] | None = None  # the drawn colour where it is not the named one (silhouettes)

    @property
    def start_colour(self) -> str:
        return self.colour[0]

    @property
    def end_colour(self) -> str:
        return self.colour[-1]


@dataclass
class Clip:
    """A clip's objects (the first is the main one, whose action is the label), background, noise seed and
    style (None: the classic look), with the render scale of styled clips."""

    tracks: list[Track]
    background: image_world.Background
    seed: int
    captions: list[str] = field(default_factory=list)
    style: str | None = None
    render_scale: float = 1.0

    @property
    def label(self) -> str:
        return self.tracks[0].action

    def facts(self) -> dict:
        facts = {"label": self.label,
                 "objects": [{"shape": t.shape, "colour": t.start_colour, "end_colour": t.end_colour, "action": t.action}
                             for t in self.tracks],
                 "background": self.background.kind}
        if self.style is not None:  # classic clips' facts stay as they were
            facts["style"] = self.style
        return facts

    def frame_scene(self, t: int) -> tuple[image_world.Scene, list[float]]:
        objects = [SceneObject(tr.shape, tr.colour[t], tr.size, tr.x[t], tr.y[t], tr.radius[t], tr.rotation[t], tr.warp)
                   for tr in self.tracks]
        opacity = [tr.opacity[t] for tr in self.tracks]
        if self.style is None:
            return image_world.Scene(objects, self.background, self.seed), opacity
        inks = [tr.ink or image_world.COLOURS[tr.colour[t]] for tr in self.tracks]
        return image_world.Scene(objects, self.background, self.seed, self.style, self.render_scale, inks), opacity


def _ramp(num_frames: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, num_frames)


def _track(rng: random.Random, shape: str, colour: str, action: str, num_frames: int, pairs: tuple) -> Track:
    """Per-frame state for `action`, kept inside the frame."""
    t = _ramp(num_frames)
    r0 = rng.uniform(0.11, 0.15)
    radius = np.full(num_frames, r0)
    rotation = np.full(num_frames, 0.0 if shape == "circle" else rng.uniform(-20, 20))
    colours = [colour] * num_frames
    opacity = np.ones(num_frames)
    lo, hi = r0 + 0.03, 1 - r0 - 0.03
    x = np.full(num_frames, rng.uniform(lo, hi))
    y = np.full(num_frames, rng.uniform(lo, hi))
    if action in ("moves left", "moves right", "moves up", "moves down"):
        dist = rng.uniform(0.3, min(0.5, hi - lo))
        start = rng.uniform(lo, hi - dist)
        path = start + dist * t
        if action in ("moves left", "moves up"):
            path = path[::-1]
        if action in ("moves left", "moves right"):
            x = path
        else:
            y = path
    elif action in ("grows", "shrinks"):
        small, big = rng.uniform(0.07, 0.09), rng.uniform(0.19, 0.23)
        radius = small * (big / small) ** t
        if action == "shrinks":
            radius = radius[::-1]
        x = np.full(num_frames, rng.uniform(big + 0.02, 1 - big - 0.02))
        y = np.full(num_frames, rng.uniform(big + 0.02, 1 - big - 0.02))
    elif action == "rotates":
        rotation = rotation[0] + rng.choice((-1, 1)) * rng.uniform(90, 150) * t
    elif action == "changes colour":
        options = [c for c, s in pairs if s == shape and c != colour]
        new = rng.choice(options)
        switch = rng.randint(num_frames // 3, (2 * num_frames) // 3)
        colours = [colour] * switch + [new] * (num_frames - switch)
    elif action in ("appears", "disappears"):
        start = rng.randint(1, max(1, num_frames // 2 - 1))
        opacity = np.clip((np.arange(num_frames) - start + 1) / 2.0, 0.0, 1.0)
        if action == "disappears":
            opacity = opacity[::-1]
    elif action == "bounces":
        height = rng.uniform(0.22, 0.32)
        base = rng.uniform(lo + height, hi)
        y = base - height * np.abs(np.sin(2 * math.pi * t))
    return Track(shape, action, x.tolist(), y.tolist(), radius.tolist(), rotation.tolist(), colours, opacity.tolist())


def _apart(a: Track, b: Track) -> bool:
    return all(math.hypot(a.x[i] - b.x[i], a.y[i] - b.y[i]) >= 1.05 * (a.radius[i] + b.radius[i]) for i in range(len(a.x)))


def _allowed(shape: str, actions: tuple[str, ...], colour: bool = True) -> list[str]:
    """The actions a shape can visibly do: a turning circle looks still, and a colour change is unseen in a
    colourless style (silhouettes)."""
    return [a for a in actions if not (a == "rotates" and shape == "circle") and (colour or a != "changes colour")]


def sample_group(rng: random.Random, split: str = "train", num_frames: int = 8, n_objects: tuple[int, int] = (1, 2),
                 size: int = 1, styles: str | Sequence[str] = "classic") -> list[Clip]:
    """`size` clips with the same objects, background, style and second object's action, whose main objects do
    different actions: in a batch of whole groups, telling captions apart needs the actions, not only the
    objects. "train": seen actions and colour-shape pairs only; "heldout": the main object does a held-out action
    (the rest as in train); "all": anything. `styles`: "classic" or a style set or names, as the image world's."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    classic = styles == "classic"
    style = None if classic else rng.choice(drawn_styles(styles))  # drawn first: classic draws stay put
    colour = style not in style_lib.COLOURLESS_STYLES
    pairs = image_world.ALL_PAIRS if split == "all" else image_world.TRAIN_PAIRS
    main_actions = {"train": TRAIN_ACTIONS, "heldout": HELDOUT_ACTIONS, "all": ACTIONS}[split]
    other_actions = ACTIONS if split == "all" else TRAIN_ACTIONS
    identity = [rng.choice(pairs) for _ in range(rng.randint(*n_objects))]
    choices = _allowed(identity[0][1], main_actions, colour)
    actions = rng.sample(choices, min(size, len(choices)))
    actions += [rng.choice(choices) for _ in range(size - len(actions))]
    other = rng.choice(_allowed(identity[1][1], (*other_actions, STILL, STILL), colour)) if len(identity) > 1 else None
    if classic:
        background, seed = image_world._sample_background(rng), rng.getrandbits(32)
    groups, clips = [], []
    for action in actions:
        tracks = [_track(rng, identity[0][1], identity[0][0], action, num_frames, pairs)]
        for _ in range(30 if other else 0):
            track = _track(rng, identity[1][1], identity[1][0], other, num_frames, pairs)
            if _apart(track, tracks[0]):
                tracks.append(track)
                break
        groups.append(tracks)
        if classic:  # captioned as each clip is made, as the classic world always was
            clips.append(Clip(tracks, background, seed))
            clips[-1].captions = clip_captions(clips[-1], rng)
    if not classic:  # the backdrop comes after every clip's colours are known
        clips = _styled(rng, groups, style)
        for clip in clips:
            clip.captions = clip_captions(clip, rng)
    return clips


def _styled(rng: random.Random, groups: list[list[Track]], style: str) -> list[Clip]:
    """Clips of `style` for the tracks of a group: each object keeps one warp (and silhouette ink) in every clip,
    and the one backdrop keeps contrast with every colour any of them takes (colour changes included)."""
    warps = [(math.exp(rng.uniform(-0.15, 0.15)), rng.uniform(-0.15, 0.15), rng.uniform(-0.12, 0.12),
              rng.uniform(-0.12, 0.12)) for _ in range(max(len(tracks) for tracks in groups))]
    inks = {}
    for tracks in groups:
        for k, track in enumerate(tracks):
            track.warp = warps[k]
            if style in style_lib.COLOURLESS_STYLES:
                track.ink = inks.setdefault(k, style_lib.ink(style, image_world.COLOURS[track.start_colour], rng))
    drawn = {track.ink or image_world.COLOURS[c] for tracks in groups for track in tracks for c in track.colour}
    background = style_lib.sample_background(rng, sorted(drawn))
    scale = rng.choice((0.75, 1.0, 1.0, 1.5))
    seed = rng.getrandbits(32)
    return [Clip(tracks, background, seed, style=style, render_scale=scale) for tracks in groups]


def sample_clip(rng: random.Random, split: str = "train", num_frames: int = 8, n_objects: tuple[int, int] = (1, 2),
                styles: str | Sequence[str] = "classic") -> Clip:
    """One random clip (see `sample_group`)."""
    return sample_group(rng, split, num_frames, n_objects, styles=styles)[0]


def _phrase(track: Track, rng: random.Random) -> str:
    return rng.choice(PHRASES[track.action]).format(frm=track.start_colour, to=track.end_colour)


def _who(track: Track, colour: bool = True) -> str:
    return image_world._a(f"{track.start_colour} {track.shape}" if colour else track.shape)


def clip_captions(clip: Clip, rng: random.Random) -> list[str]:
    """4 captions: full names with every action, then variants that drop colour or the second object. A
    colourless style's captions name no colour, as the image world's do."""
    main = clip.tracks[0]
    shown = clip.style not in style_lib.COLOURLESS_STYLES
    out = [f"{_who(main, shown)} {_phrase(main, rng)}"]
    if len(clip.tracks) > 1:
        other = clip.tracks[1]
        joiner = rng.choice((" while ", " and ", ", as "))
        out[0] += f"{joiner}{_who(other, shown)} {_phrase(other, rng)}"
        out.append(f"{_who(other, shown)} {_phrase(other, rng)} while {_who(main, shown)} {_phrase(main, rng)}")
    else:
        out.append(f"{_who(main, shown)} {_phrase(main, rng)} on a {image_world.BACKGROUND_WORDS[clip.background.kind]} background")
    out.append(f"{_who(main, colour=False)} {_phrase(main, rng)}")
    out.append(f"{_who(main, shown)} {_phrase(main, rng)}")
    return out


def render_clip(clip: Clip, image_size: int = 64) -> np.ndarray:
    """Frames [T, H, W, 3] uint8."""
    frames = []
    for t in range(len(clip.tracks[0].x)):
        scene, opacity = clip.frame_scene(t)
        frames.append(np.asarray(image_world.render(scene, image_size, opacity=opacity)))
    return np.stack(frames)


@dataclass
class VideoSample:
    """A clip's frames [T, H, W, 3] uint8, captions, action label and facts."""

    frames: np.ndarray
    captions: list[str]
    label: str
    key: str
    facts: dict
    group: int = 0


class VideoWorld(torch.utils.data.Dataset):
    """`size` generated clips in groups of `group` consecutive items that share their objects and style and
    differ in the main object's action (see `sample_group`); item i depends only on (seed, split, group,
    styles, i). `styles`: "classic" (the first look), a style set ("train", "heldout", "all") or style names
    (a tuple, or joined by '+')."""

    def __init__(self, size: int, seed: int = 0, split: str = "train", num_frames: int = 8, image_size: int = 64,
                 n_objects: tuple[int, int] = (1, 2), group: int = 4, styles: str | Sequence[str] = "classic") -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        if group < 1:
            raise ValueError(f"group must be at least 1; got {group}")
        self.size, self.seed, self.split, self.group = size, seed, split, group
        self.num_frames, self.image_size, self.n_objects = num_frames, image_size, tuple(n_objects)
        self.styles = style_spec(styles)

    def __len__(self) -> int:
        return self.size

    def clip(self, i: int) -> Clip:
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} is outside the video world of {self.size} clips")
        group, member = divmod(i, self.group)
        rng = random.Random(image_world.item_seed(self.seed + 7919 * self.group, self.split, group))
        return sample_group(rng, self.split, self.num_frames, self.n_objects, self.group, self.styles)[member]

    def __getitem__(self, i: int) -> VideoSample:
        clip = self.clip(i)
        styles = "" if self.styles == "classic" else f"{style_name(self.styles)}/"
        return VideoSample(render_clip(clip, self.image_size), clip.captions, clip.label,
                           f"video-world/{self.split}/{styles}{self.seed}/{i}", clip.facts(), i // self.group)


def style_spec(styles: str | Sequence[str]) -> str | tuple[str, ...]:
    """A style set's name, or a tuple of style names ("sketch+mosaic" is split); unknown names are an error."""
    if isinstance(styles, str) and "+" in styles:
        styles = tuple(styles.split("+"))
    drawn_styles(styles)
    return styles if isinstance(styles, str) else tuple(styles)


def drawn_styles(styles: str | Sequence[str]) -> tuple[str, ...]:
    """The style names a style set or list draws from ("classic": its flat look)."""
    return image_world._style_set(styles)


def style_name(styles: str | Sequence[str]) -> str:
    """The form of `style_spec` that a command line, a cache key or a clip key writes: "train", "sketch+mosaic"."""
    return styles if isinstance(styles, str) else "+".join(styles)


def write_video_world(out_dir: str | Path, size: int, seed: int = 0, split: str = "train", fmt: str = "mp4",
                      num_frames: int = 16, image_size: int = 64, fps: float = 8.0,
                      styles: str | Sequence[str] = "classic") -> Path:
    """Write clips as real video files: videos/NNNNNN.<fmt>, a same-name .txt (captions, one a line) and
    clips.jsonl (captions, label, facts); returns out_dir."""
    from tqdm import tqdm

    from clipworks.video.decode import write_video

    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(size - 1)))
    data = VideoWorld(size, seed, split, num_frames, image_size, group=1, styles=styles)
    with open(out / "clips.jsonl", "w", encoding="utf-8") as f:
        for i in tqdm(range(size), desc=f"video world {split}", unit="clip"):
            sample = data[i]
            stem = f"{i:0{width}d}"
            path = write_video(out / "videos" / f"{stem}.{fmt.lstrip('.')}", sample.frames, fps=fps)
            path.with_suffix(".txt").write_text("\n".join(sample.captions) + "\n", encoding="utf-8")
            f.write(json.dumps({"video": f"videos/{path.name}", "captions": sample.captions, "label": sample.label,
                                "facts": sample.facts}) + "\n")
    return out


def save_preview(path: str | Path, clips: int = 6, seed: int = 0, split: str = "train", num_frames: int = 8,
                 styles: str | Sequence[str] = "classic") -> Path:
    """A figure: one row of frames per clip, titled with its label, style (if any) and first caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = VideoWorld(clips, seed, split, num_frames, group=1, styles=styles)
    fig, axes = plt.subplots(clips, num_frames, figsize=(1.2 * num_frames, 1.5 * clips), squeeze=False)
    for i in range(clips):
        sample = data[i]
        for t in range(num_frames):
            ax = axes[i, t]
            ax.imshow(sample.frames[t])
            ax.axis("off")
        style = f"{sample.facts['style']}, " if "style" in sample.facts else ""
        axes[i, 0].set_title(f"[{style}{sample.label}] {sample.captions[0]}", fontsize=8, loc="left", x=0.0)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95, wspace=0.04, hspace=0.35)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the generated video world to video files, or a preview.")
    parser.add_argument("--out", help="output folder for video files")
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", default="mp4", help="mp4, webm, avi, mkv, mov or gif")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--preview", help="write a figure of a few clips to this PNG")
    parser.add_argument("--styles", default="classic",
                        help="classic, train, heldout, all, or style names joined by '+' (e.g. sketch+mosaic)")
    parser.add_argument("--clips", type=int, default=6, help="rows of the preview")
    args = parser.parse_args(argv)
    if args.preview:
        print(save_preview(args.preview, args.clips, seed=args.seed, split=args.split, styles=args.styles))
    if args.out:
        print(write_video_world(args.out, args.size, args.seed, args.split, args.format, args.frames,
                                styles=args.styles))


if __name__ == "__main__":
    main()

