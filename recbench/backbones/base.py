"""The backbone interface: item-vector sequences in, states out. A backbone never owns an item table.

Inputs are left-padded: ``keep`` (B, T) is True at real positions, and the most recent item is in the last
column. ``objective`` says how the backbone trains: ``causal`` (predict the next item at every position) or
``cloze`` (predict masked items; the backbone owns the mask vector, in item-vector space, so it works whatever
the items are made of).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Backbone(nn.Module):
    objective: ClassVar[str] = "causal"
    dim: int
    mask_prob: float = 0.0  # cloze backbones: share of training positions masked and predicted
    last_item_share: float = 0.0  # cloze backbones: share of windows that mask only their last item
    # True when the output at a row's real positions does not depend on how much left padding the row has:
    # batches then run group by group at the width their histories need (recbench.backbones.lengths)
    padding_invariant: ClassVar[bool] = False

    def adapter_sites(self) -> list[tuple[nn.Module, str, int]]:
        """Where bottleneck adapters go in transfer mode `adapter`: (parent module, attribute, width)."""
        return []

    @property
    def shifted_windows(self) -> bool:
        """Training windows pair each position with the next item (causal), or with itself (cloze)."""
        return self.objective == "causal"

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """x: (B, T, D) item vectors, keep: (B, T) bool -> (B, T, D) states."""
        raise NotImplementedError

    def next_state(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The state that predicts the item after the last column: (B, D)."""
        return self.forward(x, keep)[:, -1, :]

    def apply_mask(self, x: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Cloze backbones replace masked positions (B, T) by their mask vector; causal ones never mask."""
        raise TypeError(f"{type(self).__name__} is causal and has no mask vector")


class Dropout(nn.Module):
    """Inverted dropout like :class:`torch.nn.Dropout`, with the mask drawn by ``torch.rand``.

    Why: on CPU ``bernoulli_`` (what nn.Dropout uses) is about 4x slower than ``rand`` and was the largest
    single cost of a SASRec training step. Same distribution, same scaling, a different random stream.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x) >= self.p  # (same shape as x) bool
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Normal(0, std) for linear/embedding weights, zeros for biases, identity for LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
