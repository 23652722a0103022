"""ClipCap: the loss covers caption tokens only, decoding is consistent, checkpoints load or fail clearly."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipworks.captioning.decoding import decode, generate
from clipworks.captioning.model import CaptionerConfig, ClipCap, load_captioner
from clipworks.captioning.tokenizer import gpt2_tokenizer
from clipworks.captioning.train import CaptionTrainConfig, encode_captions, train_captioner
from clipworks.errors import CheckpointError

TINY = dict(n_layer=2, n_head=2, n_embd=32, n_positions=48)


def _model(mapper: str = "mlp", **kw) -> ClipCap:
    torch.manual_seed(0)
    return ClipCap(CaptionerConfig(clip_dim=16, mapper=mapper, prefix_length=4, lm=TINY, **kw)).eval()


def test_gpt2_tokenizer_ids():
    tok = gpt2_tokenizer()
    assert len(tok) == 50257 and tok.eos_token_id == 50256
    assert tok("hello world")["input_ids"] == [31373, 995]  # GPT-2's ids


@pytest.mark.parametrize("mapper", ["mlp", "transformer"])
def test_loss_is_over_caption_tokens_only(mapper):
    model = _model(mapper)
    tok = gpt2_tokenizer()
    clip = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    # "!" is token 0: ClipCap's original code padded with 0 and so also dropped real "!" tokens from the loss.
    tokens, mask = encode_captions(tok, ["a red star!", "two blue circles on the left of a big heart"], 24)
    assert 0 in tokens[0][mask[0] == 1].tolist()
    loss = model(clip, tokens, mask)
    # reference: each caption alone, no padding, the CE of positions k-1 .. k+T-2 against the T caption tokens
    total, count = 0.0, 0
    for i in range(2):
        t = tokens[i][mask[i] == 1][None]
        embeds = torch.cat([model.prefix(clip[i:i + 1]), model.lm.transformer.wte(t)], dim=1)
        logits = model.lm(inputs_embeds=embeds).logits[0, 3:-1]
        total += F.cross_entropy(logits, t[0], reduction="sum").item()
        count += t.shape[1]
    assert loss.item() == pytest.approx(total / count, rel=1e-5)
    # padding ids do not matter
    padded = tokens.clone()
    padded[mask == 0] = 123
    assert model(clip, padded, mask).item() == pytest.approx(loss.item(), rel=1e-6)


def test_frozen_lm_trains_only_the_mapper():
    model = _model("transformer", freeze_lm=True)
    counts = model.parameter_counts()
    assert counts["trainable"] == sum(p.numel() for p in model.mapper.parameters()) < counts["total"]


def test_decoding_methods_agree_where_they_should():
    model = _model()
    clip = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    greedy = generate(model, clip, method="greedy", max_tokens=6)
    assert all(len(g) <= 6 for g in greedy)
    assert generate(model, clip, method="beam", beam_width=1, max_tokens=6) == greedy
    assert generate(model, clip, method="nucleus", top_p=1e-9, max_tokens=6) == greedy  # only the top token
    a = generate(model, clip, method="nucleus", top_p=0.95, max_tokens=6, seed=3)
    assert a == generate(model, clip, method="nucleus", top_p=0.95, max_tokens=6, seed=3)
    assert all(isinstance(s, str) for s in decode(gpt2_tokenizer(), greedy))


def test_batched_beam_search_equals_one_image_at_a_time():
    model = _model()
    clip = torch.randn(5, 16, generator=torch.Generator().manual_seed(4))
    together = generate(model, clip, method="beam", beam_width=3, max_tokens=8)
    alone = [generate(model, clip[i:i + 1], method="beam", beam_width=3, max_tokens=8)[0] for i in range(5)]
    assert together == alone and len(set(map(tuple, together))) > 1


def test_save_load_round_trip_and_width_mismatch(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "cap")
    again = load_captioner(tmp_path / "cap")
    clip = torch.randn(2, 16)
    assert generate(model, clip, method="greedy", max_tokens=5) == generate(again, clip, method="greedy", max_tokens=5)
    config = json.loads((tmp_path / "cap" / "clipcap_config.json").read_text())
    config["lm"]["n_embd"] = 64  # the saved mapper was built for width 32
    (tmp_path / "cap" / "clipcap_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="width 64"):
        load_captioner(tmp_path / "cap")
    with pytest.raises(CheckpointError, match="no clipcap_config.json"):
        load_captioner(tmp_path)


def test_training_lowers_the_loss_and_resumes_exactly(tmp_path):
    base = dict(data_options={"size": 200}, batch_size=16, lm=TINY, prefix_length=4, checkpoint_every=6, lr=3e-3, warmup=2,
                lm_pretrain_steps=3)
    full = train_captioner(CaptionTrainConfig(out=str(tmp_path / "full"), steps=12, **base), progress=False)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    vocab = json.loads((tmp_path / "full" / "model" / "clipcap_config.json").read_text())["vocab"]
    assert 20 < len(vocab) < 400 and 50256 in vocab  # a compact vocabulary of the captions' GPT-2 tokens
    assert losses[-1] < math.log(len(vocab))  # below a uniform guess over that vocabulary
    split_cfg = CaptionTrainConfig(out=str(tmp_path / "split"), steps=12, **base)
    train_captioner(split_cfg, progress=False, stop_after=6)
    assert not (tmp_path / "split" / "model").exists()
    resumed = train_captioner(split_cfg, resume=True, progress=False)
    again = [json.loads(x)["loss"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert resumed["final_loss"] == pytest.approx(full["final_loss"], rel=1e-6) and again == losses


def test_caption_cli_bad_input(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    _model().save_pretrained(tmp_path / "cap")
    # a folder whose only caption file is empty
    (tmp_path / "empty").mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "empty" / "red.png")
    (tmp_path / "empty" / "red.txt").write_text("  \n")
    cases = [(["run", str(bad), "--captioner", str(tmp_path / "cap")], "bad.png"),
             (["run", str(bad)], "bad.png"),  # the shipped default captioner, and the image is checked first
             (["run", str(tmp_path / "empty" / "red.png"), "--captioner", str(tmp_path)], "no clipcap_config.json"),
             (["eval", "--data", str(tmp_path / "empty")], "red.txt: no captions (the file is empty"),
             (["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "empty")], "no captions"),
             (["train"], "the following arguments are required: --out")]
    for args, expected in cases:
        proc = subprocess.run([sys.executable, "-m", "clipworks.cli.main", "caption", *args], env=env,
                              capture_output=True, text=True)
        status = 2 if "required" in expected else 1  # a usage error, or an error in the input
        assert proc.returncode == status and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_lm_from_a_local_gpt2_checkpoint_directory(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(**TINY)).save_pretrained(tmp_path / "gpt2")  # as a user's GPT-2 directory is laid out
    reference = GPT2LMHeadModel.from_pretrained(str(tmp_path / "gpt2"), local_files_only=True)
    model = ClipCap(CaptionerConfig(clip_dim=16, prefix_length=4, lm_path=str(tmp_path / "gpt2"))).eval()
    ours = model.lm.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in reference.state_dict().items())
    assert len(model.vocab) == 50257 and model.width == 32
    model.save_pretrained(tmp_path / "cap")  # the captioner now carries the LM: no need for the GPT-2 directory
    again = load_captioner(tmp_path / "cap")
    clip = torch.randn(2, 16, generator=torch.Generator().manual_seed(5))
    assert generate(again, clip, method="greedy", max_tokens=5) == generate(model, clip, method="greedy", max_tokens=5)
    with pytest.raises(CheckpointError, match="no config.json"):
        ClipCap(CaptionerConfig(clip_dim=16, lm_path=str(tmp_path)))
