"""Decoding captions from a ClipCap prefix: greedy, beam search and nucleus sampling, stopping at the end token
or `max_tokens`. All three run the whole batch at once; beam search keeps `beam_width` hypotheses per image
(length-normalised log-probability picks the winner)."""

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
        return [model.vocab.decode(row) for row in _beam(model, prefix, eos, max_tokens, beam_width)]
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


def _beam(model: ClipCap, prefix: torch.Tensor, eos: int, max_tokens: int, width: int) -> list[list[int]]:
    """Beam search for a batch of prefixes at once: each step scores every live hypothesis of every unfinished
    image in one forward pass. Per image, the `width` best extensions are kept; one that ends in the end token
    is finished (scored by log-probability per token), and an image is done when `width` hypotheses finished
    or none is left alive."""
    batch = prefix.shape[0]
    beams: list[list[tuple[list[int], float]]] = [[([], 0.0)] for _ in range(batch)]
    finished: list[list[tuple[list[int], float]]] = [[] for _ in range(batch)]
    active = list(range(batch))
    for _ in range(max_tokens):
        rows = [(b, seq, score) for b in active for seq, score in beams[b]]
        tokens = torch.tensor([seq for _, seq, _ in rows], dtype=torch.long, device=prefix.device)
        tokens = tokens.view(len(rows), -1)
        index = torch.tensor([b for b, _, _ in rows], device=prefix.device)
        logp = F.log_softmax(_next_logits(model, prefix[index], tokens), dim=-1)
        logp = logp + torch.tensor([score for _, _, score in rows], device=prefix.device)[:, None]
        vocab, row = logp.shape[1], 0
        still = []
        for b in active:
            n = len(beams[b])
            top = logp[row:row + n].reshape(-1).topk(min(width, n * vocab))
            candidates = []
            for value, flat in zip(top.values.tolist(), top.indices.tolist()):
                beam, tok = divmod(flat, vocab)
                seq = beams[b][beam][0] + [tok]
                if tok == eos:
                    finished[b].append((seq[:-1], value / len(seq)))
                else:
                    candidates.append((seq, value))
            row += n
            beams[b] = candidates
            if candidates and len(finished[b]) < width:
                still.append(b)
        active = still
        if not active:
            break
    best = []
    for b in range(batch):
        done = finished[b] or [(seq, score / len(seq)) for seq, score in beams[b]]
        best.append(max(done, key=lambda f: f[1])[0])
    return best


def decode(tokenizer, ids: list[list[int]]) -> list[str]:
    """Token ids -> caption strings."""
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
