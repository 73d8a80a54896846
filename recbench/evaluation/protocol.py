"""The evaluation protocol: which candidates each target is ranked against, and the slices reported.

Default: full ranking over the whole catalogue (the padding column 0 is never a candidate), with the user's
history excluded. If a target also occurs in its own history (a repeat), it stays a candidate and the case is
counted (``targets_in_history``): excluding it would make the target unrankable.
Sampled candidates (target + N uniform negatives the user has not seen) exist only when a recipe asks for them;
the negatives are drawn from a seeded generator, so every model of a comparison faces the same candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from recbench.data.batches import pad_left, seen_lists
from recbench.data.splits import EvalSet
from recbench.evaluation.metrics import mean_metrics, metrics_from_counts, rank_counts, ranks_from_counts

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # (B, L) item indices -> (B, N + 1) scores


@dataclass
class Evaluation:
    users: np.ndarray  # (M,)
    targets: np.ndarray  # (M,)
    ranks: np.ndarray  # (M,) float, pessimistic or expected as declared
    per_user: dict[str, np.ndarray]  # metric -> (M,)
    metrics: dict[str, float]  # metric -> mean over all users
    slices: dict[str, dict[str, float]] = field(default_factory=dict)  # slice -> metric -> mean
    slice_sizes: dict[str, int] = field(default_factory=dict)
    targets_in_history: int = 0


@dataclass(frozen=True)
class Protocol:
    num_items: int
    max_len: int
    ks: tuple[int, ...]
    exclude_seen: bool = True
    ties: str = "pessimistic"
    candidates: str = "full"
    sampled_negatives: int = 100
    batch_size: int = 256
    seed: int = 0


@torch.no_grad()
def evaluate(
    score_fn: ScoreFn,
    eval_set: EvalSet,
    protocol: Protocol,
    device: torch.device | str = "cpu",
    slices: dict[str, np.ndarray] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Evaluation:
    """Rank every user's target; `slices` maps a slice name to a (M,) bool mask over the users."""
    n_cols = protocol.num_items + 1
    generator = torch.Generator().manual_seed(protocol.seed)
    highers, tieds = [], []
    in_history = 0
    for start in range(0, len(eval_set), protocol.batch_size):
        stop = min(start + protocol.batch_size, len(eval_set))
        histories = eval_set.histories[start:stop]
        targets = torch.from_numpy(eval_set.targets[start:stop]).to(device)  # (B,)
        inputs = pad_left(histories, protocol.max_len).to(device)  # (B, L)
        scores = score_fn(inputs).float()  # (B, N + 1)
        if scores.shape != (len(histories), n_cols):
            raise ValueError(
                f"score_fn returned {tuple(scores.shape)}, expected ({len(histories)}, {n_cols})"
            )
        seen = torch.zeros(len(histories), n_cols, dtype=torch.bool)  # (B, N + 1)
        rows, items = seen_lists(histories)
        seen[rows, items] = True
        b = torch.arange(len(histories))
        in_history += int(seen[b, targets.cpu()].sum())
        excluded = seen.clone() if protocol.exclude_seen else torch.zeros_like(seen)
        excluded[:, 0] = True  # padding is never a candidate
        if protocol.candidates == "sampled":
            excluded |= _unsampled(seen, targets.cpu(), protocol.sampled_negatives, generator)
        higher, tied = rank_counts(scores, targets, excluded.to(device))
        highers.append(higher)
        tieds.append(tied)
        if on_batch:
            on_batch(stop - start)
    higher = torch.cat(highers)
    tied = torch.cat(tieds)
    ranks = ranks_from_counts(higher, tied, protocol.ties)
    per_user = metrics_from_counts(higher, tied, protocol.ks, protocol.ties)
    result = Evaluation(
        users=eval_set.users,
        targets=eval_set.targets,
        ranks=ranks.numpy(),
        per_user={k: v.numpy() for k, v in per_user.items()},
        metrics=mean_metrics(per_user),
        targets_in_history=in_history,
    )
    for name, mask in (slices or {}).items():
        mask_t = torch.from_numpy(np.asarray(mask, dtype=bool))
        result.slice_sizes[name] = int(mask_t.sum())
        result.slices[name] = mean_metrics({k: v[mask_t] for k, v in per_user.items()})
    return result


def _unsampled(seen: torch.Tensor, targets: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """(B, N + 1) True for every column that is neither the target nor one of n sampled unseen negatives."""
    bsz, n_cols = seen.shape
    allowed = ~seen  # (B, N + 1)
    allowed[:, 0] = False
    allowed[torch.arange(bsz), targets] = False
    keys = torch.rand(bsz, n_cols, generator=generator)  # (B, N + 1) uniform keys
    keys[~allowed] = -1.0
    n_eff = min(n, n_cols - 1)
    chosen = keys.topk(n_eff, dim=1).indices  # (B, n) the n largest keys = uniform sample w/o replacement
    keep = torch.zeros_like(seen)
    keep.scatter_(1, chosen, True)
    keep &= allowed  # rows with fewer than n allowed items keep only the allowed ones
    keep[torch.arange(bsz), targets] = True
    return ~keep


def target_slices(
    targets: np.ndarray, train_counts: np.ndarray, cold_threshold: int
) -> dict[str, np.ndarray]:
    """warm / cold by how often the target item occurs in training (cold: at most `cold_threshold`)."""
    cold = train_counts[targets] <= cold_threshold
    return {"warm": ~cold, "cold": cold}
