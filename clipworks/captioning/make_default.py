"""Train and export the shipped default captioner (the one command that made it):

    python -m clipworks.captioning.make_default --run runs/captioner-default

trains `RECIPE` (ClipCap's MLP mapper with the LM fine-tuned, on the default CLIP model's embeddings of
40,000 generated scenes in the world's training styles), writes the weights in float16 with their config to
clipworks/captioning/pretrained/default/, and scores it on 1,000 held-out-pair scenes in the training styles
and 1,000 in the held-out styles (`HELDOUT_SETS`) into metrics.json beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from clipworks.captioning.config import CaptionTrainConfig

# The recipe is CaptionTrainConfig's defaults (written out in recipe.json beside the weights).
RECIPE = {k: v for k, v in asdict(CaptionTrainConfig(out="")).items() if k != "out"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/captioner-default"), help="training run directory")
    parser.add_argument("--skip-training", action="store_true", help="export an already finished run")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args(argv)

    import torch

    from clipworks.captioning.evaluate import HELDOUT_SETS, evaluate_captioner
    from clipworks.captioning.model import load_captioner, shipped_captioner_path
    from clipworks.captioning.train import train_captioner

    if not args.skip_training:
        train_captioner(CaptionTrainConfig(out=str(args.run)), resume=args.resume)
    summary = json.loads((args.run / "summary.json").read_text())
    destination = shipped_captioner_path("default")
    load_captioner(args.run / "model").save_pretrained(destination, dtype=torch.float16)
    result = {name: evaluate_captioner("default", data=data, figure=args.run / f"examples-{name.replace(' ', '-')}.png")
              for name, data in HELDOUT_SETS.items()}
    result["training"] = summary
    (destination / "recipe.json").write_text(json.dumps({"command": "python -m clipworks.captioning.make_default",
                                                         "recipe": RECIPE}, indent=2) + "\n")
    (destination / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({name: {k: result[name][k] for k in ("metrics", "attributes", "images")}
                      for name in HELDOUT_SETS}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
