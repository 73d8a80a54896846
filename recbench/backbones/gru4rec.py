"""GRU4Rec: a recurrent network over item vectors (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018).

Deviations from the paper, on purpose:
- item vectors come from any :class:`~recbench.encoders.base.ItemEncoder` (the backbone owns no item table);
  a linear projection maps the GRU state back to item-vector space and scores are dot products with the same
  item vectors (the paper scores with a separate output matrix; shared vectors are what lets one backbone serve
  ID, text and image items);
- training uses padded windows of whole user histories with a loss at every position (all of recbench's losses:
  full CE, sampled CE, BCE, in-batch), not session-parallel mini-batches with TOP1/BPR;
- dropout is applied to the input item vectors (as RecBole's GRU4Rec), not between GRU layers;
- GRU weights start Xavier-uniform (input) and orthogonal per gate (recurrent), biases at zero.

Left padding: a GRU's biases move the hidden state even when the input is zero, so running it over left padding
would leak the amount of padding into every output. Each row is therefore rotated so that its real items come
first (left-aligned), run through the GRU, and rotated back. Trailing padding then only follows the real items
and, the GRU being causal, cannot change their outputs (same result as ``pack_padded_sequence``, without the
packing cost).
"""

from __future__ import annotations

import torch
from torch import nn

from recbench.backbones.base import Backbone, Dropout, init_weights


class GRU4Rec(Backbone):
    objective = "causal"
    padding_invariant = True  # see the module docstring (left padding)

    def __init__(self, dim: int, hidden: int = 64, layers: int = 1, dropout: float = 0.3):
        super().__init__()
        self.dim = dim
        self.drop = Dropout(dropout)
        self.gru = nn.GRU(dim, hidden, num_layers=layers, batch_first=True)
        self.project = nn.Linear(hidden, dim)
        init_weights(self)  # the projection; the GRU keeps its own initialisation below
        for name, param in self.gru.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(param)
            elif name.startswith("weight_hh"):
                for gate in param.chunk(3, dim=0):  # (H, H) reset, update, new gates
                    nn.init.orthogonal_(gate)
            else:
                nn.init.zeros_(param)

    def adapter_sites(self) -> list[tuple[nn.Module, str, int]]:
        return [(self, "project", self.dim)]

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        pad = _padding(keep)  # (B, 1) padding columns per row
        cols = torch.arange(t, device=x.device).unsqueeze(0)  # (1, T)
        rotate = (cols + pad) % t  # (B, T) left-aligned slot i reads column (i + pad) % T
        x = self.drop(x) * keep.unsqueeze(-1)  # (B, T, D), padding zeroed
        aligned = x.gather(1, rotate.unsqueeze(-1).expand(b, t, d))  # (B, T, D) real items first
        h, _ = self.gru(aligned)  # (B, T, H)
        back = (cols - pad) % t  # (B, T) the inverse rotation
        h = h.gather(1, back.unsqueeze(-1).expand(b, t, h.shape[-1]))  # (B, T, H) real items last again
        return self.project(h) * keep.unsqueeze(-1)  # (B, T, D), padding zeroed


def _padding(keep: torch.Tensor) -> torch.Tensor:
    """(B, 1) long: number of padding columns per row. Refuses masks that are not left padding."""
    t = keep.shape[1]
    pad = t - keep.sum(dim=1, keepdim=True)  # (B, 1)
    cols = torch.arange(t, device=keep.device).unsqueeze(0)  # (1, T)
    if not torch.equal(keep, cols >= pad):
        raise ValueError("GRU4Rec expects left-padded rows: keep must be False...False True...True per row")
    return pad
