"""The IDRec item representation: one learned vector per item index."""

from __future__ import annotations

import torch
from torch import nn

from recbench.encoders.base import ItemEncoder


class IdEncoder(ItemEncoder):
    """A learned embedding table (N + 1, D); row 0 is padding (zero, never updated).

    Items never seen in training (cold items) keep their initial vectors bit for bit (the trainer restores
    their rows after every optimizer step, see :meth:`item_rows`) and are ranked like any other.
    """

    def __init__(self, num_items: int, dim: int, init_std: float = 0.02):
        super().__init__()
        self.dim = dim
        self.table = nn.Embedding(num_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.table.weight, std=init_std)
        with torch.no_grad():
            self.table.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)  # (..., D)

    def item_rows(self) -> list[nn.Parameter]:
        return [self.table.weight]
