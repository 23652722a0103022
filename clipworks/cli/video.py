"""`clipworks video ...`: the generated video world, training (CLIP4Clip similarity calculators, ActionCLIP),
evaluation, text->video search over a folder, and classifying one video against labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipworks.cli.common import add_device_arg, non_empty, positive_int
from clipworks.errors import InputFileError

USAGE = """clipworks video world --out DIR [--size N] [--format mp4|webm|avi|mkv|mov|gif] [--preview PNG]
clipworks video train --out RUN --method meanP|seqTransf|tightTransf|actionclip [--data world|FOLDER]
clipworks video eval --model RUN/model|default [--data world|FOLDER]
clipworks video index FOLDER --store DIR [--model default|RUN/model]
clipworks video search "a star moves to the left" --store DIR [-k 10]
clipworks video classify VIDEO --labels "moves left" "grows" ... [--model RUN/model|default]"""


def register(sub: argparse._SubParsersAction) -> None:
    from clipworks.video.config import TRAIN_METHODS
    from clipworks.video.config import VideoTrainConfig as D

    p = sub.add_parser("video", help="video: CLIP4Clip retrieval, ActionCLIP recognition, video search",
                       description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("world", "train", "eval", "index", "search", "classify"))
    p.add_argument("args", nargs="*", help="index: FOLDER...; search: TEXT; classify: VIDEO")
    p.add_argument("--model", default="default",
                   help="a trained video model directory, or a CLIP model (name or path) used as meanP zero-shot")
    add_device_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    w = p.add_argument_group("world")
    w.add_argument("--size", type=int, help="world: clips to write; eval: clips to test on (default 1000)")
    w.add_argument("--format", default="mp4", help="world: video container (mp4, webm, avi, mkv, mov, gif)")
    w.add_argument("--split", default=None, choices=("train", "heldout", "all"),
                   help="world/eval: train = seen actions, heldout = the held-out actions")
    w.add_argument("--preview", help="world: also save a figure of a few clips")
    t = p.add_argument_group("train")
    t.add_argument("--out", help="train: run directory; world: output folder")
    t.add_argument("--method", default=D.method, choices=TRAIN_METHODS)
    t.add_argument("--fusion", default=D.fusion, choices=("meanP", "seqTransf"), help="actionclip: temporal fusion")
    t.add_argument("--loss", default=D.loss, choices=("auto", "kl", "infonce"),
                   help="auto: KL multi-positive for actionclip, InfoNCE for CLIP4Clip")
    t.add_argument("--data", default=D.data, help="'world' or a folder of videos (captions in same-name .txt; "
                                                 "labels = parent folder names)")
    t.add_argument("--train-size", type=int, default=D.train_size, help="world clips to train on")
    t.add_argument("--clip-model", default=D.clip_model)
    t.add_argument("--frames", type=int, default=D.num_frames, help="frames sampled per video")
    t.add_argument("--steps", type=int, default=D.steps)
    t.add_argument("--batch-size", type=int, default=D.batch_size)
    t.add_argument("--lr-clip", type=float, default=D.lr_clip, help="learning rate of CLIP's trained weights")
    t.add_argument("--lr-new", type=float, default=D.lr_new, help="learning rate of the new layers")
    t.add_argument("--resume", action="store_true")
    s = p.add_argument_group("index / search / classify")
    s.add_argument("--store", help="index/search: store directory")
    s.add_argument("-k", type=positive_int, default=10)
    s.add_argument("--labels", nargs="+", type=non_empty, help="classify: the candidate labels")
    s.add_argument("--templates", nargs="+", help="classify: prompt templates with {} (default: the model's)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return {"world": _world, "train": _train, "eval": _eval, "index": _index, "search": _search,
            "classify": _classify}[args.action](args)


def _world(args: argparse.Namespace) -> int:
    from clipworks.video.world import save_preview, write_video_world

    if not args.out and not args.preview:
        raise InputFileError("video world: give --out DIR and/or --preview PNG")
    if args.preview:
        print(save_preview(args.preview, split=args.split or "train"))
    if args.out:
        print(write_video_world(args.out, args.size or 100, split=args.split or "train", fmt=args.format))
    return 0


def _train(args: argparse.Namespace) -> int:
    from clipworks.video.config import VideoTrainConfig
    from clipworks.video.train import train_video

    if not args.out:
        raise InputFileError("video train: --out DIR is required")
    cfg = VideoTrainConfig(out=args.out, method=args.method, fusion=args.fusion, loss=args.loss, data=args.data,
                           train_size=args.train_size, clip_model=args.clip_model, num_frames=args.frames,
                           steps=args.steps, batch_size=args.batch_size, lr_clip=args.lr_clip, lr_new=args.lr_new)
    print(json.dumps(train_video(cfg, resume=args.resume), indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from clipworks.video.data import folder_tensors, world_tensors
    from clipworks.video.evaluate import action_accuracy, video_retrieval
    from clipworks.video.model import video_model
    from clipworks.video.world import ACTION_TEMPLATES, ACTIONS, HELDOUT_ACTIONS, TRAIN_ACTIONS

    model = video_model(args.model, device=args.device)
    templates = model.config.templates or ACTION_TEMPLATES
    result: dict = {"model": args.model, "method": model.config.method}
    if args.data == "world":
        split = args.split or "train"
        data = world_tensors(model, args.size or 1000, seed=1, split=split, group=3 if split == "heldout" else 4)
        labels = {"train": TRAIN_ACTIONS, "heldout": HELDOUT_ACTIONS, "all": ACTIONS}[split]
        result["actions"] = action_accuracy(model, data, labels, templates)
    else:
        data = folder_tensors(model, args.data)
        result["skipped"] = data.skipped
        labels = sorted(set(data.labels))
        if len(labels) > 1:
            result["actions"] = action_accuracy(model, data, labels, templates)
    if all(data.captions):
        result["retrieval"] = video_retrieval(model, data)
    print(json.dumps(result, indent=2))
    return 0


def _index(args: argparse.Namespace) -> int:
    from clipworks.video.index import index_videos

    if not args.args or not args.store:
        raise InputFileError("video index: give FOLDER... and --store DIR")
    print(index_videos(args.args, args.store, model=args.model, device=args.device).summary())
    return 0


def _search(args: argparse.Namespace) -> int:
    from clipworks.video.index import search_videos

    if len(args.args) != 1 or not args.store:
        raise InputFileError('video search: give one "TEXT" query and --store DIR')
    hits = search_videos(args.store, args.args[0], k=args.k, device=args.device)
    if args.json:
        print(json.dumps([h.to_json() for h in hits], indent=2))
    for hit in hits if not args.json else ():
        print(f"{hit.score:.3f}  {hit.item.path}" + (f"  ({hit.item.caption})" if hit.item.caption else ""))
    return 0


def _classify(args: argparse.Namespace) -> int:
    from clipworks.video.evaluate import classify_video
    from clipworks.video.model import video_model

    if len(args.args) != 1:
        raise InputFileError("video classify: give one VIDEO (a file or a folder of frames)")
    path = Path(args.args[0])
    if not path.exists():
        raise InputFileError(f"{path}: no such file or folder")
    model = video_model(args.model, device=args.device)
    labels = args.labels or list(model.config.labels)
    if not labels:
        raise InputFileError("video classify: give --labels (this model was not trained on labels)")
    ranked = classify_video(model, path, labels, args.templates)
    if args.json:
        print(json.dumps([{"label": label, "probability": p} for label, p in ranked], indent=2))
    for label, p in ranked if not args.json else ():
        print(f"{p:6.3f}  {label}")
    return 0
