"""ID + content fusion (MoRec's ID-plus-modality variants): a learned ID vector and a content vector per item.

`add` sums the two (both already at the backbone width); `concat` concatenates them and maps 2D -> D with a
linear layer. Cold items keep their initial ID vectors (as in the ID encoder), so on a cold-start split the
content half carries them.
"""

from __future__ import annotations

import torch
from torch import nn

from recbench.encoders.base import EncoderReport, ItemEncoder
from recbench.encoders.id import IdEncoder


class FusionEncoder(ItemEncoder):
    def __init__(self, ids: IdEncoder, content: ItemEncoder, combine: str):
        super().__init__()
        if ids.dim != content.dim:
            raise ValueError(f"ID width {ids.dim} != content width {content.dim}")
        self.dim = ids.dim
        self.ids = ids
        self.content = content
        self.combine = combine
        self.merge = nn.Linear(2 * self.dim, self.dim) if combine == "concat" else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        a, b = self.ids(ids), self.content(ids)  # (..., D) each
        if self.merge is None:
            return a + b  # (..., D)
        merged = self.merge(torch.cat([a, b], dim=-1))  # (..., D)
        return merged * (ids > 0).unsqueeze(-1)  # padding stays zero despite the bias

    def prepare(self, reporter=None) -> EncoderReport:
        return self.content.prepare(reporter)

    def param_groups(self, lr: float) -> list[dict]:
        content = self.content.param_groups(lr)
        held = {id(p) for g in content for p in g["params"]}
        own = [p for p in self.parameters() if p.requires_grad and id(p) not in held]
        return [{"params": own, "lr": lr}, *content]

    def adapter_trainable(self) -> list[nn.Parameter]:
        own = [p for p in self.parameters() if id(p) not in {id(q) for q in self.content.parameters()}]
        return own + self.content.adapter_trainable()  # the ID table (target items) and the merge layer

    def lora_modules(self) -> list[nn.Module]:
        return self.content.lora_modules()

    def item_rows(self) -> list[nn.Parameter]:
        return self.ids.item_rows() + self.content.item_rows()

    @property
    def cheap_to_encode_all(self) -> bool:
        return self.content.cheap_to_encode_all
