"""`clipworks video ACTION`: the generated video world (world), training (train: CLIP4Clip similarity
calculators, ActionCLIP), evaluation (eval), text->video search over a folder (index, search) and classifying
videos against labels (classify: one, several, or a --batch list, JSONL out)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipworks.cli.common import (add_actions, add_check, add_device_arg, non_empty, positive_float, positive_int,
                                  refuse_existing, report_skips, write_jsonl)
from clipworks.errors import InputFileError

VIDEO_FORMATS = ("mp4", "webm", "avi", "mkv", "mov", "gif")  # what video.decode.write_video writes (numpy-free here)


def register(sub: argparse._SubParsersAction) -> None:
    from clipworks.video.config import TRAIN_METHODS
    from clipworks.video.config import VideoTrainConfig as D

    actions = add_actions(sub, "video", "video: CLIP4Clip retrieval, ActionCLIP recognition, video search")

    w = actions.add_parser("world", help="write the generated video world as video files and/or a preview figure",
                           description="Clips with a caption .txt beside each, and clips.jsonl.")
    w.add_argument("--out", help="output folder")
    w.add_argument("--size", type=positive_int, default=100, help="clips to write")
    w.add_argument("--format", default="mp4", choices=VIDEO_FORMATS, help="video container")
    _add_split(w, "the actions the clips show")
    w.add_argument("--preview", help="also save a figure of a few clips (PNG)")
    w.set_defaults(run=_world)

    t = actions.add_parser("train", help="train a video model", description="CLIP4Clip (meanP, seqTransf, "
                           "tightTransf) on captions, or ActionCLIP on labels.")
    t.add_argument("--out", required=True, help="run directory (the model is written to OUT/model)")
    t.add_argument("--method", default=D.method, choices=TRAIN_METHODS)
    t.add_argument("--fusion", default=D.fusion, choices=("meanP", "seqTransf"), help="actionclip: temporal fusion")
    t.add_argument("--loss", default=D.loss, choices=("auto", "kl", "infonce"),
                   help="auto: KL multi-positive for actionclip, InfoNCE for CLIP4Clip")
    _add_data(t)
    t.add_argument("--train-size", type=positive_int, default=D.train_size, help="world clips to train on")
    t.add_argument("--clip-model", default=D.clip_model)
    t.add_argument("--frames", type=positive_int, default=D.num_frames, help="frames sampled per video")
    t.add_argument("--steps", type=positive_int, default=D.steps)
    t.add_argument("--batch-size", type=positive_int, default=D.batch_size)
    t.add_argument("--lr-clip", type=positive_float, default=D.lr_clip, help="learning rate of CLIP's trained weights")
    t.add_argument("--lr-new", type=positive_float, default=D.lr_new, help="learning rate of the new layers")
    t.add_argument("--styles", default=D.styles, help="world styles: classic, train, or names joined by '+'")
    t.add_argument("--label-weight", type=float, default=D.label_weight,
                   help="also ActionCLIP's label-prompt loss at this weight (one model searches and classifies)")
    t.add_argument("--where-glimpses", type=int, default=D.where_glimpses,
                   help="glimpses whose cell centres join each frame's embedding, for motion direction (0: none)")
    t.add_argument("--resume", action="store_true")
    t.set_defaults(run=_train)

    e = actions.add_parser("eval", help="retrieval and action recognition of a video model, as JSON",
                           description="Text<->video retrieval and top-1/top-5 action recognition.")
    _add_model(e)
    _add_data(e)
    e.add_argument("--size", type=positive_int, default=1000, help="world clips to test on")
    _add_split(e, "world: train = seen actions, heldout = the held-out actions")
    add_device_arg(e)
    e.set_defaults(run=_eval)

    i = actions.add_parser("index", help="index folders of videos into a video search store",
                           description="Embeds new or changed videos, drops deleted ones; safe to re-run.")
    i.add_argument("folders", nargs="+", metavar="FOLDER")
    i.add_argument("--store", required=True, help="store directory (created if missing)")
    _add_model(i)
    add_device_arg(i)
    i.set_defaults(run=_index)

    s = actions.add_parser("search", help="search a video store by text", description="The best-matching videos.")
    s.add_argument("text", type=non_empty, metavar="TEXT")
    s.add_argument("--store", required=True)
    s.add_argument("-k", type=positive_int, default=10, help="results to show (default 10)")
    s.add_argument("--json", action="store_true", help="print JSON")
    add_device_arg(s)
    s.set_defaults(run=_search)

    c = actions.add_parser("classify", help="rank labels for videos",
                           description="Label probabilities for video files or folders of frames. One VIDEO prints "
                                       "its ranking; several, or a --batch list, give one JSON line per video "
                                       "(the model and the labels' text features are computed once).")
    c.add_argument("videos", nargs="*", metavar="VIDEO", help="video files or folders of frames")
    c.add_argument("--batch", metavar="LIST", help="a .txt (one path a line) or .jsonl/.csv/.tsv (a video column) "
                                                   "naming the videos, instead of VIDEO; relative paths are read from "
                                                   "the list's folder; unreadable videos are skipped and counted")
    c.add_argument("--out", help="write one JSON line per video here, in input order (refused if it exists; "
                                 "default: stdout)")
    c.add_argument("--labels", nargs="+", type=non_empty, help="the candidate labels (default: the model's)")
    c.add_argument("--templates", nargs="+", help="prompt templates with {} (default: the model's)")
    _add_model(c)
    c.add_argument("--json", action="store_true", help="one VIDEO: print JSON")
    c.add_argument("--batch-size", type=positive_int, default=8, help="videos per forward pass")
    add_device_arg(c)
    c.set_defaults(run=_classify)
    add_check(c, _classify_form)


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default",
                   help="a trained video model directory, or a CLIP model (name or path) used as meanP zero-shot")


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="world", help="'world' or a folder of videos (captions in same-name .txt; "
                                                   "labels = parent folder names)")


def _add_split(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--split", default="train", choices=("train", "heldout", "all"), help=what)


def _world(args: argparse.Namespace) -> int:
    from clipworks.video.world import save_preview, write_video_world

    if not args.out and not args.preview:
        raise InputFileError("video world: give --out DIR and/or --preview PNG")
    if args.preview:
        print(save_preview(args.preview, split=args.split))
    if args.out:
        print(write_video_world(args.out, args.size, split=args.split, fmt=args.format))
    return 0


def _train(args: argparse.Namespace) -> int:
    from clipworks.video.config import VideoTrainConfig
    from clipworks.video.train import train_video

    cfg = VideoTrainConfig(out=args.out, method=args.method, fusion=args.fusion, loss=args.loss, data=args.data,
                           train_size=args.train_size, clip_model=args.clip_model, num_frames=args.frames,
                           steps=args.steps, batch_size=args.batch_size, lr_clip=args.lr_clip, lr_new=args.lr_new,
                           styles=args.styles, label_weight=args.label_weight, where_glimpses=args.where_glimpses)
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
        split = args.split
        data = world_tensors(model, args.size, seed=1, split=split, group=3 if split == "heldout" else 4)
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

    print(index_videos(args.folders, args.store, model=args.model, device=args.device).summary())
    return 0


def _search(args: argparse.Namespace) -> int:
    from clipworks.video.index import search_videos

    hits = search_videos(args.store, args.text, k=args.k, device=args.device)
    if args.json:
        print(json.dumps([h.to_json() for h in hits], indent=2))
    for hit in hits if not args.json else ():
        at = hit.moment and (f"  best at {hit.moment.seconds:.1f} s" if hit.moment.seconds is not None
                             else f"  best at frame {hit.moment.frame}")
        print(f"{hit.score:.3f}  {hit.item.path}" + (at or "") + (f"  ({hit.item.caption})" if hit.item.caption else ""))
    return 0


def _classify_form(args: argparse.Namespace) -> str | None:
    if args.batch is not None and args.videos:
        return "give VIDEO... or --batch LIST, not both"
    if args.batch is None and not args.videos:
        return "the following arguments are required: VIDEO (or --batch LIST)"
    return None


def _classify(args: argparse.Namespace) -> int:
    if args.batch is None and len(args.videos) == 1 and args.out is None:
        return _classify_one(args)
    from clipworks.data.skips import SkipReport
    from clipworks.data.tables import TableRow
    from clipworks.video.inference import classify_rows, read_video_list
    from clipworks.video.model import video_model

    refuse_existing(args.out)
    if args.batch is not None:
        rows, folder = read_video_list(args.batch), Path(args.batch).resolve().parent
    else:
        rows, folder = [TableRow(v, {"video": v}) for v in args.videos], Path.cwd()
    model = video_model(args.model, device=args.device)
    labels = _labels(args, model)
    report = SkipReport(total=len(rows))

    def records():
        yield from classify_rows(model, rows, folder, labels, args.templates, batch_size=args.batch_size,
                                 report=report)
        if not report.kept:  # raised inside the writer, so no --out file is left behind
            raise InputFileError(f"none of the {len(rows)} videos could be read ({report.summary(noun='video')}; "
                                 f"{report.first()})")

    written = write_jsonl(records(), args.out)
    report_skips(report, "video")
    if args.out is not None:
        print(f"classified {report.kept} of {written} videos; wrote {args.out}")
    return 0


def _labels(args: argparse.Namespace, model) -> list[str]:
    labels = args.labels or list(model.config.labels)
    if not labels:
        raise InputFileError("video classify: give --labels (this model was not trained on labels)")
    return labels


def _classify_one(args: argparse.Namespace) -> int:
    from clipworks.video.inference import classify_video
    from clipworks.video.model import video_model

    path = Path(args.videos[0])
    if not path.exists():
        raise InputFileError(f"{path}: no such file or folder")
    model = video_model(args.model, device=args.device)
    ranked = classify_video(model, path, _labels(args, model), args.templates)
    if args.json:
        print(json.dumps([{"label": label, "probability": p} for label, p in ranked], indent=2))
    for label, p in ranked if not args.json else ():
        print(f"{p:6.3f}  {label}")
    return 0
