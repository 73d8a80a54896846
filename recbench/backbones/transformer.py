"""A transformer block shared by SASRec (causal) and BERT4Rec (bidirectional)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbench.backbones.base import Dropout


def attention_mask(keep: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, T, T) bool, True = may attend. Padding keys are never attended to.

    A padding query would have no key left (softmax over nothing is NaN), so every position may attend to
    itself; padding outputs are zeroed by the caller and never read.
    """
    t = keep.shape[1]
    allowed = keep[:, None, None, :]  # (B, 1, 1, T) real keys
    eye = torch.eye(t, dtype=torch.bool, device=keep.device)  # (T, T)
    if causal:
        lower = torch.ones(t, t, dtype=torch.bool, device=keep.device).tril()  # (T, T) key <= query
        allowed = allowed & lower
    return allowed | eye  # (B, 1, T, T)


class TransformerBlock(nn.Module):
    """Multi-head self-attention + feed-forward, LayerNorm before (pre) or after (post) each sublayer."""

    def __init__(self, dim: int, heads: int, inner: int, dropout: float, attn_dropout: float, norm: str):
        super().__init__()
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        self.heads = heads
        self.pre_norm = norm == "pre"
        self.attn_drop = Dropout(attn_dropout)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, inner), nn.GELU(), Dropout(dropout), nn.Linear(inner, dim))
        self.norm1 = nn.LayerNorm(dim, eps=1e-12)
        self.norm2 = nn.LayerNorm(dim, eps=1e-12)
        self.drop = Dropout(dropout)

    def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # 3 x (B, T, D)
        q, k, v = (
            z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v)
        )  # (B, H, T, Dh)
        if self.training and self.attn_drop.p > 0:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, T, T)
            att = att.masked_fill(~mask, -torch.inf).softmax(dim=-1)  # (B, H, T, T)
            y = self.attn_drop(att) @ v  # (B, H, T, Dh)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, Dh)
        return self.out(y.transpose(1, 2).reshape(b, t, d))  # (B, T, D)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.drop(self.attention(self.norm1(x), mask))
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attention(x, mask)))
        return self.norm2(x + self.drop(self.ff(x)))
