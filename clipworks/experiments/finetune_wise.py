"""Fine-tuning that keeps zero-shot ability, measured: WiSE-FT on the default model and handwritten digits.

    python -m clipworks.experiments.finetune_wise --out reports/finetune [--steps 200] [--batch-size 64]

The default model never saw a digit. scikit-learn's digits are written as a class-per-folder set under --work
(train/ and test/, one folder per digit name, upsampled to the model's input size), the model is fine-tuned on the
train images with captions from the digits templates (`clipworks finetune`), and scored zero-shot on the test digits
(in-domain) and on the world's shape and colour over held-out colour-shape pairs (out-of-domain), during training
and at each WiSE-FT α. Writes results.json, README.md (the table) and wise_ft.png into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clipworks.io import atomic_write


def write_digits_folder(root: Path, image_size: int) -> Path:
    """scikit-learn's digits as root/{train,test}/{zero..nine}/*.png (kept when already written)."""
    from clipworks.data.digits import CLASS_NAMES, DigitsDataset

    done = root / ".complete"
    if done.is_file():
        return root
    for split in ("train", "test"):
        data = DigitsDataset(split=split, image_size=image_size)
        for i in range(len(data)):
            folder = root / split / CLASS_NAMES[int(data.labels[i])]
            folder.mkdir(parents=True, exist_ok=True)
            data.image(i).save(folder / f"{int(data.indices[i]):04d}.png")
    done.write_text("")
    return root


def readme(results: dict, command: str) -> str:
    """The report: the WiSE-FT table, the evaluations during training and what they show."""
    from clipworks.training.finetune import sweep_table

    cfg = results["config"]
    sweep = {r["alpha"]: r for r in results["wise_ft"]}
    zs, ft = sweep.get(0.0), sweep.get(1.0)
    curve = "\n".join(f"| {r['step']} | {100 * r['in_mean']:.1f}% | {100 * r['out_mean']:.1f}% |"
                      for r in results["curve"])
    best = max(results["wise_ft"], key=lambda r: r["in_mean"] + r["out_mean"])
    lines = [
        "# Fine-tuning with WiSE-FT: the default model on handwritten digits", "",
        f"    {command}", "",
        f"Model `{cfg['model']}` fine-tuned contrastively on `{cfg['classes']}` (captions from the "
        f"`{cfg['templates']}` templates) for {cfg['steps']} steps at batch {cfg['batch_size']}, lr {cfg['lr']:g}, "
        f"layer-wise lr decay {cfg['lr_decay']:g}, {'image tower locked, ' if cfg['lock_image'] else ''}"
        f"{'text tower locked, ' if cfg['lock_text'] else ''}{results['trainable_parameters']:,} of "
        f"{results['parameters']:,} parameters trained. In-domain: zero-shot top-1 on the {results['in_domain'][0]} "
        f"test images with the same templates. Out-of-domain: zero-shot top-1 of "
        f"{', '.join(results['out_of_domain'])} ({cfg['eval_n']} single-object scenes each, colour-shape pairs "
        "held out of all training). WiSE-FT: θ(α) = (1 − α)·θ_zero-shot + α·θ_fine-tuned.", "",
        "## Accuracy across α", "", sweep_table(results), "",
        "## During fine-tuning (α = 1 at each step)", "",
        "| step | in-domain | out-of-domain |", "|---|---|---|", curve, "",
        "![in-domain vs out-of-domain](wise_ft.png)", "",
    ]
    if zs and ft:
        lines += [
            "## What it shows", "",
            f"Fine-tuning lifts in-domain accuracy from {100 * zs['in_mean']:.1f}% to {100 * ft['in_mean']:.1f}% and "
            f"moves out-of-domain accuracy from {100 * zs['out_mean']:.1f}% to {100 * ft['out_mean']:.1f}%. "
            f"The best sum of the two is at α = {best['alpha']:g} ({100 * best['in_mean']:.1f}% in, "
            f"{100 * best['out_mean']:.1f}% out).", "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from clipworks.training.finetune import RESULTS_FILE, FinetuneConfig, finetune, plot_wise_ft

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="reports/finetune", help="the report: results.json, README.md, wise_ft.png")
    parser.add_argument("--work", default="outputs/finetune_wise", help="the digits folder and the run (checkpoints)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lr-decay", type=float, default=1.0)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--eval-n", type=int, default=500)
    parser.add_argument("--lock-image", action="store_true")
    parser.add_argument("--lock-text", action="store_true")
    parser.add_argument("--device")
    args = parser.parse_args(argv)

    from clipworks.model.factory import create_model

    out = Path(args.out)
    image_size = create_model(args.model)[0].config.preprocess.image_size
    digits = write_digits_folder(Path(args.work) / "digits", image_size)
    run = Path(args.work) / "run"
    cfg = FinetuneConfig(out=str(run), model=args.model, classes=str(digits), templates="digits", steps=args.steps,
                         batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay,
                         warmup=max(1, args.steps // 10), eval_every=args.eval_every, eval_n=args.eval_n,
                         lock_image=args.lock_image, lock_text=args.lock_text, checkpoint_every=25, device=args.device)
    resume = (run / "checkpoint.pt").is_file()  # an interrupted experiment continues where it stopped
    results = finetune(cfg, resume=resume)
    command = "python -m clipworks.experiments.finetune_wise " + " ".join(argv if argv is not None else sys.argv[1:])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / RESULTS_FILE, lambda tmp: tmp.write_text(json.dumps(results, indent=2) + "\n"))
    plot_wise_ft(results, out / "wise_ft.png")
    (out / "README.md").write_text(readme(results, command.strip()))
    print((out / "README.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
