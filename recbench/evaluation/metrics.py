"""Ranking metrics as pure functions of scores, targets and an exclusion mask.

Rank convention (1 = best). Ties between the target and another candidate count against the target
(``pessimistic``: rank = 1 + #higher + #tied) or as the expected rank under random tie-breaking
(``expected``: rank = 1 + #higher + #tied / 2). Either way a model whose scores are all equal gets a rank near
the bottom, never 1. Scores that are NaN or infinite are an error, never a rank.
"""

from __future__ import annotations

import math

import torch

METRICS = ("hr", "ndcg", "mrr")


class NonFiniteScoresError(FloatingPointError):
    """A model produced NaN/inf scores; the run must stop (they are never ranked)."""


def check_finite(scores: torch.Tensor, where: str) -> None:
    bad = ~torch.isfinite(scores)
    if bool(bad.any()):
        rows = torch.nonzero(bad.any(dim=1)).flatten()
        n_nan = int(torch.isnan(scores).sum())
        raise NonFiniteScoresError(
            f"non-finite scores in {where}: {int(bad.sum())} values ({n_nan} NaN) in {len(rows)} rows "
            f"(first rows {rows[:5].tolist()}); a diverged model is never ranked. Lower train.lr or set "
            "train.grad_clip."
        )


def rank_counts(
    scores: torch.Tensor, targets: torch.Tensor, excluded: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """How many non-excluded candidates score higher than, and equal to, each row's target.

    scores: (B, C) float, finite; targets: (B,) int64 column indices; excluded: (B, C) bool or None.
    The target itself is never excluded (even if `excluded` marks it) and never counted.
    Returns (higher, tied), both (B,) float64.
    """
    check_finite(scores, "ranking")
    b = torch.arange(scores.shape[0], device=scores.device)
    target_score = scores[b, targets].unsqueeze(1)  # (B, 1)
    candidate = torch.ones_like(scores, dtype=torch.bool) if excluded is None else ~excluded
    candidate[b, targets] = False
    higher = ((scores > target_score) & candidate).sum(dim=1).double()  # (B,)
    tied = ((scores == target_score) & candidate).sum(dim=1).double()  # (B,)
    return higher.cpu(), tied.cpu()


def ranks_from_counts(higher: torch.Tensor, tied: torch.Tensor, ties: str) -> torch.Tensor:
    """(B,) ranks: pessimistic 1 + higher + tied, or the expected rank 1 + higher + tied / 2."""
    if ties == "pessimistic":
        return 1.0 + higher + tied
    if ties == "expected":
        return 1.0 + higher + tied / 2.0
    raise ValueError(f"unknown tie rule {ties!r}")


def metrics_from_counts(
    higher: torch.Tensor, tied: torch.Tensor, ks: tuple[int, ...], ties: str
) -> dict[str, torch.Tensor]:
    """Per-user HR@K, NDCG@K, MRR@K, each (B,) float64.

    pessimistic: the metrics of rank 1 + higher + tied.
    expected: the exact expectation when the target's rank is uniform over 1 + higher ... 1 + higher + tied
    (random tie-breaking), so a constant-score model gets K / N for HR@K, not 1.
    """
    if ties == "pessimistic":
        return metrics_from_ranks(1.0 + higher + tied, ks)
    if ties != "expected":
        raise ValueError(f"unknown tie rule {ties!r}")
    kmax = max(ks)
    r = torch.arange(1, kmax + 1, dtype=torch.float64)  # (Kmax,) possible ranks
    lo = (higher + 1.0).unsqueeze(1)  # (B, 1)
    hi = (higher + tied + 1.0).unsqueeze(1)  # (B, 1)
    p = ((r >= lo) & (r <= hi)).double() / (tied + 1.0).unsqueeze(1)  # (B, Kmax) P(rank = r)
    out = {}
    for k in ks:
        pk = p[:, :k]  # (B, k)
        out[f"hr@{k}"] = pk.sum(dim=1)
        out[f"ndcg@{k}"] = (pk / torch.log2(r[:k] + 1.0)).sum(dim=1)
        out[f"mrr@{k}"] = (pk / r[:k]).sum(dim=1)
    return out


def metrics_from_ranks(ranks: torch.Tensor, ks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-user HR@K, NDCG@K and MRR@K from (B,) integer-valued ranks; each a (B,) float64 tensor.

    One relevant item per user, so IDCG = 1: NDCG@K = 1 / log2(rank + 1) if rank <= K else 0.
    """
    ranks = ranks.double()
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"hr@{k}"] = hit.double()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 1.0), torch.zeros_like(ranks))
        out[f"mrr@{k}"] = torch.where(hit, 1.0 / ranks, torch.zeros_like(ranks))
    return out


def mean_metrics(per_user: dict[str, torch.Tensor]) -> dict[str, float]:
    """Average per-user metrics; an empty group (no users) gives no entry rather than a NaN."""
    out = {}
    for name, values in per_user.items():
        if values.numel() == 0:
            continue
        value = float(values.mean())
        if not math.isfinite(value):
            raise NonFiniteScoresError(f"metric {name} is not finite")
        out[name] = value
    return out
