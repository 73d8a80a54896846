"""Catalogue rows -> model inputs: token ids for texts, pixel values for images.

A feed knows the catalogue's content (texts or image files) and turns any set of catalogue rows (item index - 1)
into a batch for a tower. Texts are tokenised once; a batch is padded only to its own longest text, and
encoders sort rows by :meth:`lengths` before cutting batches so that padding stays small. Anything that can
make a run fail (an unreadable image, a missing file) is found by :meth:`check`, before training starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from recbench.data.schema import DataError
from recbench.encoders.cache import file_sha256, hash_strings


class Feed:
    def key(self) -> dict:  # pragma: no cover - interface
        """What the inputs depend on (part of every cache key)."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise a DataError for content that cannot be encoded."""

    def lengths(self) -> np.ndarray:  # pragma: no cover - interface
        """(N,) input length of each catalogue row (tokens; constant for images)."""
        raise NotImplementedError

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class TextFeed(Feed):
    """Item texts, tokenised once with the model's tokenizer and truncated to `max_tokens`."""

    def __init__(self, texts: list[str], tokenizer: Callable[[], object], max_tokens: int):
        self.texts = texts
        self._load_tokenizer = tokenizer  # loaded only when something must be encoded
        self.max_tokens = max_tokens
        self._ids: list[list[int]] | None = None
        self._lengths: np.ndarray | None = None
        self._pad = 0

    def key(self) -> dict:
        return {"texts": hash_strings(self.texts), "max_tokens": self.max_tokens}

    def _tokenise(self) -> list[list[int]]:
        if self._ids is None:
            tok = self._load_tokenizer()
            self._pad = tok.pad_token_id if tok.pad_token_id is not None else 0
            enc = tok(self.texts, truncation=True, max_length=self.max_tokens, add_special_tokens=True)
            self._ids = [list(ids) for ids in enc["input_ids"]]
        return self._ids

    def lengths(self) -> np.ndarray:
        if self._lengths is None:
            self._lengths = np.array([len(ids) for ids in self._tokenise()], dtype=np.int64)
        return self._lengths

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        ids = self._tokenise()
        seqs = [ids[r] for r in rows]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self._pad, dtype=torch.long)  # (b, T) right-padded
        mask = torch.zeros((len(seqs), width), dtype=torch.long)  # (b, T)
        for i, s in enumerate(seqs):
            input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


class ImageFeed(Feed):
    """Item images through the model's own image processor; a missing image is blank (white) when the card
    says `missing_image: blank` (ItemContent raises before this for `error`)."""

    def __init__(
        self, paths: list[str | None], processor: Callable[[], object], tokens: int, dataset: str = "dataset"
    ):
        self.paths = paths
        self.tokens = tokens  # states per image in the vision tower (patches + class token)
        self._load_processor = processor
        self._processor = None
        self.dataset = dataset

    def key(self) -> dict:
        return {"images": hash_strings(file_sha256(Path(p)) if p else None for p in self.paths)}

    def check(self) -> None:
        from PIL import Image

        for row, path in enumerate(self.paths):
            if not path:
                continue
            try:
                with Image.open(path) as img:
                    img.verify()
            except (OSError, SyntaxError) as exc:
                raise DataError(
                    f"item row {row} of {self.dataset}: image {path} cannot be read ({exc}); fix or remove it "
                    "(items without an image are blank when the card says missing_image: blank)"
                ) from None

    def lengths(self) -> np.ndarray:
        return np.full(len(self.paths), self.tokens, dtype=np.int64)

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        from PIL import Image

        if self._processor is None:
            self._processor = self._load_processor()
        images = []
        for r in rows:
            path = self.paths[r]
            if path:
                with Image.open(path) as img:
                    images.append(img.convert("RGB"))
            else:
                images.append(Image.new("RGB", (224, 224), (255, 255, 255)))
        out = self._processor(images=images, return_tensors="pt")
        return {"pixel_values": out["pixel_values"]}  # (b, 3, H, W)
