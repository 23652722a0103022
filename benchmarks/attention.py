"""Attention layers: torch's scaled_dot_product_attention (what clipworks runs) vs the same weights through
hand-written softmax attention and through nn.MultiheadAttention (what OpenAI's and open_clip's towers run).

Shapes of ViT-B-32's text tower (causal, 77 or 20 positions), its image tower (50 tokens) and RN50's attention
pool (one query over 50 positions); forward only, inference mode, runs interleaved, median per call.

    python benchmarks/attention.py --batch 64 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def hand_written(attn, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """Softmax(q k^T / sqrt(d)) v, written out: clipworks before it used scaled_dot_product_attention."""
    b, n, d = x.shape
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(b, n, 3, attn.heads, -1).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    if causal:
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return attn.out_proj((scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d))


def multihead(mha: torch.nn.MultiheadAttention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    mask = torch.full((x.shape[1],) * 2, float("-inf")).triu(1) if causal else None
    return mha(x, x, x, need_weights=False, attn_mask=mask)[0]


def pool_hand_written(pool, x: torch.Tensor) -> torch.Tensor:
    """OpenAI's attention pool as it was written: F.multi_head_attention_forward over separate q, k, v weights."""
    b, c, h, w = x.shape
    x = x.flatten(2).permute(2, 0, 1)  # [HW, B, C]
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0) + pool.positional_embedding[:, None].to(x.dtype)
    out, _ = F.multi_head_attention_forward(
        query=x[:1], key=x, value=x, embed_dim_to_check=c, num_heads=pool.heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True, training=False, need_weights=False)
    return out[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    from clipworks.model.layers import Attention
    from clipworks.model.modified_resnet import AttentionPool2d

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = []
    for name, width, heads, n, causal in (("text, 77 positions", 512, 8, 77, True),
                                           ("text, 20 positions", 512, 8, 20, True),
                                           ("ViT-B-32 image, 50", 768, 12, 50, False)):
        attn = Attention(width, heads).eval()
        torch.nn.init.normal_(attn.in_proj_weight, std=width**-0.5)
        mha = torch.nn.MultiheadAttention(width, heads, batch_first=True).eval()
        mha.load_state_dict(attn.state_dict())  # the same keys: in_proj_weight, in_proj_bias, out_proj.*
        x = torch.randn(args.batch, n, width)
        cases.append((name, {
            "sdpa (clipworks)": lambda a=attn, x=x, c=causal: a(x, causal=c),
            "hand-written": lambda a=attn, x=x, c=causal: hand_written(a, x, c),
            "nn.MultiheadAttention": lambda m=mha, x=x, c=causal: multihead(m, x, c),
        }))
    pool = AttentionPool2d(7, 2048, 32, 1024).eval()
    grid = torch.randn(args.batch, 2048, 7, 7)
    cases.append(("RN50 attention pool", {
        "sdpa (clipworks)": lambda: pool(grid),
        "hand-written": lambda: pool_hand_written(pool, grid),
    }))

    print(f"batch {args.batch}, CPU threads {args.threads}, median of {args.repeats} interleaved calls (ms per call)")
    with torch.inference_mode():
        for name, fns in cases:
            outs = [fn() for fn in fns.values()]
            diff = max((o - outs[0]).abs().max().item() for o in outs[1:])
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(args.repeats):
                for k, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t0)
            ms = {k: 1000 * statistics.median(ts) for k, ts in times.items()}
            row = "  ".join(f"{k} {v:.2f}" for k, v in ms.items())
            print(f"{name:22} {row}   (max |diff| {diff:.1e})")


if __name__ == "__main__":
    main()
