"""Bottleneck adapters (Houlsby et al. 2019; AdapterRec/PeterRec for recommenders) inserted into a backbone.

An adapter maps a sublayer's output y to y + up(GELU(down(y))) with a small bottleneck; `up` starts at zero,
so a freshly adapted backbone computes exactly what it computed before (the transferred model is the start of
target training). A backbone lists where adapters go (:meth:`Backbone.adapter_sites`: after each
transformer block's attention projection and feed-forward, after GRU4Rec's output projection); nothing here
knows a backbone kind. Written here rather than taken from a library: peft's adapters target Hugging Face
layers, and these backbones are recbench's own modules (a dozen lines).
"""

from __future__ import annotations

import torch
from torch import nn


class Adapter(nn.Module):
    def __init__(self, dim: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # identity at start
        nn.init.zeros_(self.up.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.up(nn.functional.gelu(self.down(y)))  # (..., D)


class Adapted(nn.Module):
    """A sublayer followed by its adapter: the sublayer's weights keep their own (frozen) parameters."""

    def __init__(self, sublayer: nn.Module, adapter: Adapter):
        super().__init__()
        self.sublayer = sublayer
        self.adapter = adapter

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.adapter(self.sublayer(*args, **kwargs))


def insert_adapters(backbone: nn.Module, bottleneck: int) -> list[nn.Parameter]:
    """Wrap every adapter site of `backbone` in place; returns the adapters' parameters."""
    sites = backbone.adapter_sites()
    if not sites:
        raise ValueError(f"{type(backbone).__name__} declares no adapter sites")
    params: list[nn.Parameter] = []
    for parent, name, width in sites:
        adapter = Adapter(width, bottleneck).to(next(parent.parameters()).device)
        setattr(parent, name, Adapted(getattr(parent, name), adapter))
        params += list(adapter.parameters())
    return params
