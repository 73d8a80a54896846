"""The most-popular baseline: the floor every table is read against.

Every user gets the same list, items ordered by how often they occur in the training sequences. It needs no
item representation and trains nothing, so it reaches the evaluator through the same `scorer()` interface as
a :class:`~recbench.model.Recommender` and the runner skips the training stage for it (``trainable`` False).

Scores are ranks, not counts: equal counts are ordered by item index (lower first), so the list is
deterministic and the evaluator's tie rule never applies. Float32 holds these integer scores exactly for
catalogues below 2^24 items.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


class PopularityModel(nn.Module):
    trainable = False

    def __init__(self, train_counts: np.ndarray):
        super().__init__()
        counts = np.asarray(train_counts, dtype=np.int64)  # (N + 1,) index 0 = padding
        self.num_items = len(counts) - 1
        order = np.lexsort((np.arange(len(counts)), -counts))  # most trained first, then by item index
        scores = np.empty(len(counts), dtype=np.float32)
        scores[order] = np.arange(len(counts), 0, -1, dtype=np.float32)  # best item gets the highest score
        self.register_buffer("scores", torch.from_numpy(scores))  # (N + 1,)

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        def score(histories: torch.Tensor) -> torch.Tensor:
            return self.scores.to(histories.device).expand(len(histories), -1)  # (B, N + 1)

        return score
