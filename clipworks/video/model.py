"""Video–text models on clipworks' CLIP towers: CLIP4Clip's similarity calculators (meanP, seqTransf, tightTransf)
and ActionCLIP's video–label matching, which uses the same temporal fusion with prompts and a KL loss.

Frames go through the image tower one by one. The tower splits at its default split (`forward_trunk`,
`forward_head`) into a frozen trunk (ResNet stages, or all ViT blocks but the last) and a head (attention
pooling, or the last block with ln_post and the projection) that trains; trunk features can therefore be
computed once and cached. CLIP4Clip trains CLIP's own weights at lr 1e-7, i.e. nearly frozen, so freezing the
trunk keeps its spirit at a fraction of the cost.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clipworks.errors import CheckpointError, ConfigError
from clipworks.model.clip import CLIP, MAX_LOGIT_SCALE

METHODS = ("meanP", "seqTransf", "tightTransf")
VISUAL_TRAINING = ("head", "none")
CONFIG_FILE = "video_config.json"


@dataclass
class VideoConfig:
    """A video model: which CLIP it wraps, how frame features become a score, and what of CLIP trains."""

    method: str = "meanP"
    clip_model: str = "default"
    num_frames: int = 8
    temporal_layers: int = 2
    temporal_heads: int = 4
    train_visual: str = "head"  # the image tower's head trains ("head") or nothing of it does ("none")
    labels: tuple[str, ...] = ()  # ActionCLIP: the action classes trained on, if any
    templates: tuple[str, ...] = ()  # ActionCLIP: prompt templates for labels
    # A compact vocabulary: only these rows of CLIP's token table train (and are saved); empty = the whole table
    token_ids: tuple[int, ...] = ()
    # sha256 of the CLIP weights it was trained on (`cache.weights_hash`): loading onto other weights is an error
    clip_weights: str = ""
    # Glimpses over each frame's last grid whose expected cell centres (x, y) and their change since the frame
    # before join the frame's embedding (0: none). The pooled embedding keeps what is in a frame, hardly where,
    # so motion direction needs them (`WhereReadout`).
    where_glimpses: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.train_visual not in VISUAL_TRAINING:
            raise ConfigError(f"train_visual must be one of {', '.join(VISUAL_TRAINING)}; got {self.train_visual!r}")
        if self.num_frames < 1:
            raise ConfigError(f"num_frames must be at least 1; got {self.num_frames}")
        if self.where_glimpses < 0:
            raise ConfigError(f"where_glimpses must be >= 0; got {self.where_glimpses}")
        self.labels, self.templates, self.token_ids = tuple(self.labels), tuple(self.templates), tuple(self.token_ids)


# ---------------------------------------------------------------- pooling and temporal modules


def mean_pool(frame_features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """meanP: L2-normalise each frame, average the real ones (mask [B, T]), normalise again -> [B, D]."""
    f = F.normalize(frame_features, dim=-1)
    m = mask.to(f.dtype).unsqueeze(-1)
    return F.normalize((f * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)


def _encoder(width: int, layers: int, heads: int) -> nn.TransformerEncoder:
    """A pre-LN Transformer encoder (GELU, MLP ratio 4, dropout 0.1) for the new temporal layers."""
    layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.1, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class TemporalTransformer(nn.Module):
    """seqTransf (CLIP4Clip) / Transf (ActionCLIP): frame position embeddings and a Transformer over the frames,
    added back to the frame features, then meanP. Its output projection starts at zero, so an untrained module
    is exactly meanP."""

    def __init__(self, width: int, num_frames: int, layers: int, heads: int) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.randn(num_frames, width) * 0.01)
        self.encoder = _encoder(width, layers, heads)
        self.out = nn.Linear(width, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, frame_features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = frame_features.shape[1]
        if t > self.position.shape[0]:
            raise ValueError(f"{t} frames, but the temporal module has position embeddings for {self.position.shape[0]}")
        x = self.encoder(frame_features + self.position[:t], src_key_padding_mask=~mask.bool())
        return mean_pool(frame_features + self.out(x), mask)


class CrossEncoder(nn.Module):
    """tightTransf: the sentence embedding and the frame features, with type and frame position embeddings,
    through a joint Transformer; an MLP on the sentence position's output gives one score per (text, video)."""

    def __init__(self, width: int, num_frames: int, layers: int, heads: int) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.randn(num_frames + 1, width) * 0.01)
        self.type_embedding = nn.Parameter(torch.randn(2, width) * 0.01)
        self.encoder = _encoder(width, layers, heads)
        self.score = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Scores [N_text, N_video] for text [N_text, D] x frames [N_video, T, D] (mask [N_video, T])."""
        n_text, (n_video, t, d) = text.shape[0], frames.shape
        text = F.normalize(text, dim=-1)
        frames = F.normalize(frames, dim=-1)
        rows = []
        per = max(1, chunk // max(n_video, 1))
        for start in range(0, n_text, per):
            tx = text[start:start + per]
            k = tx.shape[0]
            tokens = torch.cat([
                (tx + self.type_embedding[0] + self.position[0]).unsqueeze(1).expand(k, n_video, d).unsqueeze(2),
                (frames + self.type_embedding[1] + self.position[1:t + 1]).unsqueeze(0).expand(k, n_video, t, d),
            ], dim=2).reshape(k * n_video, t + 1, d)
            pad = torch.cat([torch.zeros(n_video, 1, dtype=torch.bool, device=mask.device), ~mask.bool()], dim=1)
            out = self.encoder(tokens, src_key_padding_mask=pad.repeat(k, 1))
            rows.append(self.score(out[:, 0]).view(k, n_video))
        return torch.cat(rows)


class WhereReadout(nn.Module):
    """Where a frame's objects are and where they are going: `glimpses` attention maps over each frame's grid
    cells, each read out as its expected cell centre (x, y in [-1, 1]), and its change since the frame before
    (the first frame's is zero), mapped into the embedding space. Averaged over frames (meanP, or seqTransf's
    pooling) the change is the net displacement, so a video's embedding holds which way things moved. The map
    starts at zero, so an untrained readout leaves the frame embeddings as they were."""

    def __init__(self, channels: int, rows: int, cols: int, glimpses: int, width: int) -> None:
        super().__init__()
        self.score = nn.Linear(channels, glimpses)
        ys, xs = torch.meshgrid((torch.arange(rows) + 0.5) / rows * 2 - 1, (torch.arange(cols) + 0.5) / cols * 2 - 1,
                                indexing="ij")
        self.register_buffer("centres", torch.stack([xs.flatten(), ys.flatten()], dim=1), persistent=False)  # [N, 2]
        self.out = nn.Linear(4 * glimpses, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def centres_of(self, grid: torch.Tensor) -> torch.Tensor:
        """Each glimpse's expected cell centre [..., G, 2] (x, y) of grids [..., N, C]."""
        return self.score(grid.float()).softmax(dim=-2).transpose(-1, -2) @ self.centres

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """Grids of a clip's frames [B, T, N, C] -> [B, T, width]."""
        where = self.centres_of(grid).flatten(2)  # [B, T, 2G]
        change = torch.cat([torch.zeros_like(where[:, :1]), where[:, 1:] - where[:, :-1]], dim=1)
        return self.out(torch.cat([where, change], dim=-1))


class TokenRows(nn.Module):
    """CLIP's token table, frozen, with a trained copy of the rows of a compact vocabulary (`ids`): a fine-tuned
    text tower then saves a few hundred rows instead of all 49,408 (ids outside the vocabulary keep CLIP's row)."""

    def __init__(self, table: nn.Embedding, ids: tuple[int, ...]) -> None:
        super().__init__()
        if not ids or min(ids) < 0 or max(ids) >= table.num_embeddings or len(set(ids)) != len(ids):
            raise ConfigError(f"token_ids must be distinct ids below {table.num_embeddings}; got {len(ids)} ids")
        self.weight = table.weight
        self.weight.requires_grad_(False)
        self.rows = nn.Parameter(table.weight.detach()[list(ids)].clone())
        lookup = torch.full((table.num_embeddings,), -1, dtype=torch.long)
        lookup[list(ids)] = torch.arange(len(ids))
        self.register_buffer("lookup", lookup, persistent=False)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        row = self.lookup[text]
        own = self.rows[row.clamp(min=0)]
        return torch.where((row >= 0).unsqueeze(-1), own, F.embedding(text, self.weight))


# ---------------------------------------------------------------- the model


class VideoCLIP(nn.Module):
    """A CLIP model with a video side: frame features -> (video embedding | joint score) against text."""

    def __init__(self, config: VideoConfig, clip: CLIP) -> None:
        super().__init__()
        self.config = config
        self.clip = clip
        width, t = clip.config.embed_dim, config.num_frames
        heads = config.temporal_heads if width % config.temporal_heads == 0 else 1
        self.temporal = TemporalTransformer(width, t, config.temporal_layers, heads) if config.method == "seqTransf" else None
        self.cross = CrossEncoder(width, t, config.temporal_layers, heads) if config.method == "tightTransf" else None
        self.where = None
        if config.where_glimpses:
            rows, cols, channels = clip.image_tower.grid_shape(clip.config.vision.image_size)
            self.where = WhereReadout(channels, rows, cols, config.where_glimpses, width)
        for p in self.clip.image_tower.parameters():
            p.requires_grad_(False)
        if config.train_visual == "head":
            for p in self.clip.image_tower.head_parameters():
                p.requires_grad_(True)
        if config.token_ids:
            self.compact_vocabulary(config.token_ids)

    @property
    def device(self) -> torch.device:
        return self.clip.device

    def compact_vocabulary(self, ids: tuple[int, ...]) -> None:
        """Train (and save) only the token rows `ids` of the text tower's table; the rest stays CLIP's."""
        text = self.clip.text_tower
        table = text.token_embedding
        if isinstance(table, TokenRows):
            raise ConfigError("this model's token table is compact already")
        text.token_embedding = TokenRows(table, tuple(ids))
        self.config = replace(self.config, token_ids=tuple(ids))

    @property
    def has_video_embedding(self) -> bool:
        """meanP and seqTransf embed a video on its own (indexable); tightTransf only scores pairs."""
        return self.cross is None

    def new_parameters(self) -> list[nn.Parameter]:
        """The layers CLIP does not have (temporal module or cross encoder); they train at the higher rate."""
        return [p for name, p in self.named_parameters() if not name.startswith("clip.") and p.requires_grad]

    def clip_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.clip.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> VideoCLIP:
        super().train(mode)
        self.clip.image_tower.eval()  # frozen trunk: its BatchNorm statistics stay as trained
        return self

    # ------------------------------------------------------------ encoders

    def trunk(self, frames: torch.Tensor) -> torch.Tensor:
        """Preprocessed frames [B, T, 3, H, W] -> trunk features [B, T, ...] (no gradients: the trunk is frozen)."""
        b, t = frames.shape[:2]
        with torch.no_grad():
            x = self.clip.image_tower.forward_trunk(frames.flatten(0, 1).to(self.clip.device))
        return x.view(b, t, *x.shape[1:])

    def frame_features(self, trunk: torch.Tensor) -> torch.Tensor:
        """Trunk features [B, T, ...] -> frame embeddings [B, T, D]."""
        b, t = trunk.shape[:2]
        if self.where is None:
            return self.clip.image_tower.forward_head(trunk.flatten(0, 1)).view(b, t, -1).float()
        embedding, grid = self.clip.image_tower.forward_head_and_grid(trunk.flatten(0, 1))
        return embedding.float().view(b, t, -1) + self.where(grid.view(b, t, *grid.shape[1:]))

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Preprocessed frames [B, T, 3, H, W] -> frame embeddings [B, T, D]."""
        return self.frame_features(self.trunk(frames))

    def encode_video(self, frame_features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frame embeddings [B, T, D] and mask [B, T] -> L2-normalised video embeddings [B, D]."""
        if self.cross is not None:
            raise ConfigError("a tightTransf model scores (text, video) pairs jointly and has no video embedding; "
                              "use a meanP or seqTransf model to index videos")
        if self.temporal is not None:
            return self.temporal(frame_features, mask)
        return mean_pool(frame_features, mask)

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Token ids [B, L] -> text embeddings [B, D] (the CLIP text tower)."""
        return self.clip.encode_text(text.to(self.clip.device), normalize=normalize)

    def logits(self, text_features: torch.Tensor, frame_features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scores [N_text, N_video]: scaled cosine for meanP/seqTransf, the cross encoder's score for tightTransf."""
        if self.cross is not None:
            return self.cross(text_features, frame_features, mask)
        video = self.encode_video(frame_features, mask)
        scale = self.clip.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        return scale * F.normalize(text_features, dim=-1) @ video.t()

    # ------------------------------------------------------------ saving and loading

    def stored_state(self) -> dict[str, torch.Tensor]:
        """What a saved video model holds: its own layers and the CLIP weights that trained; the frozen rest is
        loaded again from `config.clip_model`."""
        trained = {f"clip.{n}" for n, p in self.clip.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if not k.startswith("clip.") or k in trained}

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """video_config.json and model.safetensors; `load_video_model(directory)` reads them back."""
        from clipworks.weights import save_weights

        out = save_weights(self.stored_state(), directory, dtype)
        (out / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        return out


def load_video_model(path: str | Path = "default", device: str | None = None) -> VideoCLIP:
    """A saved video model directory (from `save_pretrained` or `clipworks video train`), or a shipped one by
    name; its CLIP model is loaded by the name in its config."""
    from clipworks.model.factory import create_model
    from clipworks.weights import load_weights, read_config, resolve

    directory = resolve(path, "clipworks.video")
    raw = read_config(directory, CONFIG_FILE, "video model")
    try:
        config = VideoConfig(**{k: v for k, v in raw.items() if k in {f.name for f in fields(VideoConfig)}})
    except TypeError as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: unreadable video model config ({exc})") from None
    clip, _ = create_model(config.clip_model, device="cpu")
    if config.clip_weights:
        from clipworks.cache import weights_hash

        now = weights_hash(clip)
        if now != config.clip_weights:
            raise CheckpointError(f"{directory}: trained on other weights of the CLIP model {config.clip_model!r} "
                                  f"(sha256 {config.clip_weights[:12]}, now {now[:12]}); train it again on these "
                                  "(the shipped one: python -m clipworks.video.make_default)")
    model = VideoCLIP(config, clip)
    load_weights(model, directory, not_stored=lambda key: key.startswith("clip."),
                 mismatch=lambda key, got, want: f"{key} has shape {list(got)}; this config needs {list(want)}")
    if device is not None:
        model.to(device)
    return model.eval()


def video_model(name: str | Path = "default", method: str = "meanP", device: str | None = None) -> VideoCLIP:
    """A video model: a saved video model directory or a shipped one by name ("default": the shipped video
    model), else any CLIP model (name, path) wrapped untrained with `method` (`zero_shot_video_model`)."""
    from clipworks.weights import resolve

    path = resolve(str(name), "clipworks.video")
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        return load_video_model(path, device)
    return zero_shot_video_model(str(name), method, device)


def zero_shot_video_model(clip_model: str = "default", method: str = "meanP", device: str | None = None) -> VideoCLIP:
    """A CLIP model (name, path) wrapped untrained with `method` (meanP: zero-shot CLIP on frames)."""
    from clipworks.model.factory import create_model

    clip, _ = create_model(clip_model, device=device)
    model = VideoCLIP(VideoConfig(method=method, clip_model=clip_model), clip).to(clip.device)
    return model.eval()


def shipped_video_model_path(name: str) -> Path:
    """The packaged directory of a shipped video model ('default'; made by `python -m clipworks.video.make_default`)."""
    from clipworks.weights import resolve

    return resolve(name, "clipworks.video")


def preprocess_frames(model: VideoCLIP, frames: Any) -> torch.Tensor:
    """Frames [B, T, H, W, 3] uint8 (numpy) -> the model's preprocessed input [B, T, 3, S, S]."""
    import numpy as np
    from PIL import Image

    from clipworks.model.transforms import image_transform

    transform = image_transform(model.clip.config.preprocess)
    frames = np.asarray(frames)
    out = torch.stack([torch.stack([transform(Image.fromarray(f)) for f in clip]) for clip in frames])
    return out
