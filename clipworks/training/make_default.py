"""Train and export the shipped default model (the one command that made it):

    python -m clipworks.training.make_default --run runs/default     (re-run it to continue an interrupted run)

Three seeded, resumable stages on the generated world (`STAGES`), each starting from the float16 export of
the one before: the classic world (flat shapes on muted backdrops; the first default model's recipe, about 33
minutes on 2 CPU cores), the styled world (`clipworks.data.styles`: 11 drawing styles, backdrops of any
brightness, photo crops; grayscale items; NegCLIP-style swapped-caption negatives; about 95 minutes), then the
styled world at 96 px (the model rebuilt for 96 px input by `resize_image_input`; word-order captions; a
two-way caption-vs-twin loss; about 48 minutes). The held-out styles and colour-shape pairs never appear. The final weights are written in float16 with their config to
clipworks/model/pretrained/default/, with recipe.json beside them, and the demo's figures are measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STAGE3_STEPS = 500

STAGES: tuple[dict, ...] = (
    dict(  # stage 1: the classic world (what shipped as the first default model)
        model="RN-Tiny-64",
        data="world",
        data_options={"size": 400000, "grayscale": 0.5},
        steps=1500, batch_size=256, lr=1e-3, min_lr=1e-5, warmup=100, weight_decay=0.1, seed=0,
        num_workers=1, checkpoint_every=100,
    ),
    dict(  # stage 2: the styled world, from stage 1's float16 export
        data="world:size=2000000,styles=train,grayscale=0.4,hard_negatives=true",
        steps=1500, batch_size=256, lr=5e-4, min_lr=1e-5, warmup=50, weight_decay=0.1, seed=0,
        num_workers=2, checkpoint_every=100,
    ),
    dict(  # stage 3: 96-pixel inputs (a 3x3 final grid), word-order captions weighted against their twins
        image_size=96,
        data="world:size=2000000,seed=3,image_size=96,styles=train,grayscale=0.4,hard_negatives=true,order_focus=0.25",
        hard_negative_weight=1.0,
        steps=STAGE3_STEPS, batch_size=256, lr=3e-4, min_lr=1e-5, warmup=30, weight_decay=0.1, seed=3,
        num_workers=2, checkpoint_every=50,
    ),
)


def export(run_dir: Path, destination: Path) -> Path:
    """Copy a finished run's model to `destination` in float16 (loading upcasts to float32)."""
    import torch

    import clipworks

    model, _ = clipworks.create_model(run_dir / "model", device="cpu")
    return model.save_pretrained(destination, dtype=torch.float16)


def start_point(previous: Path, stage: dict, out: Path) -> Path:
    """The weights a stage starts from: the previous stage's export, resized when the stage sets `image_size`."""
    if "image_size" not in stage:
        return previous
    if (out / "start").is_dir():  # made when the stage first started
        return out / "start"
    import torch

    import clipworks
    from clipworks.model.factory import resize_image_input

    model, _ = clipworks.create_model(previous, device="cpu")
    return resize_image_input(model, stage["image_size"]).save_pretrained(out / "start", dtype=torch.float16)


def train_stages(run: Path) -> Path:
    """Run the stages in `run`/stage1, `run`/stage2: a finished stage (its model/ written) is kept, an
    interrupted one continues exactly from its checkpoint. Returns the last stage's run directory."""
    from clipworks.training.contrastive import TrainConfig, train
    from clipworks.training.run import CHECKPOINT_FILE

    start = None
    for k, stage in enumerate(STAGES, 1):
        out = run / f"stage{k}"
        recipe = {key: value for key, value in stage.items() if key != "image_size"}
        if start is not None:
            recipe["model"] = str(start_point(start, stage, out))
        if not (out / "model").is_dir():
            train(TrainConfig(out=str(out), **recipe), resume=(out / CHECKPOINT_FILE).is_file())
        start = export(out, out / "model-fp16")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/default"), help="training run directory")
    parser.add_argument("--skip-training", action="store_true", help="export an already finished run (RUN/stage2)")
    args = parser.parse_args(argv)

    from clipworks.evaluation.world_report import main as demo
    from clipworks.model.factory import shipped_model_path

    last = args.run / f"stage{len(STAGES)}" if args.skip_training else train_stages(args.run)
    destination = shipped_model_path("default")
    export(last, destination)
    (destination / "recipe.json").write_text(json.dumps({"command": "python -m clipworks.training.make_default",
                                                         "stages": list(STAGES)}, indent=2) + "\n")
    return demo(["--model", str(destination), "--out", str(args.run / "eval")])


if __name__ == "__main__":
    sys.exit(main())
