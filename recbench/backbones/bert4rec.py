"""BERT4Rec: a bidirectional transformer trained to fill in masked items (Sun et al., CIKM 2019).

Deviations from the paper, on purpose:
- item vectors come from any :class:`~recbench.encoders.base.ItemEncoder` (the backbone owns no item table), so
  the mask is a learned vector in item-vector space (not a [mask] row of an ID table): it works the same when
  items are text or images. Scores are dot products with the same item vectors; the paper's per-item output
  bias is left out (it would be an item table owned by the backbone);
- positions are right-aligned (the most recent item always has the last position embedding), as in recbench's
  SASRec, so outputs do not depend on how much left padding a batch carries;
- cloze positions are drawn among the positions a training window owns (see ``recbench.data.batches``) with the
  recipe's ``mask_prob``; a row that draws none has its last such position masked (so every row carries a
  loss; see ``recbench.model.cloze_positions``); the paper's extra "mask only the last item" windows are off
  by default (``last_item_share: 0``);
- the prediction head is the paper's ``GELU(h W + b)`` followed by a LayerNorm (as BERT's and RecBole's heads;
  ``head_norm: true``), which keeps the state's scale independent of the item vectors' scale.

Both choices were made on VALIDATION data only (`python benchmarks/bert4rec_choices.py --data-dir
../shared/data/ml-100k`: MovieLens-100K, ID items, 12 epochs with the best validation epoch restored, seeds
0/1/2, validation NDCG@10; no test metric is computed): the defaults 0.0796 / 0.0684 / 0.0984 (mean 0.0821),
without the head LayerNorm 0.0375 / 0.0429 / 0.0636 (0.0480), with half the windows masking only their last
item 0.0721 / 0.0790 / 0.0771 (0.0761). An earlier version of this note justified them with test NDCG@10;
the validation figures lead to the same choices.

Inference (``next_state``) drops the oldest column, appends the mask vector as the newest position and reads
the state there, so the input length stays T.
"""

from __future__ import annotations

import torch
from torch import nn

from recbench.backbones.base import Backbone, Dropout, init_weights
from recbench.backbones.transformer import TransformerBlock, attention_mask


class BERT4Rec(Backbone):
    objective = "cloze"
    padding_invariant = True  # see the module docstring (left padding)

    def __init__(
        self,
        dim: int,
        max_len: int,
        layers: int = 2,
        heads: int = 2,
        inner: int = 256,
        dropout: float = 0.2,
        attn_dropout: float = 0.2,
        mask_prob: float = 0.2,
        last_item_share: float = 0.0,
        head_norm: bool = True,
    ):
        super().__init__()
        self.dim = dim
        self.mask_prob = mask_prob
        self.last_item_share = last_item_share
        self.max_len = max_len
        self.position = nn.Embedding(max_len, dim)
        self.mask_vector = nn.Parameter(torch.zeros(dim))  # (D,) in item-vector space
        self.input_norm = nn.LayerNorm(dim, eps=1e-12)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, inner, dropout, attn_dropout, "post") for _ in range(layers)
        )
        norm = nn.LayerNorm(dim, eps=1e-12) if head_norm else nn.Identity()
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), norm)
        init_weights(self)
        nn.init.normal_(self.mask_vector, std=0.02)

    def adapter_sites(self) -> list[tuple[nn.Module, str, int]]:
        return [(b, name, self.dim) for b in self.blocks for name in ("out", "ff")]

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len {self.max_len}")
        pos = self.position.weight[self.max_len - t :]  # (T, D) right-aligned positions
        h = self.input_norm(x + pos.unsqueeze(0))  # (B, T, D)
        h = self.drop(h) * keep.unsqueeze(-1)  # (B, T, D), padding zeroed
        mask = attention_mask(keep, causal=False)  # (B, 1, T, T) padding keys never attended
        for block in self.blocks:
            h = block(h, mask)
        return self.head(h) * keep.unsqueeze(-1)  # (B, T, D), padding zeroed

    def apply_mask(self, x: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) with every masked (B, T) position replaced by the mask vector."""
        return torch.where(masked.unsqueeze(-1), self.mask_vector.to(x.dtype), x)  # (B, T, D)

    def next_state(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        x = torch.cat([x[:, 1:], self.mask_vector.to(x.dtype).expand(b, 1, d)], dim=1)  # (B, T, D)
        keep = torch.cat([keep[:, 1:], keep.new_ones(b, 1)], dim=1)  # (B, T)
        return self.forward(x, keep)[:, -1, :]  # (B, D)
