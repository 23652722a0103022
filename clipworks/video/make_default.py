"""Train and export the shipped default video model (the one command that made it):

    python -m clipworks.video.make_default --run runs/video-default

trains `RECIPE` on the default CLIP model (its frozen image trunk's features per frame, cached by the weights'
hash; the attention-pool head, a 2-layer temporal Transformer over the 8 frames (CLIP4Clip's seqTransf,
ActionCLIP's Transf), a where readout of 4 glimpses over each frame's grid (`VideoConfig.where_glimpses`)
and the text tower train, the text tower's token table only on the rows of the world's
words) on clips of the video world in the train styles, with captions (InfoNCE) and action label prompts
(ActionCLIP's KL loss) together, so one model both searches and classifies. It writes the weights it trained,
in float16, to clipworks/video/pretrained/default/ (the CLIP weights are the default model's, read by name,
not copied), and scores the shipped model on 1,000 new clips of seen actions in the train styles and 1,000 in
the held-out styles into metrics.json beside them. `--compare` first trains the candidate designs briefly and
writes their scores to RUN/compare.json (how the recipe was chosen).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from clipworks.video.config import VideoTrainConfig

RECIPE = VideoTrainConfig(out="", method="seqTransf", styles="train", train_size=5000, steps=4000, batch_size=32,
                          label_weight=1.0, compact_vocab=True, where_glimpses=4)
# The designs `--compare` measures, as changes to RECIPE (trained on the same clips for fewer steps).
CANDIDATES: dict[str, dict[str, Any]] = {
    "meanP, captions + labels": {"method": "meanP"},
    "seqTransf, captions + labels": {},
    "seqTransf, captions only": {"label_weight": 0.0},
    "ActionCLIP Transf, labels only": {"method": "actionclip", "fusion": "seqTransf", "label_weight": 0.0},
}


def _headline(result: dict[str, Any]) -> dict[str, float]:
    """Action top-1 and text->video R@1/R@5 per style set, in percent."""
    return {f"{styles} {name}": round(100 * value, 1) for styles, r in result.items()
            for name, value in (("action top-1", r["actions_seen"]["top1"]),
                                ("t2v R@1", r["retrieval"]["text_to_video_R@1"]),
                                ("t2v R@5", r["retrieval"]["text_to_video_R@5"]))}


def compare(run: Path, steps: int, test_size: int) -> dict[str, Any]:
    """Each of `CANDIDATES` trained for `steps` steps on RECIPE's clips, scored on `test_size` clips per style
    set; written to run/compare.json. The clips' features are cached in run/.video-cache for the recipe's run."""
    from clipworks.video.evaluate import evaluate_world
    from clipworks.video.model import load_video_model
    from clipworks.video.train import train_video

    results: dict[str, Any] = {}
    for name, change in CANDIDATES.items():
        slug = name.replace(", ", "-").replace(" + ", "+").replace(" ", "_")
        cfg = replace(RECIPE, out=str(run / f"compare-{slug}"), steps=steps, **change)
        summary = train_video(cfg)
        model = load_video_model(Path(cfg.out) / "model")
        result = evaluate_world(model, test_size, cache_dir=run / ".video-cache")
        results[name] = {"config": asdict(cfg), "train_seconds": summary["train_seconds"],
                         "trainable_parameters": summary["trainable_parameters"], "scores": _headline(result), **result}
        print(name, json.dumps(results[name]["scores"]), flush=True)
        (run / "compare.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/video-default"), help="training run directory")
    parser.add_argument("--skip-training", action="store_true", help="export an already finished run")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--compare", action="store_true", help="first measure the candidate designs briefly")
    parser.add_argument("--test-size", type=int, default=1000, help="new clips per style set to score on")
    args = parser.parse_args(argv)

    import torch

    from clipworks.video.evaluate import evaluate_world
    from clipworks.video.model import load_video_model, shipped_video_model_path
    from clipworks.video.train import train_video

    args.run.mkdir(parents=True, exist_ok=True)
    if args.compare:
        compare(args.run, steps=500, test_size=args.test_size)
    cfg = replace(RECIPE, out=str(args.run / "model-run"))
    t0 = time.perf_counter()
    if not args.skip_training:
        train_video(cfg, resume=args.resume)
    seconds = time.perf_counter() - t0  # features (rendering + trunk) and training
    summary = json.loads((Path(cfg.out) / "summary.json").read_text())
    destination = shipped_video_model_path("default")
    trained = load_video_model(Path(cfg.out) / "model")
    trained.save_pretrained(destination, dtype=torch.float16)
    shipped = load_video_model("default")
    result = {"clip_model": shipped.config.clip_model, "clip_weights_sha256": shipped.config.clip_weights,
              **evaluate_world(shipped, args.test_size, cache_dir=args.run / ".video-cache"),
              "training": {**summary, "seconds_with_features": None if args.skip_training else round(seconds, 1)},
              "weights_bytes": (destination / "model.safetensors").stat().st_size}
    recipe = {k: v for k, v in asdict(RECIPE).items() if k != "out"}
    (destination / "recipe.json").write_text(json.dumps({"command": "python -m clipworks.video.make_default",
                                                         "recipe": recipe}, indent=2) + "\n")
    (destination / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(_headline({k: v for k, v in result.items() if k.endswith("_styles")}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
