"""The evaluation protocol: which candidates each target is ranked against, and the slices reported.

Default: full ranking over the whole catalogue (the padding column 0 is never a candidate), with the user's
history excluded. If a target also occurs in its own history (a repeat), it stays a candidate and the case is
counted (``targets_in_history``): excluding it would make the target unrankable.

Every evaluation also ranks the same scores a second time with the history kept as candidates
(:attr:`Evaluation.history_kept`): the convention of RecBole, UniSRec, VQ-Rec and most papers. Both come from
one forward pass, so the two numbers of a run always describe the same model. Excluding the history answers
"how well does it rank items the user has not consumed yet" (the usual product question, and higher numbers);
keeping it is what to quote beside published figures.
Sampled candidates (target + N uniform negatives the user has not seen) exist only when a recipe asks for them;
the negatives are drawn from a seeded generator, so every model of a comparison faces the same candidates.

Memory: users are scored in batches of ``batch_size`` rows, so a batch's (B, N + 1) scores and masks are the
only large tensors. Each batch's counts are written into (M,) buffers allocated before the loop, and nothing a
batch allocates outlives it. Why it matters: glibc's malloc serves these multi-MB tensors from its heap once a
freed one has raised its mmap threshold, and a small tensor kept alive across batches (the per-batch counts
used to be appended to lists) can be carved out of a freed score matrix, so the next batch's matrix no longer
fits and the heap grows. On MicroLens-50K (46,420 users x 14,080 columns, 182 batches) the first validation
grew the process by 9.9 GB that way (peak 10.3 GB RSS) and took 53 s; with the buffers it grows by ~0.2 GB in
34 s, with identical metrics (``benchmarks/microlens_scale.py``).

Slices (each a metric group of the run): ``warm`` / ``cold`` target items by training count; ``pop-head``,
``pop-torso``, ``pop-tail`` by the target's training count against catalogue-share thresholds; ``hist-*`` by
the length of the user's history before the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from recbench.data.batches import pad_left, seen_lists
from recbench.data.splits import EvalSet
from recbench.evaluation.metrics import mean_metrics, metrics_from_counts, rank_counts, ranks_from_counts

CONVENTIONS = ("declared", "kept")  # the recipe's ranking convention; history items kept as candidates
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
    slice_masks: dict[str, np.ndarray] = field(default_factory=dict)  # slice -> (M,) bool
    targets_in_history: int = 0
    history_kept: Evaluation | None = None  # the same scores ranked with history items kept as candidates


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
    generator = torch.Generator().manual_seed(protocol.seed)
    m = len(eval_set)
    # (M,) counts of higher and tied candidates per convention, filled batch by batch (see the module docstring)
    counts = {
        name: (torch.zeros(m, dtype=torch.float64), torch.zeros(m, dtype=torch.float64))
        for name in CONVENTIONS
    }
    in_history = 0
    for start in range(0, m, protocol.batch_size):
        stop = min(start + protocol.batch_size, m)
        batch, repeats = _rank_batch(
            score_fn,
            eval_set.histories[start:stop],
            eval_set.targets[start:stop],
            protocol,
            generator,
            device,
        )
        for name, (higher, tied) in batch.items():
            counts[name][0][start:stop] = higher
            counts[name][1][start:stop] = tied
        in_history += repeats
        del batch, higher, tied  # copied: nothing of the batch outlives it (see the module docstring)
        if on_batch:
            on_batch(stop - start)
    out = {name: _assemble(eval_set, h, t, protocol, slices, in_history) for name, (h, t) in counts.items()}
    out["declared"].history_kept = out["kept"]
    return out["declared"]


def _rank_batch(
    score_fn: ScoreFn,
    histories: list[np.ndarray],
    targets_np: np.ndarray,
    protocol: Protocol,
    generator: torch.Generator,
    device: torch.device | str,
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], int]:
    """One batch of B users: {convention: ((B,) higher, (B,) tied)} and how many targets are in their history.

    A function of its own so that every (B, N + 1) tensor of the batch is freed when it returns."""
    n_cols = protocol.num_items + 1
    targets = torch.from_numpy(targets_np).to(device)  # (B,)
    inputs = pad_left(histories, protocol.max_len).to(device)  # (B, L)
    scores = score_fn(inputs).float()  # (B, N + 1)
    if scores.shape != (len(histories), n_cols):
        raise ValueError(f"score_fn returned {tuple(scores.shape)}, expected ({len(histories)}, {n_cols})")
    seen = torch.zeros(len(histories), n_cols, dtype=torch.bool)  # (B, N + 1)
    rows, items = seen_lists(histories)
    seen[rows, items] = True
    b = torch.arange(len(histories))
    repeats = int(seen[b, targets.cpu()].sum())
    kept = torch.zeros_like(seen)  # (B, N + 1) excluded columns when the history stays a candidate
    kept[:, 0] = True  # padding is never a candidate
    if protocol.candidates == "sampled":
        kept |= _unsampled(seen, targets.cpu(), protocol.sampled_negatives, generator)
    declared = kept | seen if protocol.exclude_seen else kept
    out = {"declared": rank_counts(scores, targets, declared.to(device))}  # (B,), (B,)
    out["kept"] = rank_counts(scores, targets, kept.to(device)) if protocol.exclude_seen else out["declared"]
    return out, repeats


def _assemble(
    eval_set: EvalSet,
    higher: torch.Tensor,
    tied: torch.Tensor,
    protocol: Protocol,
    slices: dict[str, np.ndarray] | None,
    in_history: int,
) -> Evaluation:
    """Ranks, per-user metrics, means and slice means from the (M,) counts of higher and tied candidates."""
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
        result.slice_masks[name] = mask_t.numpy()
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


# Slice names become MLflow metric groups (`test/pop-head/ndcg_at_10`): they use only letters, digits and
# '-', which every MLflow backend accepts (no ':', '<', '=', '+').


@dataclass(frozen=True)
class SliceSpec:
    """The declared slice thresholds (EvalSection; part of the protocol fingerprint)."""

    cold_threshold: int = 0
    popularity_head: float = 0.2
    popularity_tail: float = 0.5
    history_bounds: tuple[int, ...] = (5, 10, 20, 50)


def _share_count(n: int, share: float) -> int:
    """ceil(share * n), at least 1, robust to float noise (0.2 * 10 is 2.0000000000000004)."""
    return max(1, math.ceil(round(share * n, 9)))


def popularity_thresholds(train_counts: np.ndarray, head: float, tail: float) -> tuple[int, int]:
    """(head_min, tail_max) training counts over the catalogue items 1..N (index 0 is padding).

    head_min: the count of the ceil(head * N)-th most-trained item (at least 1: an untrained item is never
    head); tail_max: the count of the ceil(tail * N)-th least-trained item. An item's bucket therefore depends
    only on its count; items tied at a boundary join the outer bucket (head or tail).
    """
    counts = np.sort(np.asarray(train_counts[1:], dtype=np.int64))  # (N,) ascending
    n = len(counts)
    if n == 0:
        raise ValueError("popularity buckets need at least one catalogue item")
    head_min = max(1, int(counts[n - _share_count(n, head)]))
    tail_max = int(counts[_share_count(n, tail) - 1])
    return head_min, tail_max


def popularity_slices(
    targets: np.ndarray, train_counts: np.ndarray, head: float, tail: float
) -> dict[str, np.ndarray]:
    """pop-head / pop-torso / pop-tail by the target item's training count (see :func:`popularity_thresholds`)."""
    head_min, tail_max = popularity_thresholds(train_counts, head, tail)
    count = np.asarray(train_counts)[targets]  # (M,)
    is_head = count >= head_min
    is_tail = (count <= tail_max) & ~is_head
    return {"pop-head": is_head, "pop-torso": ~is_head & ~is_tail, "pop-tail": is_tail}


def history_slices(lengths: np.ndarray, bounds: tuple[int, ...]) -> dict[str, np.ndarray]:
    """History-length buckets (items before the target, untruncated): bounds (5, 20) give hist-le5,
    hist-6-20 and hist-gt20. No bounds, no buckets."""
    lengths = np.asarray(lengths)
    out: dict[str, np.ndarray] = {}
    lo = None
    for b in sorted(set(bounds)):
        if lo is None:
            out[f"hist-le{b}"] = lengths <= b
        else:
            out[f"hist-{lo}-{b}" if lo < b else f"hist-{b}"] = (lengths >= lo) & (lengths <= b)
        lo = b + 1
    if lo is not None:
        out[f"hist-gt{lo - 1}"] = lengths >= lo
    return out


def eval_slices(eval_set: EvalSet, train_counts: np.ndarray, spec: SliceSpec) -> dict[str, np.ndarray]:
    """Every slice of an evaluation set, as (M,) bool masks over its users: warm, cold, pop-*, hist-*."""
    targets = np.asarray(eval_set.targets)
    lengths = np.fromiter((len(h) for h in eval_set.histories), dtype=np.int64, count=len(eval_set))
    return {
        **target_slices(targets, train_counts, spec.cold_threshold),
        **popularity_slices(targets, train_counts, spec.popularity_head, spec.popularity_tail),
        **history_slices(lengths, spec.history_bounds),
    }
