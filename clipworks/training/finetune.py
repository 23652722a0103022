"""Fine-tuning a trained CLIP on a narrow domain without losing its zero-shot ability, behind `clipworks finetune`.

The model is trained contrastively (as it was pre-trained) on a class-per-folder set whose captions are made from
the class names with prompt templates, or on captioned pairs (`--data`). Towers can be locked (LiT: a locked
image tower; or the reverse), or locked but for their last blocks; learning rates can decay layer by layer from
the top of each tower. Every `eval_every` steps the model is scored zero-shot on the domain's held-out images
(in-domain) and on other tasks (out-of-domain, by default the world's shape and colour on held-out pairs), so
forgetting shows in metrics.jsonl. At the end, WiSE-FT (Wortsman et al., 2022) interpolates the weights,
θ(α) = (1 - α)·θ_zero-shot + α·θ_fine-tuned, and scores each α in `alphas` the same way: results.json.

Steps, schedule, clipping, metrics and exact resume are the shared run loop's (`clipworks.training.run`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipworks.errors import CheckpointError, ConfigError, InputFileError
from clipworks.evaluation.datasets import ClassificationSet
from clipworks.io import atomic_write
from clipworks.model.clip import CLIP
from clipworks.training.run import CHECKPOINT_FILE, METRICS_FILE, read_checkpoint, read_metrics, train_steps

RUN_FILES = (CHECKPOINT_FILE, METRICS_FILE, "model")
RESULTS_FILE = "results.json"
DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
# What a resumed run must share with the run it continues: everything that decides the weights.
SAME_ON_RESUME = ("model", "pretrained", "classes", "templates", "data", "lock_image", "lock_text", "unlock_last",
                  "lr_decay", "lr", "batch_size", "seed", "weight_decay", "warmup")


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run depends on; saved in its checkpoint so `--resume` continues the same run."""

    out: str
    model: str = "default"
    pretrained: str | None = None
    classes: str | None = None  # a class-per-folder set (a folder, or a registered name such as "digits")
    templates: str | None = None  # a template set, a file, or one template with '{}'; default: the set's own
    data: str | None = None  # or captioned pairs, any --data of `clipworks train`
    lock_image: bool = False
    lock_text: bool = False
    unlock_last: int = 0  # a locked tower's last N blocks (with its final norm and projection) still train
    lr_decay: float = 1.0  # each layer's lr is lr_decay x the lr of the layer above it
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-4
    min_lr: float = 0.0
    warmup: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 50
    eval_in: str | None = None  # the in-domain task (default: the test split of `classes`)
    eval_out: tuple[str, ...] = ("world-shape", "world-colour")  # out-of-domain zero-shot tasks
    eval_n: int = 500  # images per out-of-domain task
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    save_alpha: float | None = None  # also save the WiSE-FT model at this α as model-wise/
    log_every: int = 10
    checkpoint_every: int = 100
    num_workers: int = 0
    device: str | None = None

    def check(self) -> None:
        """Raise ConfigError naming the field when the settings cannot make a run."""
        if (self.classes is None) == (self.data is None):
            raise ConfigError("give one of classes (a class-per-folder set) or data (captioned pairs)")
        if self.warmup > self.steps:
            raise ConfigError(f"warmup={self.warmup} is longer than the run (steps={self.steps})")
        if self.eval_every % self.log_every:
            raise ConfigError(f"eval_every={self.eval_every} must be a multiple of log_every={self.log_every} "
                              "(each evaluation is logged with its step's metrics row)")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay={self.lr_decay}: expected a number in (0, 1]")
        if self.unlock_last < 0:
            raise ConfigError(f"unlock_last={self.unlock_last}: expected 0 or more blocks")
        bad = [a for a in (*self.alphas, *([] if self.save_alpha is None else [self.save_alpha])) if not 0 <= a <= 1]
        if bad or not self.alphas:
            raise ConfigError(f"alphas={list(self.alphas)}, save_alpha={self.save_alpha}: WiSE-FT's α is in [0, 1]")

    @classmethod
    def from_json(cls, text: str) -> FinetuneConfig:
        """A config as `asdict` + JSON wrote it (tuples come back as lists)."""
        saved = json.loads(text)
        return cls(**{**saved, "eval_out": tuple(saved["eval_out"]), "alphas": tuple(saved["alphas"])})


# ---------------------------------------------------------------- locking and layer-wise learning rates


def towers(clip: CLIP) -> dict[str, list[list[nn.Parameter]]]:
    """Each tower's parameters by depth, input to output (`layer_groups` of the image and the text tower)."""
    return {"image": clip.image_tower.layer_groups(), "text": clip.text_tower.layer_groups()}


def lock_towers(clip: CLIP, lock_image: bool = False, lock_text: bool = False, unlock_last: int = 0) -> None:
    """Stop gradients into a locked tower (`requires_grad = False`), except its last `unlock_last` blocks and its
    final norm and projection when `unlock_last` > 0. `unlock_last` without a locked tower locks both that way."""
    both = unlock_last > 0 and not (lock_image or lock_text)
    for name, groups in towers(clip).items():
        if not (both or (lock_image if name == "image" else lock_text)):
            continue
        blocks = len(groups) - 2
        if unlock_last > blocks:
            raise ConfigError(f"unlock_last={unlock_last}: the {name} tower has only {blocks} blocks")
        keep = groups[len(groups) - 1 - unlock_last:] if unlock_last else []
        kept = {id(p) for group in keep for p in group}
        for group in groups:
            for p in group:
                p.requires_grad_(id(p) in kept)


def set_train_mode(clip: CLIP) -> None:
    """Train mode, except modules whose own parameters are all locked: a locked BatchNorm keeps its statistics,
    so a locked tower's weights and buffers stay exactly as they were."""
    clip.train()
    for module in clip.modules():
        own = list(module.parameters(recurse=False))
        if own and not any(p.requires_grad for p in own):
            module.eval()


def layerwise_param_groups(clip: CLIP, lr: float, lr_decay: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups of the trainable parameters: in a tower of L layer groups, depth d (0: the stem or the
    embeddings) gets lr * lr_decay ** (L - 1 - d), so each tower's top (final norm and projection) trains at
    `lr`; the temperature too. Weight decay as in `contrastive.param_groups`; each group is named by "layer"."""
    from clipworks.training.contrastive import param_groups

    names = {id(p): n for n, p in clip.named_parameters()}
    groups, placed = [], set()
    for tower, layers in towers(clip).items():
        for depth, params in enumerate(layers):
            placed |= {id(p) for p in params}
            scale = lr_decay ** (len(layers) - 1 - depth)
            for group in param_groups([(names[id(p)], p) for p in params], weight_decay):
                if group["params"]:
                    groups.append({**group, "lr": lr * scale, "layer": f"{tower}.{depth}"})
    rest = [(n, p) for n, p in clip.named_parameters() if id(p) not in placed]  # the temperature
    groups += [{**g, "lr": lr, "layer": "top"} for g in param_groups(rest, weight_decay) if g["params"]]
    return groups


# ---------------------------------------------------------------- WiSE-FT


def wise_ft(zero_shot: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor],
            alpha: float) -> dict[str, torch.Tensor]:
    """θ(α) = (1 - α)·θ_zero-shot + α·θ_fine-tuned for every floating-point entry of two state dicts; integer
    entries (BatchNorm's batch counter) come from the nearer end. α = 0 and α = 1 give either end exactly."""
    if set(zero_shot) != set(finetuned):
        missing = sorted(set(zero_shot) ^ set(finetuned))
        raise CheckpointError(f"WiSE-FT: the two state dicts differ in their entries ({', '.join(missing[:5])})")
    out = {}
    for key, a in zero_shot.items():
        b = finetuned[key]
        if a.shape != b.shape:
            raise CheckpointError(f"WiSE-FT: {key} has shape {list(a.shape)} and {list(b.shape)}")
        if a.is_floating_point():
            out[key] = (1.0 - alpha) * a + alpha * b.to(a.device)
        else:
            out[key] = (a if alpha < 0.5 else b).clone()
    return out


# ---------------------------------------------------------------- data and evaluation


def resolve_templates(spec: str | None, default: str) -> list[str]:
    """Templates from a shipped set's name, a file, or one template with '{}' (None: the set `default`)."""
    from clipworks.evaluation.zeroshot import load_templates, template_names

    if spec is None:
        return load_templates(default)
    if spec in template_names() or Path(spec).is_file():
        return load_templates(spec)
    if spec.count("{}") != 1:
        raise InputFileError(f"templates {spec!r}: not a template set, not a file, and not one template with '{{}}'")
    return [spec]


class ClassCaptions(torch.utils.data.Dataset):
    """A classification set as image-caption pairs: each image's captions are the templates filled with its
    class name (the training batch picks one per draw)."""

    def __init__(self, data: ClassificationSet, templates: Sequence[str]) -> None:
        self.data, self.templates = data, list(templates)

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, i: int):
        from clipworks.data.types import Sample

        label = int(self.data.labels[i])
        name = self.data.classnames[label]
        return Sample(image=self.data.images[i], captions=[t.format(name) for t in self.templates],
                      key=f"{self.data.name}/{i}", facts={"label": label, "name": name})


@dataclass
class EvalTask:
    """A zero-shot task: a classification set and its prompts (None: the set's own templates or candidates)."""

    name: str
    data: ClassificationSet
    templates: list[str] | None = None


@dataclass
class EvalTasks:
    """The held-out tasks a run is scored on: its own domain and the others it should not forget."""

    in_domain: list[EvalTask] = field(default_factory=list)
    out_of_domain: list[EvalTask] = field(default_factory=list)


def eval_tasks(cfg: FinetuneConfig) -> EvalTasks:
    """The in-domain task (test split of `eval_in` or `classes`, with the training templates) and the
    out-of-domain ones (`eval_out`, each with its own prompts)."""
    from clipworks.evaluation.datasets import load_classification

    tasks = EvalTasks()
    name = cfg.eval_in or cfg.classes
    if name is not None:
        data = load_classification(name, split="test")
        templates = resolve_templates(cfg.templates, data.templates) if cfg.eval_in is None else None
        tasks.in_domain.append(EvalTask(name, data, templates))
    for name in cfg.eval_out:
        tasks.out_of_domain.append(EvalTask(name, load_classification(name, split="eval", n=cfg.eval_n)))
    return tasks


def zero_shot_top1(model: CLIP, preprocess, tokenizer, task: EvalTask) -> float:
    """Zero-shot top-1 accuracy of `model` on one task."""
    from clipworks.evaluation.features import embed_images
    from clipworks.evaluation.tasks import zero_shot_logits
    from clipworks.evaluation.zeroshot import build_classifier, classification_metrics

    features = embed_images(model, preprocess, task.data.images)
    if task.templates is None:
        logits, _ = zero_shot_logits(model, tokenizer, features, task.data)
    else:
        logits = features @ build_classifier(model, tokenizer, task.data.classnames, task.templates)
    return classification_metrics(logits, torch.from_numpy(task.data.labels), topk=(1,))["top1"]


def evaluate(model: CLIP, preprocess, tokenizer, tasks: EvalTasks) -> dict[str, Any]:
    """{"in": {task: top-1}, "out": {task: top-1}, "in_mean", "out_mean"} with the model in eval mode."""
    was_training = model.training
    model.eval()
    result: dict[str, Any] = {}
    for side, group in (("in", tasks.in_domain), ("out", tasks.out_of_domain)):
        scores = {t.name: round(zero_shot_top1(model, preprocess, tokenizer, t), 5) for t in group}
        result[side] = scores
        result[f"{side}_mean"] = round(sum(scores.values()) / len(scores), 5) if scores else None
    if was_training:
        set_train_mode(model)
    return result


# ---------------------------------------------------------------- the run


def _training_data(cfg: FinetuneConfig) -> torch.utils.data.Dataset:
    if cfg.classes is not None:
        from clipworks.evaluation.datasets import load_classification

        data = load_classification(cfg.classes, split="train")
        return ClassCaptions(data, resolve_templates(cfg.templates, data.templates))
    from clipworks.data import open_pairs

    dataset = open_pairs(cfg.data, seed=cfg.seed)
    if isinstance(dataset, torch.utils.data.IterableDataset):
        dataset = list(dataset)  # shards into memory, so batches stay a pure function of the step
    return dataset


def _check_resume(cfg: FinetuneConfig, state: dict[str, Any], path: Path) -> None:
    saved = json.loads(state["config"])
    for key in SAME_ON_RESUME:
        if saved.get(key) != getattr(cfg, key):
            raise CheckpointError(f"{path}: was fine-tuned with {key}={saved.get(key)!r}, not {getattr(cfg, key)!r}")
    if state["step"] > cfg.steps:
        raise CheckpointError(f"{path}: is at step {state['step']}, past the run's steps={cfg.steps}")


def saved_config(out: str | Path) -> FinetuneConfig:
    """The configuration a fine-tuning run in `out` was started with, as its checkpoint records it."""
    return FinetuneConfig.from_json(read_checkpoint(out)["config"])


def finetune(cfg: FinetuneConfig, resume: bool = False, progress: bool = True,
             stop_after: int | None = None) -> dict[str, Any]:
    """Run (or continue) a fine-tuning run; returns its results. Writes into `cfg.out`: checkpoint.pt,
    metrics.jsonl (with the zero-shot evaluations), finetune_config.json, and at the end model/ (the fine-tuned
    weights), results.json (the WiSE-FT sweep and the evaluations during training) and wise_ft.png.
    `stop_after` ends this invocation after that many steps (with a checkpoint); `resume` continues it."""
    from clipworks.model.factory import create_model, default_device, get_tokenizer
    from clipworks.model.transforms import image_transform
    from clipworks.training.contrastive import FeatureModel, clamp_logit_scale, contrastive_step
    from clipworks.training.data import BatchPlan, batches, split_micro
    from clipworks.training.loss import ClipLoss

    cfg.check()
    device = torch.device(cfg.device) if cfg.device else default_device()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: a file, not a run directory (--out names a folder)")
    if not resume and any((out / name).exists() for name in RUN_FILES):
        raise CheckpointError(f"{out}: holds a run already; continue it with --resume, or give a new --out")
    state = None
    if resume:
        state = read_checkpoint(out)
        _check_resume(cfg, state, out / CHECKPOINT_FILE)
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    torch.manual_seed(cfg.seed)
    clip, preprocess = create_model(cfg.model, pretrained=cfg.pretrained, device=device)
    zero_shot = {k: v.detach().clone() for k, v in clip.state_dict().items()}
    tokenizer = get_tokenizer(clip)
    lock_towers(clip, cfg.lock_image, cfg.lock_text, cfg.unlock_last)
    set_train_mode(clip)
    optimizer = torch.optim.AdamW(layerwise_param_groups(clip, cfg.lr, cfg.lr_decay, cfg.weight_decay),
                                  lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    trainable = sum(p.numel() for p in clip.parameters() if p.requires_grad)

    dataset = _training_data(cfg)
    tasks = eval_tasks(cfg)
    plan = BatchPlan(len(dataset), cfg.batch_size, cfg.seed)
    start = 0 if state is None else int(state["step"])
    stop = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    stream = batches(dataset, plan, start, stop, image_transform(clip.config.preprocess, train=True), tokenizer,
                     cfg.num_workers)
    features, loss_fn = FeatureModel(clip), ClipLoss()
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda"
                else contextlib.nullcontext)

    def step(_: int) -> torch.Tensor:
        micro = [tuple(x.to(device) for x in part) for part in split_micro(next(stream), 1)]
        return contrastive_step(features, features, loss_fn, micro, autocast)

    pending: dict[str, Any] = {}

    def after_step(done: int) -> None:
        clamp_logit_scale(clip)
        if done % cfg.eval_every == 0 or done == cfg.steps:
            pending["eval"] = evaluate(clip, preprocess, tokenizer, tasks)

    def metrics() -> dict[str, Any]:
        # "lr" is the first group's (the deepest trained layer's); the top layers' lr beside it
        row = {"lr_top": max(g["lr"] for g in optimizer.param_groups),
               "logit_scale": round(clip.logit_scale.exp().item(), 3)}
        return {**row, **({"eval": pending.pop("eval")} if "eval" in pending else {})}

    loss = train_steps(clip, optimizer, step, out, steps=cfg.steps, warmup=cfg.warmup, config=asdict(cfg),
                       batch_size=cfg.batch_size, stop=stop, resume_state=state,
                       min_lr_ratio=cfg.min_lr / cfg.lr, grad_clip=cfg.grad_clip, log_every=cfg.log_every,
                       checkpoint_every=cfg.checkpoint_every, after_step=after_step, metrics=metrics,
                       desc="finetune", progress=progress)
    summary: dict[str, Any] = {"steps": stop, "final_loss": loss, "trainable_parameters": trainable,
                               "parameters": sum(p.numel() for p in clip.parameters()), "out": str(out)}
    if stop < cfg.steps:
        return summary

    clip.eval()
    clip.save_pretrained(out / "model")
    finetuned = {k: v.detach().clone() for k, v in clip.state_dict().items()}
    sweep = []
    for alpha in cfg.alphas:
        clip.load_state_dict(wise_ft(zero_shot, finetuned, alpha))
        sweep.append({"alpha": alpha, **evaluate(clip, preprocess, tokenizer, tasks)})
    if cfg.save_alpha is not None:
        clip.load_state_dict(wise_ft(zero_shot, finetuned, cfg.save_alpha))
        clip.save_pretrained(out / "model-wise")
    curve = [{"step": r["step"], **r["eval"]} for r in read_metrics(out / METRICS_FILE) if "eval" in r]
    results = {**summary, "in_domain": [t.name for t in tasks.in_domain],
               "out_of_domain": [t.name for t in tasks.out_of_domain], "wise_ft": sweep, "curve": curve,
               "config": asdict(cfg)}
    atomic_write(out / RESULTS_FILE, lambda tmp: tmp.write_text(json.dumps(results, indent=2) + "\n"))
    plot_wise_ft(results, out / "wise_ft.png")
    return results


def plot_wise_ft(results: Mapping[str, Any], path: Path) -> Path:
    """In-domain against out-of-domain zero-shot accuracy: the WiSE-FT curve over α, and the fine-tuning run's
    evaluations step by step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    sweep = [r for r in results["wise_ft"] if r["in_mean"] is not None and r["out_mean"] is not None]
    ax.plot([r["in_mean"] for r in sweep], [r["out_mean"] for r in sweep], "o-", color="C0", label="WiSE-FT, α")
    for r in sweep:
        ax.annotate(f"α={r['alpha']:g}", (r["in_mean"], r["out_mean"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    curve = [r for r in results.get("curve", []) if r["in_mean"] is not None and r["out_mean"] is not None]
    if curve:
        ax.plot([r["in_mean"] for r in curve], [r["out_mean"] for r in curve], "s--", color="C1", alpha=0.7,
                markersize=4, label="during fine-tuning (every eval)")
    ax.set_xlabel(f"in-domain zero-shot top-1 ({', '.join(results['in_domain'])})")
    ax.set_ylabel(f"out-of-domain zero-shot top-1 ({', '.join(results['out_of_domain'])})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def sweep_table(results: Mapping[str, Any]) -> str:
    """The WiSE-FT sweep as a Markdown table: α, each in-domain and out-of-domain task, their means."""
    names = [*results["in_domain"], *results["out_of_domain"]]
    lines = ["| α | " + " | ".join(names) + " | in-domain | out-of-domain |",
             "|---" * (len(names) + 3) + "|"]
    for r in results["wise_ft"]:
        cells = [r["in"].get(n, r["out"].get(n)) for n in names] + [r["in_mean"], r["out_mean"]]
        lines.append(f"| {r['alpha']:g} | " + " | ".join("–" if c is None else f"{100 * c:.1f}%" for c in cells) + " |")
    return "\n".join(lines)

