"""Published weights by tag: the registry against openai/CLIP's and open_clip's lists, and resolving a tag from
the caches or a download, all against a loopback HTTP server on 127.0.0.1 (no test reaches the internet)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import open_clip  # the reference list of tags; without it the suite fails, it does not skip
import pytest
import torch

import clipworks
from clipworks.errors import CheckpointError, ConfigError, DownloadError
from clipworks.model.config import get_model_config, is_model_name, list_models
from clipworks.model.pretrained_tags import (
    HASH_SUFFIX, PretrainedTag, cache_path, fetch_pretrained, find_pretrained, list_pretrained,
)

ARCH = "ViT-Tiny-8-64"  # a small architecture with a config, standing in for a published one
# openai/CLIP clip/clip.py _MODELS, by clipworks' name: the SHA-256 is the URL's last folder.
OPENAI_FILES = {"RN50": "RN50.pt", "RN101": "RN101.pt", "RN50x4": "RN50x4.pt", "RN50x16": "RN50x16.pt",
                "RN50x64": "RN50x64.pt", "ViT-B-32": "ViT-B-32.pt", "ViT-B-16": "ViT-B-16.pt",
                "ViT-L-14": "ViT-L-14.pt", "ViT-L-14-336": "ViT-L-14-336px.pt"}


# ---- the registry ---------------------------------------------------------------------------------------------

def test_every_entry_names_an_architecture_and_resolves_to_a_cache_path(tmp_path):
    entries = list_pretrained()
    assert len({e.name for e in entries}) == len(entries) == 58
    for e in entries:
        assert is_model_name(e.architecture) and e.architecture in list_models(), e.name
        get_model_config(e.architecture)
        path = cache_path(e, tmp_path)
        assert path.parent == tmp_path / e.architecture / e.tag and path.name, e.name
        assert all(url.startswith("https://") for url, _ in e.sources()), e.name


def test_openai_entries_carry_the_hash_their_url_names():
    openai = {e.architecture: e for e in list_pretrained() if e.tag == "openai"}
    assert set(openai) == set(OPENAI_FILES)
    for arch, e in openai.items():
        match = re.fullmatch(r"https://openaipublic\.azureedge\.net/clip/models/([0-9a-f]{64})/(.+)", e.url)
        assert match and match.group(1) == e.sha256 and match.group(2) == OPENAI_FILES[arch], e.url
        assert e.quick_gelu is True
    assert openai["ViT-B-32"].sha256 == "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"


def test_registry_matches_open_clip_for_every_tag_of_our_architectures():
    from open_clip import pretrained as reference

    ours = {(e.architecture, e.tag): e for e in list_pretrained()}
    theirs = {(arch, tag) for arch in OPENAI_FILES for tag in reference.list_pretrained_tags_by_model(arch)}
    assert set(ours) == theirs  # nothing of open_clip's for these architectures is left out
    for (arch, tag), e in ours.items():
        cfg = reference.get_pretrained_cfg(arch, tag)
        assert (e.url or "") == cfg["url"] and (e.hf_hub or "") == cfg["hf_hub"].rstrip("/"), e.name
        assert e.quick_gelu == cfg.get("quick_gelu", False), e.name
        if e.sha256 is not None and "mlfoundations" in e.url:  # open_clip checks the name's last part as a prefix
            assert e.url.rsplit("-", 1)[-1].split(".")[0] == e.sha256
        mean = tuple(e.preprocess.get("mean", get_model_config(arch).preprocess.mean))
        assert mean == tuple(cfg["mean"]), e.name


def test_a_tag_sets_the_activation_and_preprocessing_its_weights_were_trained_with():
    vit_l = get_model_config("ViT-L-14")
    assert vit_l.quick_gelu is True  # OpenAI's activation in the architecture's config
    laion = find_pretrained("ViT-L-14", "laion2b_s32b_b82k").apply(vit_l)
    assert laion.quick_gelu is False and laion.preprocess.mean == (0.5, 0.5, 0.5) == laion.preprocess.std
    assert laion.preprocess.image_size == 224 and laion.vision == vit_l.vision
    assert find_pretrained("ViT-L-14", "openai").apply(vit_l) == vit_l


# ---- a loopback server with seeded random weights in open_clip's (= OpenAI's key) layout ---------------------

@pytest.fixture(scope="module")
def weights() -> bytes:
    """A seeded open_clip model of ARCH's shapes, saved as open_clip saves `open_clip_pytorch_model.bin`."""
    c = get_model_config(ARCH)
    torch.manual_seed(0)
    model = open_clip.model.CLIP(
        embed_dim=c.embed_dim, quick_gelu=False,
        vision_cfg={"image_size": c.vision.image_size, "layers": c.vision.layers, "width": c.vision.width,
                    "patch_size": c.vision.patch_size, "head_width": c.vision.width // c.vision.num_heads},
        text_cfg={"context_length": c.text.context_length, "vocab_size": c.text.vocab_size, "width": c.text.width,
                  "heads": c.text.heads, "layers": c.text.layers},
    )
    with torch.no_grad():  # move LayerNorms and biases off their 1/0 init so a misplaced tensor shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    buffer = io.BytesIO()
    torch.save({k: v.half() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server: _Server = self.server
        rng = self.headers.get("Range")
        server.requests.append((self.path, rng))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)) if rng else 0
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        rest = body[start:]
        if server.drops > 0:  # promise the whole rest, send half of it, hang up
            server.drops -= 1
            rest = rest[: len(rest) // 2]
        self.wfile.write(rest)

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]]
    drops: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server():
    srv = _Server(("127.0.0.1", 0), _Handler)  # port 0: the system picks a free one
    srv.files, srv.requests, srv.drops = {}, [], 0
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """Empty caches everywhere (HOME, Hugging Face, clipworks) and downloads neither allowed nor forbidden."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("CLIPWORKS_CACHE", str(tmp_path / "clipworks"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CLIPWORKS_ALLOW_DOWNLOAD", raising=False)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _entry(server, weights: bytes, sha256: str | None = "right", name: str = "/weights/tiny.pt") -> PretrainedTag:
    server.files[name] = weights
    if sha256 == "right":
        sha256 = hashlib.sha256(weights).hexdigest()
    return PretrainedTag(ARCH, "loopback", quick_gelu=False, url=server.base + name, sha256=sha256)


def _outputs(model) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 64)
    texts = torch.randint(1, 49407, (2, model.config.text.context_length))
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(texts)


def _left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_download_verifies_places_and_loads_like_the_file_itself(server, weights, home):
    entry = _entry(server, weights)
    model, _ = clipworks.create_model(ARCH, pretrained=entry, device="cpu", download=True)
    path = cache_path(entry)
    assert path == home / "clipworks" / "pretrained" / ARCH / "loopback" / "tiny.pt"
    assert path.read_bytes() == weights
    assert path.with_name("tiny.pt" + HASH_SUFFIX).read_text() == f"{entry.sha256}  tiny.pt\n"
    assert _left_in(path.parent) == ["tiny.pt", "tiny.pt.sha256"]  # no .partial left behind
    direct = home / "direct.pt"
    direct.write_bytes(weights)
    reference, _ = clipworks.create_model(ARCH, pretrained=direct, device="cpu", quick_gelu=False)
    for ours, theirs in zip(_outputs(model), _outputs(reference)):
        assert torch.equal(ours, theirs)
    assert model.config.quick_gelu is False
    # A second load is served by the cache, with downloads off: no new request reaches the server.
    again, _ = clipworks.create_model(ARCH, pretrained=entry, device="cpu", download=False)
    assert len(server.requests) == 1
    assert torch.equal(_outputs(again)[0], _outputs(model)[0])


def test_truncated_file_with_a_published_hash_is_refused_and_not_kept(server, weights, home):
    entry = _entry(server, weights)
    server.files["/weights/tiny.pt"] = weights[: len(weights) // 2]  # served whole, but the file itself is short
    with pytest.raises(DownloadError) as err:
        fetch_pretrained(entry, download=True, progress=False)
    assert entry.sha256 in str(err.value) and hashlib.sha256(weights[: len(weights) // 2]).hexdigest() in str(err.value)
    assert _left_in(home / "clipworks") == []


def test_truncated_file_without_a_hash_is_refused_as_unreadable_and_not_kept(server, weights, home):
    entry = _entry(server, weights[: len(weights) // 2], sha256=None)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        fetch_pretrained(entry, download=True, progress=False)
    assert _left_in(home / "clipworks") == []


def test_wrong_hash_names_both_hashes_and_keeps_nothing(server, weights, home):
    wrong = hashlib.sha256(b"other weights").hexdigest()
    entry = _entry(server, weights, sha256=wrong)
    with pytest.raises(DownloadError) as err:
        fetch_pretrained(entry, download=True, progress=False)
    assert wrong in str(err.value) and hashlib.sha256(weights).hexdigest() in str(err.value)
    assert _left_in(home / "clipworks") == []


def test_dropped_connection_resumes_with_a_range_request(server, weights, home):
    entry = _entry(server, weights)
    server.drops = 1
    path = fetch_pretrained(entry, download=True, progress=False)
    half = len(weights) // 2
    assert server.requests == [("/weights/tiny.pt", None), ("/weights/tiny.pt", f"bytes={half}-")]
    assert path.read_bytes() == weights


def test_a_download_that_keeps_dropping_is_kept_in_part_and_resumed_by_the_next_call(server, weights, home):
    entry = _entry(server, weights)
    server.drops = 3  # every attempt of the first call
    with pytest.raises(DownloadError, match="interrupted"):
        fetch_pretrained(entry, download=True, progress=False)
    folder = cache_path(entry).parent
    assert _left_in(folder) == ["tiny.pt.partial"]
    kept = (folder / "tiny.pt.partial").stat().st_size
    assert 0 < kept < len(weights) and (folder / "tiny.pt.partial").read_bytes() == weights[:kept]
    path = fetch_pretrained(entry, download=True, progress=False)
    assert server.requests[-1] == ("/weights/tiny.pt", f"bytes={kept}-")
    assert path.read_bytes() == weights and _left_in(folder) == ["tiny.pt", "tiny.pt.sha256"]


def test_download_not_allowed_names_the_url_and_the_cache_path(server, weights, home, monkeypatch):
    entry = _entry(server, weights)
    with pytest.raises(DownloadError) as err:
        clipworks.create_model(ARCH, pretrained=entry, device="cpu")
    message = str(err.value)
    assert f"{ARCH}/loopback is not in the cache ({cache_path(entry)})" in message
    assert f"download it from {entry.url} or pass the file" in message and "CLIPWORKS_ALLOW_DOWNLOAD=1" in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # wins over an explicit download=True
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        fetch_pretrained(entry, download=True, progress=False)
    assert server.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("CLIPWORKS_ALLOW_DOWNLOAD", "1")
    assert fetch_pretrained(entry, progress=False).read_bytes() == weights


def test_recorded_hash_is_checked_on_every_later_load(server, weights, home):
    entry = _entry(server, weights, sha256=None)  # the publisher gives no hash: recorded on first download
    path = fetch_pretrained(entry, download=True, progress=False)
    record = path.with_name(path.name + HASH_SUFFIX).read_text().split()[0]
    assert record == hashlib.sha256(weights).hexdigest()
    tampered = bytearray(weights)
    tampered[-10] ^= 0xFF
    path.write_bytes(bytes(tampered))
    with pytest.raises(CheckpointError) as err:
        fetch_pretrained(entry, download=False)
    assert record in str(err.value) and hashlib.sha256(tampered).hexdigest() in str(err.value)


def test_hf_repo_falls_back_to_the_bin_file_when_there_is_no_safetensors(server, weights, home, monkeypatch):
    # An hf_hub entry downloads from huggingface.co; here the same layout is served on the loopback.
    server.files["/org/tiny/resolve/main/open_clip_pytorch_model.bin"] = weights
    entry = PretrainedTag(ARCH, "hf", quick_gelu=False, hf_hub="org/tiny")
    local = [(url.replace("https://huggingface.co", server.base), sha) for url, sha in entry.sources()]
    monkeypatch.setattr(PretrainedTag, "sources", lambda self: local)
    path = fetch_pretrained(entry, download=True, progress=False)
    assert [r[0] for r in server.requests] == ["/org/tiny/resolve/main/open_clip_model.safetensors",
                                               "/org/tiny/resolve/main/open_clip_pytorch_model.bin"]
    assert path.name == "open_clip_pytorch_model.bin" and path.read_bytes() == weights


def _hf_cache(root: Path, repo: str, name: str, data: bytes, blob: str) -> Path:
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "blobs").mkdir(parents=True)
    (folder / "blobs" / blob).write_bytes(data)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / name).symlink_to(Path("..", "..", "blobs", blob))
    return snapshot / name


def test_a_file_in_the_hugging_face_cache_is_found_without_network(weights, home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sha = hashlib.sha256(weights).hexdigest()
    file = _hf_cache(home / "hf", "org/tiny", "open_clip_pytorch_model.bin", weights, sha)
    entry = PretrainedTag(ARCH, "hf", quick_gelu=False, hf_hub="org/tiny", url="http://127.0.0.1:9/unreachable.pt")
    assert fetch_pretrained(entry) == file
    model, _ = clipworks.create_model(ARCH, pretrained=entry, device="cpu")
    reference, _ = clipworks.create_model(ARCH, pretrained=file, device="cpu", quick_gelu=False)
    assert torch.equal(_outputs(model)[1], _outputs(reference)[1])
    # A blob whose bytes are not what its name says is refused.
    damaged = bytearray(weights)
    damaged[-1] ^= 0xFF
    file.resolve().write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match=sha):
        fetch_pretrained(entry)


# ---- tags by name, and the command line ---------------------------------------------------------------------

def test_a_registered_tag_by_name_needs_the_cache_or_a_download(home):
    with pytest.raises(DownloadError) as err:
        clipworks.create_model("ViT-B/32", pretrained="openai", device="cpu")
    entry = find_pretrained("ViT-B-32", "openai")
    assert str(err.value).startswith(f"ViT-B-32/openai is not in the cache ({cache_path(entry)}); "
                                     f"download it from {entry.url} or pass the file")
    with pytest.raises(ConfigError, match="neither a pretrained tag of ViT-B-32 .*laion2b_s34b_b79k"):
        clipworks.create_model("ViT-B-32", pretrained="laion2b_nonesuch", device="cpu")


def test_models_lists_the_tags_and_which_are_cached(home, capsys):
    from clipworks.cli.main import main

    entry = find_pretrained("RN50", "openai")
    placed = cache_path(entry)
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"placeholder")
    assert main(["models", "--pretrained", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["architecture"], r["tag"]) for r in rows] == [(e.architecture, e.tag) for e in list_pretrained()]
    cached = {(r["architecture"], r["tag"]): r["cached"] for r in rows if r["cached"]}
    assert cached == {("RN50", "openai"): {"path": str(placed), "cache": "clipworks"}}
    assert main(["models", "--pretrained"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["RN50", "openai"] and line.endswith(f"clipworks: {placed}") for line in lines)


def test_cli_pretrained_tag_without_download_is_a_one_line_error(home, capsys):
    from clipworks.cli.main import main

    assert main(["embed", "--text", "a dog", "--model", "ViT-B-32", "--pretrained", "openai"]) == 1
    err = capsys.readouterr().err
    assert "ViT-B-32/openai is not in the cache" in err and "--download" in err and len(err.strip().splitlines()) == 1


def test_an_unreachable_server_is_a_one_line_error_that_leaves_nothing(home, free_port):
    url = f"http://127.0.0.1:{free_port()}/tiny.pt"  # nothing listens there
    entry = PretrainedTag(ARCH, "gone", quick_gelu=False, url=url)
    with pytest.raises(DownloadError, match=f"{re.escape(url)}: download failed"):
        fetch_pretrained(entry, download=True, progress=False)
    assert _left_in(home / "clipworks") == []
