"""The shipped default model (or any CLIP model) on held-out scenes of the generated world: the README's figures.

It measures zero-shot shape and colour classification on colour-shape pairs never seen in training and on
drawing styles never seen in training (sketch, mosaic), text<->image retrieval over 1,000 held-out scenes,
and ARO-style swapped captions with a linear probe of word order in both embeddings; prints a table, and saves a figure of held-out images with their top
captions plus the figures as JSON. `./run.sh demo` runs it; so does the default model's recipe once trained.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path


def _figure(samples, captions, sims, path: Path, count: int = 12) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.3, rows * 3.4))
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= count:
            continue
        ax.imshow(samples[k].image)
        top = sims[k].topk(3).indices.tolist()
        lines = []
        for rank, j in enumerate(top, 1):
            mark = "✓" if j == k else " "
            lines.append(f"{rank}{mark} " + "\n    ".join(textwrap.wrap(captions[j], 34)))
        ax.set_title("\n".join(lines), fontsize=6.5, loc="left", family="monospace")
    fig.suptitle("held-out scenes: the default model's top-3 captions (✓ = the scene's own caption)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None, prog: str = "python -m clipworks.evaluation.world_report") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where the figure and JSON go")
    parser.add_argument("--model", default="default", help="model name or checkpoint path")
    parser.add_argument("--n", type=int, default=1000, help="held-out scenes per task")
    parser.add_argument("--render", type=int, default=64, help="pixels the scenes are drawn at (resized to the model's input)")
    args = parser.parse_args(argv)

    from clipworks.errors import report_errors

    return report_errors(_run, args)


def _run(args: argparse.Namespace) -> int:
    import clipworks
    from clipworks.evaluation.world_tasks import aro_world, order_probe_world, retrieval_world, zero_shot_world

    t0 = time.perf_counter()
    model, preprocess = clipworks.create_model(args.model)
    tokenizer = clipworks.get_tokenizer(model)
    params = sum(p.numel() for p in model.parameters())
    tower = "ViT" if model.config.vision.kind == "vit" else "ModifiedResNet"
    print(f"model: {args.model} ({tower} image tower, {params / 1e6:.1f} M parameters, "
          f"{model.config.vision.image_size}px input)")
    from clipworks.data.styles import HELDOUT_STYLES

    size = args.render
    zs = {"held-out pairs, train styles": zero_shot_world(model, preprocess, tokenizer, n=args.n, styles="train",
                                                          image_size=size)}
    for style in HELDOUT_STYLES:
        zs[f"held-out style: {style}"] = zero_shot_world(model, preprocess, tokenizer, n=args.n, split="train",
                                                          styles=(style,), image_size=size)
    rt, samples, captions, sims = retrieval_world(model, preprocess, tokenizer, n=args.n, styles="train", image_size=size)
    aro = aro_world(model, preprocess, tokenizer, n=args.n, image_size=size)
    aro["probe"] = order_probe_world(model, preprocess, tokenizer, n=3 * args.n, image_size=size)

    print(f"\nZero-shot on {args.n} single-object scenes per row drawn at {size} px, never seen in training "
          "(8 classes each)")
    print(f"  {'scenes':<30}{'shape':>8}{'top-3':>8}{'colour':>8}")
    for name, r in zs.items():
        print(f"  {name:<30}{r['shape']['top1']:>8.1%}{r['shape']['top3']:>8.1%}{r['colour']['top1']:>8.1%}")
    print(f"\nRetrieval over {args.n} held-out-pair scenes in the train styles, one caption each")
    print(f"  {'direction':<16}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'median rank':>13}")
    for name, label in (("text_to_image", "text -> image"), ("image_to_text", "image -> text")):
        print(f"  {label:<16}{rt[f'{name}_R@1']:>8.1%}{rt[f'{name}_R@5']:>8.1%}{rt[f'{name}_R@10']:>8.1%}"
              f"{rt[f'{name}_median_rank']:>13.0f}")
    print(f"\nWord order (ARO-style, {args.n} two-object scenes; chance 50%): the true caption scores above its twin")
    print(f"  relation swaps ('{aro['relation_example'][1]}')  {aro['relation']:.1%}")
    print(f"  attribute swaps ('{aro['attribute_example'][1]}')  {aro['attribute']:.1%}")
    probe = aro["probe"]
    print(f"  which colour is on the left, read by a linear probe ({probe['test']} test scenes, majority "
          f"{probe['majority']:.1%}): from the image embedding {probe['image']:.1%}, from the caption's {probe['caption']:.1%}")

    args.out.mkdir(parents=True, exist_ok=True)
    figure = args.out / "heldout_top_captions.png"
    _figure(samples, captions, sims, figure)
    results = {"model": args.model, "render_px": size, "zero_shot": zs, "retrieval": rt, "aro": aro,
               "seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigure: {figure}\nresults: {args.out / 'results.json'} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
