"""Recommender = item encoder + sequence backbone + dot-product scorer.

This is the only module that knows all three. The trainer and the evaluator talk to a :class:`Recommender`
and never to an encoder or backbone kind; builders map recipe sections to modules (the registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from recbench.backbones.base import Backbone
from recbench.backbones.lengths import next_state_by_length, states_by_length
from recbench.config import (
    BackboneSection,
    BERT4RecSection,
    ClipEncoderSection,
    EncoderSection,
    FusionEncoderSection,
    GRU4RecSection,
    IdEncoderSection,
    PopSection,
    SASRecSection,
    SemanticIdEncoderSection,
    TextEncoderSection,
    TigerSection,
)
from recbench.data.content import ItemContent
from recbench.encoders.base import ItemEncoder


@dataclass
class TrainStates:
    """States at the positions that carry a loss, their targets, and the item vectors of this step."""

    states: torch.Tensor  # (M, D)
    targets: torch.Tensor  # (M,) item indices
    positions: torch.Tensor  # (B, L) bool, where the M states come from
    vectors: Callable[[torch.Tensor], torch.Tensor]  # item indices (...) -> (..., D), same graph as states


class Recommender(nn.Module):
    trainable = True  # the most-popular baseline (recbench.popularity) is the model that is not

    def __init__(self, encoder: ItemEncoder, backbone: Backbone, num_items: int, max_len: int):
        super().__init__()
        if encoder.dim != backbone.dim:
            raise ValueError(f"encoder width {encoder.dim} != backbone width {backbone.dim}")
        self.encoder = encoder
        self.backbone = backbone
        self.num_items = num_items
        self.max_len = max_len

    @property
    def objective(self) -> str:
        return self.backbone.objective

    def item_table(self) -> torch.Tensor:
        """All item vectors (N + 1, D); row 0 is padding."""
        ids = torch.arange(self.num_items + 1, device=self._device())
        return self.encoder(ids)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def train_states(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        generator: torch.Generator,
        extra_ids: torch.Tensor | None = None,
        all_items: bool = False,
        mask_prob: float = 0.0,
    ) -> TrainStates:
        """Run one training batch through encoder and backbone.

        inputs, targets: (B, L) item indices (0 = padding / no loss). Only the items this step needs are
        encoded (all of them when `all_items`, e.g. for full-softmax CE); `extra_ids` are negatives the loss
        will score. Cloze backbones mask each loss position with probability `mask_prob` (at least one per
        row) and predict only masked positions.
        """
        keep = inputs > 0  # (B, L)
        if self.objective == "cloze":
            masked = cloze_positions(
                targets > 0, mask_prob, generator, self.backbone.last_item_share
            )  # (B, L)
            targets = torch.where(masked, targets, torch.zeros_like(targets))
        if all_items:
            ids = torch.arange(self.num_items + 1, device=inputs.device)
        else:
            parts = [inputs.flatten(), targets.flatten()] + (
                [extra_ids.flatten()] if extra_ids is not None else []
            )
            ids = torch.unique(torch.cat(parts))  # (K,) sorted, includes 0
        table = self.encoder(ids)  # (K, D)
        position = torch.full((self.num_items + 1,), -1, dtype=torch.long, device=inputs.device)
        position[ids] = torch.arange(len(ids), device=inputs.device)  # item index -> row of `table`

        def vectors(items: torch.Tensor) -> torch.Tensor:
            return table[position[items]]  # (..., D)

        x = vectors(inputs)  # (B, L, D)
        if self.objective == "cloze":
            x = self.backbone.apply_mask(x, masked)
        states = states_by_length(self.backbone, x, keep)  # (B, L, D)
        sel = targets > 0  # (B, L)
        return TrainStates(states=states[sel], targets=targets[sel], positions=sel, vectors=vectors)

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """A scoring function for evaluation; the item table is computed once, not per batch."""
        with torch.no_grad():  # a trainable content encoder would otherwise keep its graph for nothing
            table = self.item_table()  # (N + 1, D)

        def score(histories: torch.Tensor) -> torch.Tensor:
            x = table[histories]  # (B, L, D)
            state = next_state_by_length(self.backbone, x, histories > 0)  # (B, D)
            return state @ table.T  # (B, N + 1)

        return score


def cloze_positions(
    eligible: torch.Tensor, prob: float, generator: torch.Generator, last_item_share: float = 0.0
) -> torch.Tensor:
    """(B, L) bool: each eligible position masked with probability `prob`; a row with eligible positions
    but no draw gets its last eligible position masked (the position inference predicts). With
    `last_item_share` > 0 that share of rows (drawn per row) masks only its last eligible position."""
    draw = torch.rand(eligible.shape, generator=generator).to(eligible.device) < prob
    masked = draw & eligible
    last = eligible.shape[1] - 1 - eligible.flip(1).float().argmax(dim=1)  # (B,) last eligible column
    if last_item_share > 0:
        only_last = (torch.rand(len(eligible), generator=generator) < last_item_share).to(eligible.device)
        masked[only_last] = False
        masked[only_last, last[only_last]] = eligible[only_last, last[only_last]]
    none = ~masked.any(dim=1) & eligible.any(dim=1)  # (B,)
    if bool(none.any()):
        masked[none, last[none]] = True
    return masked


def build_encoder(section: EncoderSection, content: ItemContent, dim: int) -> ItemEncoder:
    """The encoder registry: recipe section -> module. `content` is the catalogue's text and images."""
    if isinstance(section, IdEncoderSection):
        from recbench.encoders.id import IdEncoder

        return IdEncoder(content.num_items, dim, init_std=section.init_std)
    if isinstance(section, TextEncoderSection):
        from recbench.encoders.text import build_text_encoder

        return build_text_encoder(section, content, dim)
    if isinstance(section, ClipEncoderSection):
        from recbench.encoders.clip import build_clip_encoder

        return build_clip_encoder(section, content, dim)
    if isinstance(section, FusionEncoderSection):
        from recbench.encoders.fusion import FusionEncoder
        from recbench.encoders.id import IdEncoder

        return FusionEncoder(
            IdEncoder(content.num_items, dim, init_std=section.init_std),
            build_encoder(section.content, content, dim),
            section.combine,
        )
    if isinstance(section, SemanticIdEncoderSection):
        from recbench.encoders.semantic_id import build_semantic_id_encoder

        return build_semantic_id_encoder(section, content, dim)
    raise NotImplementedError(f"encoder kind '{section.kind}' is not available yet")


def build_backbone(section: BackboneSection, max_len: int) -> Backbone:
    """The backbone registry: recipe section -> module."""
    if isinstance(section, SASRecSection):
        from recbench.backbones.sasrec import SASRec

        return SASRec(
            dim=section.dim,
            max_len=max_len,
            layers=section.layers,
            heads=section.heads,
            inner=section.inner,
            dropout=section.dropout,
            attn_dropout=section.attn_dropout,
            norm=section.norm,
        )
    if isinstance(section, GRU4RecSection):
        from recbench.backbones.gru4rec import GRU4Rec

        return GRU4Rec(dim=section.dim, hidden=section.hidden, layers=section.layers, dropout=section.dropout)
    if isinstance(section, BERT4RecSection):
        from recbench.backbones.bert4rec import BERT4Rec

        return BERT4Rec(
            dim=section.dim,
            max_len=max_len,
            layers=section.layers,
            heads=section.heads,
            inner=section.inner,
            dropout=section.dropout,
            attn_dropout=section.attn_dropout,
            mask_prob=section.mask_prob,
            last_item_share=section.last_item_share,
            head_norm=section.head_norm,
        )
    raise TypeError(f"unknown backbone section {section!r}")


def build_model(
    encoder_section: EncoderSection,
    backbone_section: BackboneSection,
    content: Callable[[], ItemContent],
    num_items: int,
    max_len: int,
    train_counts,
    reporter=None,
):
    """(model, encoder report): a :class:`Recommender`, or the most-popular baseline, which reads no item
    content (`content` is called only when an encoder needs it) and trains nothing."""
    from recbench.encoders.base import EncoderReport

    if isinstance(backbone_section, PopSection):
        from recbench.popularity import PopularityModel

        return PopularityModel(train_counts), EncoderReport()
    if isinstance(backbone_section, TigerSection):
        from recbench.generative import build_generative

        return build_generative(encoder_section, backbone_section, content(), num_items, max_len, reporter)
    backbone = build_backbone(backbone_section, max_len)
    encoder = build_encoder(encoder_section, content(), dim=backbone.dim)
    report = encoder.prepare(reporter)
    return Recommender(encoder, backbone, num_items, max_len), report
