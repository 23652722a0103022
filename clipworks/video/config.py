"""The training recipe of a video model, importable without torch (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass

TRAIN_METHODS = ("meanP", "seqTransf", "tightTransf", "actionclip")


@dataclass
class VideoTrainConfig:
    """A video training run. `method` is a CLIP4Clip similarity calculator trained on captions with InfoNCE,
    or "actionclip": labels as prompts, `fusion` over frames, and the KL multi-positive loss (`loss` "auto");
    `loss="infonce"` gives ActionCLIP's ablation with one positive per row. `data` is "world" (the generated
    video world's train split, drawn in `styles`: "classic", a style set or style names joined by '+', never a
    held-out style) or a folder of videos. CLIP's trained weights use `lr_clip`, new layers `lr_new`.
    `label_weight` > 0 adds ActionCLIP's KL loss on label prompts to a CLIP4Clip method's caption loss, so one
    model both retrieves and classifies. `compact_vocab`: only the token rows of the words the training texts
    use train, so the saved text side is small (`model.TokenRows`). `where_glimpses`: see `VideoConfig`."""

    out: str
    method: str = "meanP"
    fusion: str = "seqTransf"
    loss: str = "auto"
    data: str = "world"
    styles: str = "classic"
    train_size: int = 4000
    clip_model: str = "default"
    num_frames: int = 8
    temporal_layers: int = 2
    train_visual: str = "head"
    steps: int = 1500
    batch_size: int = 32
    lr_clip: float = 5e-4
    lr_new: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 50
    seed: int = 0
    checkpoint_every: int = 200
    label_weight: float = 0.0
    compact_vocab: bool = False
    where_glimpses: int = 0
