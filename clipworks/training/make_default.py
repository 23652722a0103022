"""Train and export the shipped default model (the one command that made it):

    python -m clipworks.training.make_default --run runs/default

trains `RECIPE` on the generated world (about 30 minutes on 2 CPU cores), then writes the weights in float16
with their config to clipworks/model/pretrained/default/ and the held-out figures to metrics.json beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RECIPE = dict(
    model="RN-Tiny-64",
    data="world",
    data_options={"size": 400000, "grayscale": 0.5},
    steps=1500,
    batch_size=256,
    lr=1e-3,
    min_lr=1e-5,
    warmup=100,
    weight_decay=0.1,
    seed=0,
    num_workers=1,
    checkpoint_every=100,
)


def export(run_dir: Path, destination: Path) -> Path:
    """Copy a finished run's model into the package, in float16 (loading upcasts to float32)."""
    import torch

    import clipworks

    model, _ = clipworks.create_model(run_dir / "model", device="cpu")
    return model.save_pretrained(destination, dtype=torch.float16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/default"), help="training run directory")
    parser.add_argument("--skip-training", action="store_true", help="export an already finished run")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args(argv)

    from clipworks.demo import main as demo
    from clipworks.model.factory import shipped_model_path
    from clipworks.training.contrastive import TrainConfig, train

    if not args.skip_training:
        train(TrainConfig(out=str(args.run), **RECIPE), resume=args.resume)
    destination = shipped_model_path("default")
    export(args.run, destination)
    (destination / "recipe.json").write_text(json.dumps({"command": "python -m clipworks.training.make_default",
                                                         "recipe": RECIPE}, indent=2) + "\n")
    return demo(["--model", str(destination), "--out", str(args.run / "eval")])


if __name__ == "__main__":
    sys.exit(main())
