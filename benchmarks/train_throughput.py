"""Training throughput (samples/s) of clipworks' training step vs open_clip's, side by side in one run.

Same architecture (ViT-Tiny-8-64 unless --model), same random weights (open_clip's, loaded into clipworks), same
batch, same optimizer (AdamW over `param_groups`; fused on CUDA for clipworks, as its trainer runs it), same
clipping and temperature clamp, same threads. Each step is what `clipworks.training.contrastive.train` runs per
step, without data loading; on CUDA both run under bf16 autocast, as the trainer does. Repeats interleave the
two libraries so machine noise hits both alike; the figure is the median over repeats.

    python benchmarks/train_throughput.py --batch-size 256 --steps 3 --repeats 3
    python benchmarks/train_throughput.py --device cuda --model ViT-B-32 --batch-size 256 --steps 10
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import torch

MODEL = "ViT-Tiny-8-64"
LR, BETAS, EPS, WEIGHT_DECAY, GRAD_CLIP = 1e-3, (0.9, 0.98), 1e-6, 0.2, 1.0


def _time_steps(step, steps: int, sync) -> float:
    """Seconds per step over `steps` steps, after one warm-up step."""
    step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat, after one warm-up step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=MODEL, help="ViT-Tiny-8-64 or an architecture known to both libraries")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    import open_clip

    import clipworks
    from clipworks.training.loss import ClipLoss
    from clipworks.model.clip import MAX_LOGIT_SCALE
    from clipworks.training.contrastive import FeatureModel, contrastive_step, param_groups

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # open_clip's spelling of clipworks/model/configs/ViT-Tiny-8-64.json (head_width 64 -> 3 vision heads).
    if args.model == MODEL:
        theirs = open_clip.model.CLIP(
            embed_dim=128,
            vision_cfg=open_clip.model.CLIPVisionCfg(image_size=64, patch_size=8, width=192, layers=4, head_width=64),
            text_cfg=open_clip.model.CLIPTextCfg(context_length=32, vocab_size=49408, width=128, heads=2, layers=4),
        )
    else:
        theirs = open_clip.create_model(f"{args.model}-quickgelu", pretrained=None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        torch.save(theirs.state_dict(), path)
        ours, _ = clipworks.create_model(args.model, pretrained=path, device=device)
    theirs = theirs.to(device)
    use_amp = device.type == "cuda"  # as the trainer: bf16 autocast on CUDA
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    ours.train()
    theirs.train()
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())

    size, context = ours.config.vision.image_size, ours.config.text.context_length
    images = torch.randn(args.batch_size, 3, size, size, device=device)
    texts = [f"a photo of item number {i}, seen from the side" for i in range(args.batch_size)]
    tokens = clipworks.tokenize(texts, context).to(device)

    features = FeatureModel(ours)
    our_loss = ClipLoss()
    our_opt = torch.optim.AdamW(param_groups(ours, WEIGHT_DECAY), lr=LR, betas=BETAS, eps=EPS, fused=use_amp)

    def our_step() -> None:
        our_opt.zero_grad(set_to_none=True)
        contrastive_step(features, features, our_loss, [(images, tokens)], autocast)
        torch.nn.utils.clip_grad_norm_(ours.parameters(), GRAD_CLIP)
        our_opt.step()
        with torch.no_grad():
            ours.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    their_loss = open_clip.loss.ClipLoss()
    their_opt = torch.optim.AdamW(param_groups(theirs, WEIGHT_DECAY), lr=LR, betas=BETAS, eps=EPS)

    def their_step() -> None:
        their_opt.zero_grad(set_to_none=True)
        with autocast():
            img, txt, scale = theirs(images, tokens)  # normalised features and logit_scale.exp()
            loss = their_loss(img, txt, scale)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), GRAD_CLIP)
        their_opt.step()
        with torch.no_grad():
            theirs.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    with torch.no_grad():  # same weights, same batch: the starting losses should agree
        loss_ours = float(our_loss(*features(images, tokens)))
        loss_theirs = float(their_loss(*theirs(images, tokens)))
    sync()

    per_lib = {"clipworks": [], "open_clip": []}
    for _ in range(args.repeats):  # interleaved
        per_lib["clipworks"].append(_time_steps(our_step, args.steps, sync))
        per_lib["open_clip"].append(_time_steps(their_step, args.steps, sync))
    s_per_step = {lib: statistics.median(ts) for lib, ts in per_lib.items()}

    print(f"model {args.model}, {device} (bf16 autocast {'on' if use_amp else 'off'}), CPU threads {args.threads}, batch {args.batch_size}, {args.steps} timed steps "
          f"(+1 warm-up) per repeat, median of {args.repeats} interleaved repeats")
    print(f"parameters: clipworks {n_ours:,}, open_clip {n_theirs:,}; "
          f"starting loss: clipworks {loss_ours:.5f}, open_clip {loss_theirs:.5f}")
    print(f"{'library':12}{'samples/s':>12}{'s/step':>10}")
    for lib, s in s_per_step.items():
        print(f"{lib:12}{args.batch_size / s:>12.1f}{s:>10.3f}")
    print(f"ratio clipworks/open_clip (samples/s): {s_per_step['open_clip'] / s_per_step['clipworks']:.2f}")


if __name__ == "__main__":
    main()
