"""Pretrained transformer towers cut into embed -> layers -> head, so `top_k` can run only the top layers.

A :class:`Tower` wraps one transformers model (a BERT-family text encoder, CLIP's text or vision tower) and
exposes two ways to encode a batch:

- :meth:`Tower.encode`: the model's own forward (frozen and full modes), then the tower's pooling / head;
- :meth:`Tower.embed` + :meth:`Tower.run` over a range of layers + :meth:`Tower.head` (top_k): the lower part
  runs once and its token states are cached; each step feeds them through the top layers only.

The two agree (checked by :meth:`Tower.check_split` whenever top_k prepares), which guards against a model
whose layers need inputs the split does not pass (e.g. relative position biases). Written against the
transformers 5 layer API: a layer takes (hidden, attention_mask) where the mask is the 4-D mask the model
itself builds with ``transformers.masking_utils`` for its attention implementation, and returns the hidden
states (a tuple in older releases; both are accepted).
"""

from __future__ import annotations

import torch
from torch import nn


def _masks():
    try:
        from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
    except ImportError as exc:  # pragma: no cover - transformers < 4.53
        raise RuntimeError("top_k needs transformers >= 5 (transformers.masking_utils)") from exc
    return create_bidirectional_mask, create_causal_mask


class Tower(nn.Module):
    """One pretrained stack. `layers` is the sequence of transformer blocks that top_k splits."""

    width: int  # output vector width

    @property
    def layers(self) -> nn.ModuleList:
        """The transformer blocks, in the wrapped model (not re-registered here)."""
        raise NotImplementedError  # pragma: no cover - interface

    def _set_layers(self, layers: nn.ModuleList) -> None:
        raise NotImplementedError  # pragma: no cover - interface

    def encode(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - interface
        """(B, W) vectors through the model's own forward."""
        raise NotImplementedError

    def embed(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H) states entering layer 0, and the (B, T) bool mask of real tokens."""
        raise NotImplementedError  # pragma: no cover - interface

    def layer_kwargs(self, hidden: torch.Tensor, mask: torch.Tensor) -> dict:
        raise NotImplementedError  # pragma: no cover - interface

    def head(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, H) states after the last layer -> (B, W) item vectors."""
        raise NotImplementedError  # pragma: no cover - interface

    def embedding_modules(self) -> list[nn.Module]:
        """Modules used only below layer 0 (dropped by :meth:`keep_top`)."""
        raise NotImplementedError  # pragma: no cover - interface

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def run(self, hidden: torch.Tensor, mask: torch.Tensor, start: int = 0, stop: int | None = None):
        """States through layers[start:stop]; (B, T, H) -> (B, T, H)."""
        kwargs = self.layer_kwargs(hidden, mask)
        for layer in list(self.layers)[start:stop]:
            out = layer(hidden, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def lower(self, inputs: dict[str, torch.Tensor], n_lower: int) -> tuple[torch.Tensor, torch.Tensor]:
        """States after the first `n_lower` layers (what top_k caches) and the token mask."""
        hidden, mask = self.embed(inputs)
        return self.run(hidden, mask, 0, n_lower), mask

    def keep_top(self, k: int) -> int:
        """Keep only the top k layers and the head; returns how many pretrained weights were let go."""
        dropped = [*self.embedding_modules(), *list(self.layers)[: self.num_layers - k]]
        n = sum(p.numel() for m in dropped for p in m.parameters())
        self._set_layers(nn.ModuleList(list(self.layers)[self.num_layers - k :]))
        self._drop_embedding()
        return n

    def _drop_embedding(self) -> None:
        raise NotImplementedError  # pragma: no cover - interface

    @torch.no_grad()
    def check_split(self, inputs: dict[str, torch.Tensor], n_lower: int, atol: float = 1e-4) -> None:
        """embed + layers + head must reproduce the model's own forward, else top_k would train a different
        function than frozen/full encode."""
        was = self.training
        self.eval()
        try:
            whole = self.encode(inputs)  # (B, W)
            hidden, mask = self.lower(inputs, n_lower)
            split = self.head(self.run(hidden, mask, n_lower), mask)  # (B, W)
        finally:
            self.train(was)
        err = (whole - split).abs().max().item()
        if not err <= atol * max(1.0, whole.abs().max().item()):
            raise RuntimeError(
                f"{type(self).__name__}: running the layers one by one differs from the model's forward "
                f"(max abs diff {err:.2e}); top_k does not support this architecture: use frozen or full"
            )


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, H) -> (B, H): the first token (`cls`) or the mean over real tokens (`mean`)."""
    if how == "cls":
        return hidden[:, 0]  # (B, H)
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, H)


class BertTower(Tower):
    """A BERT-family encoder (embeddings + encoder.layer: BERT, MiniLM, RoBERTa, ELECTRA, ...), pooled."""

    def __init__(self, model: nn.Module, pooling: str):
        super().__init__()
        if not (hasattr(model, "embeddings") and hasattr(getattr(model, "encoder", None), "layer")):
            raise TypeError(
                f"{type(model).__name__} is not a BERT-style encoder (embeddings + encoder.layer); the text "
                "encoder supports BERT-family models"
            )
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # item vectors pool the token states themselves; skip the unused head
        self.model = model  # kept whole for encode(); keep_top() trims it
        self.config = model.config
        self.pooling = pooling
        self.width = model.config.hidden_size

    @property
    def layers(self):
        return self.model.encoder.layer

    def _set_layers(self, layers):
        self.model.encoder.layer = layers

    def encode(self, inputs):
        out = self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return pool(out.last_hidden_state, inputs["attention_mask"].bool(), self.pooling)  # (B, H)

    def embed(self, inputs):
        hidden = self.model.embeddings(input_ids=inputs["input_ids"])  # (B, T, H)
        return hidden, inputs["attention_mask"].bool()

    def layer_kwargs(self, hidden, mask):
        bidirectional, _ = _masks()
        return {
            "attention_mask": bidirectional(
                config=self.config, inputs_embeds=hidden, attention_mask=mask.long()
            )
        }

    def head(self, hidden, mask):
        return pool(hidden, mask, self.pooling)

    def embedding_modules(self):
        return [self.model.embeddings]

    def _drop_embedding(self) -> None:
        self.model.embeddings = None


class ClipTextTower(Tower):
    """CLIP's text tower: causal layers, final LayerNorm, the end-of-text token's state, text projection."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.text = clip.text_model
        self.projection = clip.text_projection
        self.config = self.text.config
        self.width = clip.config.projection_dim

    @property
    def layers(self):
        return self.text.encoder.layers

    def _set_layers(self, layers):
        self.text.encoder.layers = layers

    def encode(self, inputs):
        out = self.text(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return self.projection(out.pooler_output)  # (B, P)

    def embed(self, inputs):
        return self.text.embeddings(input_ids=inputs["input_ids"]), inputs["attention_mask"].bool()

    def layer_kwargs(self, hidden, mask):
        _, causal = _masks()
        attn = causal(config=self.config, inputs_embeds=hidden, attention_mask=mask.long(), cache=None)
        return {"attention_mask": attn, "is_causal": True}

    def head(self, hidden, mask):
        hidden = self.text.final_layer_norm(hidden)  # (B, T, H)
        last = mask.long().sum(1) - 1  # (B,) the end-of-text token: the last real one (right padding)
        return self.projection(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])  # (B, P)

    def embedding_modules(self):
        return [self.text.embeddings]

    def _drop_embedding(self) -> None:
        self.text.embeddings = None


class ClipVisionTower(Tower):
    """CLIP's vision tower: patch embeddings + pre-LayerNorm, layers, the class token, post-LayerNorm,
    visual projection."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.vision = clip.vision_model
        self.projection = clip.visual_projection
        self.width = clip.config.projection_dim

    @property
    def layers(self):
        return self.vision.encoder.layers

    def _set_layers(self, layers):
        self.vision.encoder.layers = layers

    def encode(self, inputs):
        return self.projection(self.vision(pixel_values=inputs["pixel_values"]).pooler_output)  # (B, P)

    def embed(self, inputs):
        patches = self.vision.embeddings(inputs["pixel_values"])  # (B, 1 + patches, H), class token first
        hidden = self.vision.pre_layrnorm(patches)
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)  # (B, T)
        return hidden, mask

    def layer_kwargs(self, hidden, mask):
        return {"attention_mask": None}  # every patch sees every patch

    def head(self, hidden, mask):
        return self.projection(self.vision.post_layernorm(hidden[:, 0]))  # (B, P) from the class token

    def embedding_modules(self):
        return [self.vision.embeddings, self.vision.pre_layrnorm]

    def _drop_embedding(self) -> None:
        self.vision.embeddings = None
        self.vision.pre_layrnorm = None
