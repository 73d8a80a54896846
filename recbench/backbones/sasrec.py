"""SASRec: causal self-attention over item vectors (Kang & McAuley, ICDM 2018).

Deviations from the paper, on purpose:
- item vectors come from any :class:`~recbench.encoders.base.ItemEncoder` (the backbone owns no item table),
  and scores are dot products with the same vectors (shared input/output representation, as in the paper);
- positions are right-aligned (the most recent item always has the last position embedding), which makes
  outputs independent of how much left padding a batch carries;
- the LayerNorm placement is a switch: ``post`` (as RecBole's SASRec) or ``pre`` (as the paper's code).
"""

from __future__ import annotations

import torch
from torch import nn

from recbench.backbones.base import Backbone, Dropout, init_weights
from recbench.backbones.transformer import TransformerBlock, attention_mask


class SASRec(Backbone):
    objective = "causal"
    padding_invariant = True  # see the module docstring (left padding)

    def __init__(
        self,
        dim: int,
        max_len: int,
        layers: int = 2,
        heads: int = 2,
        inner: int = 256,
        dropout: float = 0.5,
        attn_dropout: float = 0.5,
        norm: str = "post",
    ):
        super().__init__()
        self.dim = dim
        self.max_len = max_len
        self.position = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, inner, dropout, attn_dropout, norm) for _ in range(layers)
        )
        self.pre_norm = norm == "pre"
        self.input_norm = nn.LayerNorm(dim, eps=1e-12)  # post-LN: normalise the input sum
        self.final_norm = nn.LayerNorm(dim, eps=1e-12)  # pre-LN: normalise the output
        self.drop = Dropout(dropout)
        init_weights(self)

    def adapter_sites(self) -> list[tuple[nn.Module, str, int]]:
        return [(b, name, self.dim) for b in self.blocks for name in ("out", "ff")]

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len {self.max_len}")
        pos = self.position.weight[self.max_len - t :]  # (T, D) right-aligned positions
        h = x + pos.unsqueeze(0)  # (B, T, D)
        if not self.pre_norm:
            h = self.input_norm(h)
        h = self.drop(h) * keep.unsqueeze(-1)  # (B, T, D), padding zeroed
        mask = attention_mask(keep, causal=True)  # (B, 1, T, T)
        for block in self.blocks:
            h = block(h, mask)
        if self.pre_norm:
            h = self.final_norm(h)
        return h * keep.unsqueeze(-1)  # (B, T, D)
