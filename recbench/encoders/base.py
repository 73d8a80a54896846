"""The item-encoder interface: item indices in, item vectors out. An encoder never sees a sequence.

Every representation of an item (a learned ID, a text or image model, a fusion) is an :class:`ItemEncoder`, so
one backbone, one trainer and one evaluator serve them all. Index 0 is padding and always maps to zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class EncoderReport:
    """What preparing an encoder cost and which exact model it used (for the run record)."""

    encode_s: float = 0.0
    cache_hit: bool | None = None
    revision: str | None = None
    extra: dict = field(default_factory=dict)


class ItemEncoder(nn.Module):
    """Maps item indices (any shape) to vectors (..., dim); index 0 -> zeros."""

    dim: int

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def prepare(self, reporter=None) -> EncoderReport:
        """One-off work before training (e.g. computing and caching frozen vectors).

        `reporter` is a :class:`recbench.reporting.Reporter` (work_start/work_advance/work_end for a bar).
        Report `extra["frozen_params"]`: pretrained weights used to encode but not held by the module.
        """
        return EncoderReport()

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser parameter groups; content encoders give their pretrained weights their own lr."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr}] if params else []

    def adapter_trainable(self) -> list[nn.Parameter]:
        """What still trains when a transferred model is adapted with adapters only (transfer mode `adapter`):
        the small parts that map content to the backbone's space (a projection), and anything that belongs
        to the target alone (an ID table of target items). Pretrained towers stay frozen."""
        return []

    def lora_modules(self) -> list[nn.Module]:
        """Pretrained towers that run at every training step (LoRA goes there in transfer mode `lora`)."""
        return []

    def item_rows(self) -> list[nn.Parameter]:
        """Parameters whose row i belongs to item i alone (ID tables). The trainer keeps the rows of items a
        split holds out bit-identical (no gradient, no weight decay, no optimizer state moves them)."""
        return []

    @property
    def cheap_to_encode_all(self) -> bool:
        """True when encoding the whole catalogue costs no more than a table lookup (ID, frozen vectors)."""
        return True
