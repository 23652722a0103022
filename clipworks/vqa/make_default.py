"""Export the shipped default VQA model (the one command that made it):

    python -m clipworks.vqa.make_default --run runs/vqa/clip-frozen

trains the VQA recipe (VQATrainConfig's defaults: 20,000 questions about the styled world's training styles,
the default CLIP model's image tower frozen, its stage-3 grid at 64 px, the first design: co-attention, one
attention pool per side, a linear classifier) unless the run has finished already (the
CLIP-ViL experiment's `clip-frozen` run is this recipe), writes the head in float16 to
clipworks/vqa/pretrained/default/ (the CLIP weights are the default model's, not copied), and scores it per
question type on 2,000 questions of held-out scenes (unseen colour-shape pairs) drawn in the training styles
and, apart, in the held-out styles, into metrics.json beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from clipworks.vqa.config import VQATrainConfig

RECIPE = {k: v for k, v in asdict(VQATrainConfig(out="")).items() if k != "out"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/vqa/clip-frozen"), help="training run directory")
    args = parser.parse_args(argv)

    import torch

    from clipworks.vqa.evaluate import evaluate_by_styles
    from clipworks.vqa.model import load_vqa, shipped_vqa_path
    from clipworks.vqa.train import train_vqa

    if (args.run / "train_config.json").exists():  # a finished or interrupted run is reused only if it is this recipe
        trained = {k: v for k, v in json.loads((args.run / "train_config.json").read_text()).items() if k != "out"}
        differ = sorted(k for k in {*trained, *RECIPE} if trained.get(k) != RECIPE.get(k))
        if differ:
            parser.error(f"{args.run / 'train_config.json'}: trained with another recipe (differs in {', '.join(differ)}); "
                         f"give --run a new directory")
    if not (args.run / "summary.json").exists():
        train_vqa(VQATrainConfig(out=str(args.run)), resume=(args.run / "checkpoint.pt").exists())
    destination = shipped_vqa_path("default")
    load_vqa(args.run / "model").save_pretrained(destination, dtype=torch.float16)
    result = {"heldout": evaluate_by_styles(load_vqa("default"), split="heldout", cache_dir=args.run.parent / ".vqa-cache"),
              "training": json.loads((args.run / "summary.json").read_text())}
    (destination / "recipe.json").write_text(json.dumps({"command": "python -m clipworks.vqa.make_default",
                                                         "recipe": RECIPE}, indent=2) + "\n")
    (destination / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: r["accuracy"] for k, r in result["heldout"].items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
