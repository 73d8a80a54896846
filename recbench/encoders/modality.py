"""The content item encoder shared by text and CLIP: towers, the three modes, fusion and the projection.

A :class:`ModalityEncoder` holds one :class:`TowerRunner` per tower (the text tower, CLIP's vision tower, or
both) and a projection from the (fused) tower width to the backbone width. Each runner owns one mode:

- ``frozen``: the catalogue is encoded once (cached on disk); the module holds only the vectors.
- ``top_k``: the lower layers' token states are computed once (cached); the module holds the top k layers and
  the head, and every call runs just those over the requested items (sorted by length, padded per chunk).
- ``full``: every call runs the whole tower.

``encoder(ids)`` encodes each distinct id of the call once, so a training step pays for its unique items (or
the catalogue, when the loss scores all of it) and nothing more. Index 0 (padding) always maps to zeros.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from recbench.encoders.base import EncoderReport, ItemEncoder
from recbench.encoders.cache import TensorCache, cache_key, table_hash
from recbench.encoders.feeds import Feed
from recbench.encoders.towers import Tower

RECOMPUTE_TOKEN_LAYERS = 250_000  # catalogue tokens x trainable layers above which `auto` recomputes


@dataclass
class TowerSource:
    """One tower over the catalogue, described without loading its weights (a frozen cache hit never does)."""

    name: str  # "text" or "image"
    width: int  # output vector width (from the model config)
    num_layers: int
    load: Callable[[], Tower]  # builds the tower from the pretrained weights
    feed: Feed
    key: dict  # model-side cache key parts (model, revision, tower class, pooling, ...)
    release: Callable[[], None] = field(default=lambda: None)  # drop anything `load` kept for reuse


def common_key(resolved, requested_revision: str | None, content) -> dict:
    """Cache key parts every tower of a content encoder shares: which weights, which catalogue."""
    return {
        "model": resolved.name,
        "revision": resolved.revision,
        "requested_revision": requested_revision,
        "dataset": content.dataset,
        "item_table": table_hash(content.items),
    }


def make_projection(kind: str, width: int, dim: int) -> nn.Module:
    """Encoder width -> backbone width: one linear map, or a 2-layer MLP (hidden = encoder width, GELU)."""
    if kind == "linear":
        return nn.Linear(width, dim)
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, dim))


class TowerRunner(nn.Module):
    """One tower in one mode. Input: catalogue rows (K,) (item index - 1); output: (K, width)."""

    def __init__(
        self,
        source: TowerSource,
        mode: str,
        top_k: int,
        batch_size: int,
        precision: str = "fp32",
        checkpointing: str = "auto",
    ):
        super().__init__()
        if mode == "top_k" and not 1 <= top_k <= source.num_layers:
            raise ValueError(
                f"top_k={top_k} but the {source.name} tower has {source.num_layers} layers (1..{source.num_layers})"
            )
        self.source = source
        self.mode = mode
        self.k = top_k
        self.batch_size = batch_size
        self.bf16 = precision == "bf16"
        self.checkpointing = checkpointing
        self.recompute = False  # decided in prepare(): see _decide_recompute
        self.width = source.width
        self.tower: Tower | None = None
        # Cached tensors: not part of the state dict (they are recomputed or reloaded, never trained).
        self.register_buffer("table", None, persistent=False)  # frozen: (N, W)
        self.register_buffer("hidden", None, persistent=False)  # top_k: (sum of lengths, H), item after item
        self.register_buffer("offsets", None, persistent=False)  # top_k: (N,) first row of each item
        self.register_buffer("lengths", None, persistent=False)  # top_k: (N,) tokens per item
        self.prepared = False

    # ------------------------------------------------------------------ one-off work

    def prepare(self, cache: TensorCache, common: dict, reporter=None) -> tuple[bool | None, int]:
        """Compute or load what this mode caches; returns (cache hit or None for full, frozen params)."""
        self.source.feed.check()
        parts = {**common, **self.source.key, **self.source.feed.key(), "tower": self.source.name}
        if self.mode == "frozen":
            key = cache_key({**parts, "what": "vectors"})
            got = cache.get(key)
            hit = got is not None
            if not hit:
                tower = self.source.load()
                with torch.no_grad():
                    table = self._encode_all(tower.encode, reporter, f"encode {self.source.name} (frozen)")
                params = sum(p.numel() for p in tower.parameters())
                got = {"vectors": table, "params": torch.tensor([params])}
                cache.put(key, got, {**parts, "what": "vectors"})
                del tower
            self.table = got["vectors"].float()
            frozen = int(got["params"][0])
        elif self.mode == "top_k":
            n_lower = self.source.num_layers - self.k
            parts = {k: v for k, v in parts.items() if k != "pooling"}  # token states do not depend on it
            key = cache_key({**parts, "what": "lower", "lower_layers": n_lower})
            tower = self.source.load()
            got = cache.get(key)
            hit = got is not None
            if not hit:
                got = self._lower_all(tower, n_lower, reporter)
                cache.put(key, got, {**parts, "what": "lower", "lower_layers": n_lower})
            self.hidden, self.lengths = got["hidden"].float(), got["lengths"].long()
            self.offsets = torch.cumsum(self.lengths, 0) - self.lengths  # (N,)
            rows = np.unique([0, int(self.lengths.argmax())])
            tower.check_split(_to(self.source.feed.batch(rows), _device(tower)), n_lower)
            frozen = tower.keep_top(self.k)
            self.tower = tower
        else:
            self.tower = self.source.load()
            self.source.feed.lengths()  # tokenise now, not in the first step
            hit, frozen = None, 0
        self.recompute = self._decide_recompute()
        self.prepared = True
        return hit, frozen

    def _decide_recompute(self) -> bool:
        """Whether training recomputes each chunk's activations in the backward pass (activation
        checkpointing): memory O(one chunk) instead of O(catalogue) at ~40% more encoder time.

        Why: with full-softmax CE a trainable tower encodes the whole catalogue with gradients every step, and
        its saved activations grow with catalogue tokens x trainable layers (~26 KB per token-layer for
        MiniLM in fp32): Amazon Scientific's 4,385 texts through 2 layers peaked at 16 GB. `auto` turns it on
        above RECOMPUTE_TOKEN_LAYERS (~6.5 GB of activations)."""
        if self.mode == "frozen" or self.checkpointing == "off":
            return False
        if self.checkpointing == "on":
            return True
        layers = self.k if self.mode == "top_k" else self.source.num_layers
        return int(self.source.feed.lengths().sum()) * layers > RECOMPUTE_TOKEN_LAYERS

    def _encode_all(self, fn, reporter, what: str) -> torch.Tensor:
        """fn over the whole catalogue in length-sorted chunks; (N, W) in catalogue order."""
        lengths = self.source.feed.lengths()
        order = np.argsort(lengths, kind="stable")
        out = torch.empty(len(order), self.width)
        if reporter:
            reporter.work_start(what, len(order))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[torch.from_numpy(rows)] = fn(self.source.feed.batch(rows)).float()
            if reporter:
                reporter.work_advance(len(rows))
        if reporter:
            reporter.work_end()
        return out

    @torch.no_grad()
    def _lower_all(self, tower: Tower, n_lower: int, reporter) -> dict[str, torch.Tensor]:
        """Token states after the lower layers for every item, concatenated item after item (no padding)."""
        feed = self.source.feed
        lengths = torch.from_numpy(feed.lengths())  # (N,)
        offsets = torch.cumsum(lengths, 0) - lengths  # (N,)
        order = np.argsort(lengths.numpy(), kind="stable")
        hidden = None
        if reporter:
            reporter.work_start(f"encode {self.source.name} lower {n_lower} layers", len(order))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            h, mask = tower.lower(feed.batch(rows), n_lower)  # (b, T, H), (b, T)
            if not torch.equal(mask.sum(1), lengths[torch.from_numpy(rows)]):
                raise RuntimeError(f"{self.source.name} tower: token counts differ from the feed's lengths")
            if hidden is None:
                hidden = torch.empty(int(lengths.sum()), h.shape[-1])
            steps = torch.arange(h.shape[1])  # (T,)
            dest = offsets[torch.from_numpy(rows)].unsqueeze(1) + steps.unsqueeze(0)  # (b, T) flat rows
            hidden[dest[mask]] = h[mask].float()  # real tokens only
            if reporter:
                reporter.work_advance(len(rows))
        if reporter:
            reporter.work_end()
        return {"hidden": hidden, "lengths": lengths}

    # ------------------------------------------------------------------ per call

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if not self.prepared:
            raise RuntimeError("call prepare() before encoding (the runner does this before training)")
        if rows.numel() == 0:
            return torch.zeros(0, self.width, device=rows.device)
        if self.mode == "frozen":
            return self.table[rows]  # (K, W)
        with self._autocast(rows.device):
            if self.mode == "top_k":
                return self._sorted(rows, self.lengths[rows], self._top_chunk).float()
            lengths = torch.from_numpy(self.source.feed.lengths()).to(rows.device)[rows]
            return self._sorted(rows, lengths, self._full_chunk).float()

    def _autocast(self, device: torch.device):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def _sorted(self, rows: torch.Tensor, lengths: torch.Tensor, chunk_fn) -> torch.Tensor:
        """chunk_fn over length-sorted chunks of `rows` (each padded to its own longest); request order."""
        order = torch.argsort(lengths, stable=True)  # (K,)
        if self.recompute and self.training and torch.is_grad_enabled():
            run = partial(checkpoint, chunk_fn, use_reentrant=False)  # dropout masks replayed exactly
        else:
            run = chunk_fn
        pieces = [run(rows[idx], lengths[idx]) for idx in order.split(self.batch_size)]
        vectors = torch.cat(pieces)  # (K, W) in sorted order
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return vectors[inverse]  # (K, W)

    def _top_chunk(self, rows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(int(lengths.max()), device=rows.device)  # (T,)
        mask = steps.unsqueeze(0) < lengths.unsqueeze(1)  # (b, T)
        index = (self.offsets[rows].unsqueeze(1) + steps.unsqueeze(0)).clamp(max=self.hidden.shape[0] - 1)
        h = self.hidden[index] * mask.unsqueeze(-1)  # (b, T, H), padding zeroed
        return self.tower.head(self.tower.run(h, mask), mask)  # (b, W)

    def _full_chunk(self, rows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        inputs = _to(self.source.feed.batch(rows.cpu().numpy()), rows.device)
        return self.tower.encode(inputs)  # (b, W)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        if self.tower is None:
            return []
        return [p for p in self.tower.parameters() if p.requires_grad]


def _to(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


class ModalityEncoder(ItemEncoder):
    """Towers -> fuse (mean or concat) -> projection to the backbone width. Padding (index 0) -> zeros."""

    def __init__(
        self,
        sources: list[TowerSource],
        dim: int,
        mode: str,
        top_k: int,
        projection: str,
        fuse: str = "mean",
        pretrained_lr: float | None = None,
        batch_size: int = 128,
        precision: str = "fp32",
        checkpointing: str = "auto",
        common_key: dict | None = None,
        revision: str | None = None,
        extra: dict | None = None,
    ):
        super().__init__()
        if fuse == "mean" and len({s.width for s in sources}) > 1:
            raise ValueError(f"fuse: mean needs towers of one width, got {[s.width for s in sources]}")
        self.dim = dim
        self.mode = mode
        self.fuse = fuse
        self.runners = nn.ModuleList(
            TowerRunner(s, mode, top_k, batch_size, precision, checkpointing) for s in sources
        )
        width = sum(s.width for s in sources) if fuse == "concat" else sources[0].width
        self.projection = make_projection(projection, width, dim)
        self.pretrained_lr = pretrained_lr
        self.common_key = common_key or {}
        self.revision = revision
        self.extra = extra or {}

    def prepare(self, reporter=None) -> EncoderReport:
        t0 = time.perf_counter()
        cache = TensorCache()
        hits, frozen = [], 0
        try:
            for runner in self.runners:
                hit, n = runner.prepare(cache, self.common_key, reporter)
                hits.append(hit)
                frozen += n
        finally:
            for runner in self.runners:
                runner.source.release()
        hit = None if self.mode == "full" else all(hits)
        return EncoderReport(
            encode_s=time.perf_counter() - t0,
            cache_hit=hit,
            revision=self.revision,
            extra={"frozen_params": frozen, "encoder_mode": self.mode, **self.extra},
        )

    def encode_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Catalogue rows (K,) -> fused tower vectors (K, W), before the projection."""
        parts = [runner(rows) for runner in self.runners]  # each (K, W_i)
        if len(parts) == 1:
            return parts[0]
        if self.fuse == "concat":
            return torch.cat(parts, dim=-1)  # (K, sum W_i)
        return torch.stack(parts).mean(0)  # (K, W)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)  # (M,)
        uniq, inverse = torch.unique(flat, return_inverse=True)  # (U,), (M,)
        real = (uniq > 0).nonzero().squeeze(1)  # (U',) positions of real items in `uniq`
        vectors = self.projection(self.encode_rows(uniq[real] - 1))  # (U', D)
        table = vectors.new_zeros(len(uniq), self.dim).index_copy(0, real, vectors)  # (U, D), padding = 0
        return table[inverse].reshape(*ids.shape, self.dim)  # (..., D)

    def adapter_trainable(self) -> list[nn.Parameter]:
        return list(self.projection.parameters())

    def lora_modules(self) -> list[nn.Module]:
        return [r.tower for r in self.runners if r.mode != "frozen" and r.tower is not None]

    def param_groups(self, lr: float) -> list[dict]:
        pretrained = [p for runner in self.runners for p in runner.pretrained_parameters()]
        groups = [{"params": list(self.projection.parameters()), "lr": lr}]
        if pretrained:
            groups.append({"params": pretrained, "lr": self.pretrained_lr or lr})
        return groups

    @property
    def cheap_to_encode_all(self) -> bool:
        return self.mode == "frozen"


def encoder_from_section(
    section, sources: list[TowerSource], resolved, content, dim: int, fuse: str = "mean", **extra
) -> ModalityEncoder:
    """The ModalityEncoder a content-encoder recipe section describes (text and clip share every knob but
    their towers); ``extra`` lands in the run's reported encoder facts."""
    return ModalityEncoder(
        sources,
        dim=dim,
        mode=section.mode,
        top_k=section.top_k,
        projection=section.projection,
        fuse=fuse,
        pretrained_lr=section.lr,
        batch_size=section.encode_batch_size,
        precision=section.precision,
        checkpointing=section.checkpointing,
        common_key=common_key(resolved, section.revision, content),
        revision=resolved.revision,
        extra={"encoder_model": resolved.name, "encoder_source": resolved.source, **extra},
    )
