"""Sequences -> padded tensors. The only data module that imports torch.

Training uses *all positions* of a sequence at once. A history longer than ``max_len`` is cut into windows
that end at the sequence's end and step back by ``stride``; each target position is *owned* by exactly one
window (the one where it has the most context), and only owned positions count in the loss. So every
training target is predicted once per epoch, with at least ``max_len - stride`` items of context once the
history allows it.

Sequences are left-padded (item vectors right-aligned): the last column is always the most recent item,
which is where next-item prediction reads the state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

PAD = 0


@dataclass
class Windows:
    """Training windows: inputs and the targets each window owns (0 where nothing is owned)."""

    inputs: torch.Tensor  # (W, L) int64, left-padded with 0
    targets: torch.Tensor  # (W, L) int64, 0 = no loss at this position

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def num_targets(self) -> int:
        return int((self.targets > 0).sum())

    def batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled mini-batches (the permutation comes from `generator`, so runs are repeatable)."""
        order = torch.randperm(len(self), generator=generator)
        for start in range(0, len(self), batch_size):
            idx = order[start : start + batch_size]
            yield self.inputs[idx], self.targets[idx]


def make_windows(sequences: list[np.ndarray], max_len: int, stride: int, shift: bool) -> Windows:
    """Cut training sequences into windows.

    shift=True (causal next-item training): inputs s[:-1], targets s[1:].
    shift=False (cloze training): inputs s, targets s (the objective decides which positions to mask).
    """
    if not 1 <= stride <= max_len:
        raise ValueError(f"window stride must be in [1, max_len={max_len}], got {stride}")
    rows_in, rows_tgt = [], []
    for seq in sequences:
        if shift:
            if len(seq) < 2:
                continue
            inp, tgt = seq[:-1], seq[1:]
        else:
            if len(seq) < 1:
                continue
            inp, tgt = seq, seq
        for start, end, owned_from, owned_to in window_spans(len(inp), max_len, stride):
            row_in = np.zeros(max_len, dtype=np.int64)
            row_tgt = np.zeros(max_len, dtype=np.int64)
            n = end - start
            row_in[max_len - n :] = inp[start:end]
            keep = np.zeros(n, dtype=bool)
            keep[owned_from - start : owned_to - start] = True
            row_tgt[max_len - n :] = np.where(keep, tgt[start:end], PAD)
            rows_in.append(row_in)
            rows_tgt.append(row_tgt)
    if not rows_in:
        raise ValueError("no training sequence is long enough to make a training window")
    return Windows(torch.from_numpy(np.stack(rows_in)), torch.from_numpy(np.stack(rows_tgt)))


def window_spans(length: int, max_len: int, stride: int) -> list[tuple[int, int, int, int]]:
    """(start, end, owned_from, owned_to) of each window; owned ranges partition [0, length)."""
    if length <= max_len:
        return [(0, length, 0, length)]
    spans = []
    end = length
    while end > max_len:
        spans.append((end - max_len, end, end - stride, end))
        end -= stride
    first_owned_to = spans[-1][2]  # what the earliest sliding window did not take
    if first_owned_to > 0:
        spans.append((0, max_len, 0, first_owned_to))
    return spans


def pad_left(histories: list[np.ndarray], max_len: int) -> torch.Tensor:
    """The last `max_len` items of each history, left-padded: (B, max_len) int64."""
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, hist in enumerate(histories):
        tail = hist[-max_len:] if max_len > 0 else hist[:0]
        if len(tail):
            out[row, max_len - len(tail) :] = tail
    return torch.from_numpy(out)


def seen_lists(histories: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Full histories (not truncated) as a flat index list for masking: (rows, items), both (S,) int64."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    items = np.concatenate(histories) if histories else np.zeros(0, np.int64)
    return torch.from_numpy(rows.astype(np.int64)), torch.from_numpy(items.astype(np.int64))
