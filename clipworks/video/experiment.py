"""The video experiments behind the README's tables: CLIP4Clip's three similarity calculators trained on a small
and a large slice of the generated video world, and ActionCLIP (KL multi-positive vs InfoNCE, mean vs
Transformer fusion), zero-shot and trained, on seen and held-out actions.

    python -m clipworks.video.experiment --out reports/video --runs runs/video
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from clipworks.video.config import VideoTrainConfig

CLIP4CLIP_METHODS = ("meanP", "seqTransf", "tightTransf")
ACTIONCLIP_RUNS = {  # name: (fusion, loss)
    "actionclip-transf-kl": ("seqTransf", "kl"),
    "actionclip-transf-infonce": ("seqTransf", "infonce"),
    "actionclip-meanP-kl": ("meanP", "kl"),
}


def _evaluate(model, test, heldout) -> dict[str, Any]:
    from clipworks.video.evaluate import action_accuracy, video_retrieval
    from clipworks.video.world import ACTION_TEMPLATES, ACTIONS, HELDOUT_ACTIONS, TRAIN_ACTIONS

    templates = model.config.templates or ACTION_TEMPLATES
    return {
        "retrieval_full_caption": video_retrieval(model, test, caption=0),
        "retrieval_shape_and_action": video_retrieval(model, test, caption=2),
        "actions_seen": action_accuracy(model, test, TRAIN_ACTIONS, templates),
        "actions_heldout_among_heldout": action_accuracy(model, heldout, HELDOUT_ACTIONS, templates),
        "actions_heldout_among_all": action_accuracy(model, heldout, ACTIONS, templates),
    }


def run_experiments(out: Path, runs: Path, small: int = 500, large: int = 5000, steps: int = 1500,
                    test_size: int = 1000, heldout_size: int = 600, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate every configuration; writes results.json (and a figure) into `out`."""
    from clipworks.video.data import world_tensors
    from clipworks.video.model import load_video_model, zero_shot_video_model
    from clipworks.video.train import train_video

    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    zero = zero_shot_video_model("default")  # the CLIP model on frames ("default" alone: the shipped video model)
    cache = runs / ".video-cache"
    test = world_tensors(zero, test_size, seed=1, split="train", cache_dir=cache, progress=progress)
    heldout = world_tensors(zero, heldout_size, seed=1, split="heldout", cache_dir=cache, progress=progress, group=3)

    def save() -> None:
        results_path.write_text(json.dumps(results, indent=2) + "\n")

    if "zero-shot-meanP" not in results:
        results["zero-shot-meanP"] = {"train_videos": 0, **_evaluate(zero, test, heldout)}
        save()
    plan: list[tuple[str, VideoTrainConfig]] = []
    for method in CLIP4CLIP_METHODS:  # tightTransf, the slowest, last
        for size in (small, large):
            plan.append((f"{method}-{size}", VideoTrainConfig(out=str(runs / f"{method}-{size}"), method=method,
                                                              train_size=size, steps=steps)))
    for name, (fusion, loss) in ACTIONCLIP_RUNS.items():
        plan.insert(4, (name, VideoTrainConfig(out=str(runs / name), method="actionclip", fusion=fusion, loss=loss,
                                               train_size=large, steps=steps)))
    for name, cfg in plan:
        if name in results:
            continue
        t0 = time.perf_counter()
        summary = train_video(cfg, progress=progress)
        model = load_video_model(Path(cfg.out) / "model")
        t1 = time.perf_counter()
        results[name] = {"config": asdict(cfg), "train_videos": cfg.train_size, "train_seconds": summary["train_seconds"],
                         "trainable_parameters": summary["trainable_parameters"], **_evaluate(model, test, heldout),
                         "eval_seconds": round(time.perf_counter() - t1, 1), "total_seconds": round(time.perf_counter() - t0, 1)}
        save()
        print(name, _headline(results[name]), flush=True)
    save_figure(results, out / "video_results.png")
    return results


def _headline(r: dict[str, Any]) -> str:
    ret = r["retrieval_full_caption"]
    return (f"t2v R@1 {100 * ret['text_to_video_R@1']:.1f} R@5 {100 * ret['text_to_video_R@5']:.1f} "
            f"R@10 {100 * ret['text_to_video_R@10']:.1f} MdR {ret['text_to_video_median_rank']:.0f} | "
            f"actions seen top-1 {100 * r['actions_seen']['top1']:.1f} | held-out {100 * r['actions_heldout_among_heldout']['top1']:.1f}")


def save_figure(results: dict[str, Any], path: Path) -> Path:
    """Left: text->video R@1 per similarity calculator and training size; right: action top-1 per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    sizes = sorted({int(k.rsplit("-", 1)[1]) for k in results if k.split("-")[0] in CLIP4CLIP_METHODS})
    width = 0.8 / max(len(sizes), 1)
    for j, size in enumerate(sizes):
        vals = [100 * results.get(f"{m}-{size}", {}).get("retrieval_full_caption", {}).get("text_to_video_R@1", np.nan)
                for m in CLIP4CLIP_METHODS]
        ax1.bar(np.arange(3) + j * width, vals, width, label=f"{size} training clips")
    zs = 100 * results["zero-shot-meanP"]["retrieval_full_caption"]["text_to_video_R@1"]
    ax1.axhline(zs, color="grey", ls="--", label="zero-shot CLIP (meanP)")
    ax1.set_xticks(np.arange(3) + width * (len(sizes) - 1) / 2, CLIP4CLIP_METHODS)
    ax1.set_ylabel("text→video R@1 (%)")
    ax1.set_title("CLIP4Clip on the video world (1,000 test clips)")
    ax1.legend(fontsize=8)
    names = ["zero-shot-meanP", *[n for n in ACTIONCLIP_RUNS if n in results]]
    keys = (("actions_seen", "seen actions (8)"), ("actions_heldout_among_heldout", "held-out actions (3)"))
    for j, (key, label) in enumerate(keys):
        ax2.bar(np.arange(len(names)) + j * 0.4, [100 * results[n][key]["top1"] for n in names], 0.4, label=label)
    for j, (key, _) in enumerate(keys):
        ax2.axhline(100 * results[names[0]][key]["chance_top1"], color=f"C{j}", ls=":", lw=1)
    ax2.set_xticks(np.arange(len(names)) + 0.2, [n.replace("actionclip-", "AC ") for n in names], fontsize=8)
    ax2.set_ylabel("top-1 (%)")
    ax2.set_title("ActionCLIP action recognition (dotted: chance)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="reports/video")
    parser.add_argument("--runs", default="runs/video")
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--test-size", type=int, default=1000)
    args = parser.parse_args(argv)
    run_experiments(Path(args.out), Path(args.runs), args.small, args.large, args.steps, args.test_size)


if __name__ == "__main__":
    main()
