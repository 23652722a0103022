"""Decoding captions from a ClipCap prefix: greedy, beam search and nucleus sampling, stopping at the end token
or `max_tokens`. Greedy and nucleus run the whole batch at once; beam search keeps `beam_width` hypotheses per
image (length-normalised log-probability picks the winner)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipworks.captioning.model import ClipCap

METHODS = ("greedy", "beam", "nucleus")


def _next_logits(model: ClipCap, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    embeds = torch.cat([prefix, model.lm.transformer.wte(tokens)], dim=1) if tokens.shape[1] else prefix
    return model.lm(inputs_embeds=embeds).logits[:, -1]


@torch.inference_mode()
def generate(model: ClipCap, clip_embedding: torch.Tensor, method: str = "beam", max_tokens: int = 30,
             beam_width: int = 5, top_p: float = 0.9, temperature: float = 1.0, seed: int = 0) -> list[list[int]]:
    """GPT-2 token ids (without the end token) for each row of `clip_embedding` [B, clip_dim]."""
    if method not in METHODS:
        raise ValueError(f"decoding method {method!r}: choose one of {', '.join(METHODS)}")
    eos = model.vocab.eos
    prefix = model.prefix(clip_embedding)
    if method == "beam":
        return [model.vocab.decode(_beam(model, prefix[i:i + 1], eos, max_tokens, beam_width)) for i in range(prefix.shape[0])]
    generator = torch.Generator(device=prefix.device).manual_seed(seed)
    batch = prefix.shape[0]
    tokens = torch.empty(batch, 0, dtype=torch.long, device=prefix.device)
    done = torch.zeros(batch, dtype=torch.bool, device=prefix.device)
    for _ in range(max_tokens):
        logits = _next_logits(model, prefix, tokens)
        if method == "greedy":
            nxt = logits.argmax(dim=-1)
        else:
            probs = F.softmax(logits / max(temperature, 1e-6), dim=-1)
            sorted_p, order = probs.sort(dim=-1, descending=True)
            keep = sorted_p.cumsum(dim=-1) - sorted_p < top_p  # the smallest set reaching top_p
            sorted_p = sorted_p * keep
            choice = torch.multinomial(sorted_p / sorted_p.sum(dim=-1, keepdim=True), 1, generator=generator)
            nxt = order.gather(1, choice).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eos
        if bool(done.all()):
            break
    out = []
    for row in tokens.tolist():
        out.append(model.vocab.decode(row[: row.index(eos)] if eos in row else row))
    return out


def _beam(model: ClipCap, prefix: torch.Tensor, eos: int, max_tokens: int, width: int) -> list[int]:
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[list[int], float]] = []
    for _ in range(max_tokens):
        tokens = torch.tensor([b[0] for b in beams], dtype=torch.long, device=prefix.device)
        logp = F.log_softmax(_next_logits(model, prefix.expand(len(beams), -1, -1), tokens), dim=-1)
        scores = torch.tensor([b[1] for b in beams], device=prefix.device)[:, None] + logp
        top = scores.view(-1).topk(width)
        candidates = []
        for value, flat in zip(top.values.tolist(), top.indices.tolist()):
            b, tok = divmod(flat, logp.shape[1])
            seq = beams[b][0] + [tok]
            if tok == eos:
                finished.append((seq[:-1], value / len(seq)))
            else:
                candidates.append((seq, value))
        if not candidates or len(finished) >= width:
            break
        beams = candidates[:width]
    if not finished:
        finished = [(seq, score / len(seq)) for seq, score in beams]
    return max(finished, key=lambda f: f[1])[0]


def decode(tokenizer, ids: list[list[int]]) -> list[str]:
    """Token ids -> caption strings."""
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
