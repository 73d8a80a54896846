"""Splits: which items train, which are validation targets, which are test targets.

Every split produces the same :class:`Split` record, so the trainer and the evaluator never know which one
ran. Validation never sees the test target; the test history includes the validation item (it happened
before the test item), as in RecBole and the SASRec paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from recbench.config import ColdItemSplit, LeaveOneOutSplit, SplitSection, TemporalSplit
from recbench.data.schema import DataError, SequenceData


@dataclass
class EvalSet:
    """Users to evaluate: each with its history (items before the target, time order) and its target."""

    users: np.ndarray  # (M,) user indices
    histories: list[np.ndarray]  # M arrays of item indices
    targets: np.ndarray  # (M,) item indices in 1..N

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, mask: np.ndarray) -> EvalSet:
        idx = np.flatnonzero(mask)
        return EvalSet(self.users[idx], [self.histories[i] for i in idx], self.targets[idx])


@dataclass
class Split:
    kind: str
    train: list[np.ndarray]  # per user: the training sequence (may be empty)
    valid: EvalSet
    test: EvalSet
    num_items: int
    cold_items: np.ndarray | None = None  # held-out items (cold_item split only)
    stats: dict = field(default_factory=dict)

    @cached_property
    def train_item_counts(self) -> np.ndarray:
        """(N + 1,) how often each item index occurs in the training sequences (index 0: padding).
        Computed once: a Split is not changed after it is made (cold_item builds a new one)."""
        flat = np.concatenate([s for s in self.train if len(s)] or [np.zeros(0, np.int64)])
        return np.bincount(flat, minlength=self.num_items + 1)


def make_split(data: SequenceData, section: SplitSection) -> Split:
    if isinstance(section, LeaveOneOutSplit):
        return leave_one_out(data)
    if isinstance(section, ColdItemSplit):
        return cold_item(data, section.cold_fraction, section.seed)
    if isinstance(section, TemporalSplit):
        return temporal(data, section.valid_fraction, section.test_fraction)
    raise TypeError(f"unknown split {section!r}")


def leave_one_out(data: SequenceData) -> Split:
    """Last item = test, second to last = validation; users with fewer than 3 items are dropped (counted)."""
    train, v_users, v_hist, v_tgt, t_hist, t_tgt = [], [], [], [], [], []
    dropped = 0
    for u, seq in enumerate(data.sequences):
        if len(seq) < 3:
            dropped += 1
            train.append(seq[:0])
            continue
        train.append(seq[:-2])
        v_users.append(u)
        v_hist.append(seq[:-2])
        v_tgt.append(seq[-2])
        t_hist.append(seq[:-1])
        t_tgt.append(seq[-1])
    if not v_users:
        raise DataError(f"{data.name}: no user has the 3 interactions leave-one-out needs")
    users = np.asarray(v_users, dtype=np.int64)
    return Split(
        kind="leave_one_out",
        train=train,
        valid=EvalSet(users, v_hist, np.asarray(v_tgt, dtype=np.int64)),
        test=EvalSet(users.copy(), t_hist, np.asarray(t_tgt, dtype=np.int64)),
        num_items=data.num_items,
        stats={"users_dropped_too_short": dropped},
    )


def cold_item(data: SequenceData, fraction: float, seed: int) -> Split:
    """Leave-one-out whose training sequences never contain a held-out (cold) item.

    Cold items stay in evaluation histories and in the catalogue: they are ranked like any other item, and
    an ID encoder keeps their initial vectors. Users whose target is cold form the `cold` slice.
    """
    base = leave_one_out(data)
    rng = np.random.default_rng(seed)
    n_cold = max(1, int(round(fraction * data.num_items)))
    cold = np.sort(rng.choice(np.arange(1, data.num_items + 1), size=n_cold, replace=False))
    is_cold = np.zeros(data.num_items + 1, dtype=bool)
    is_cold[cold] = True
    removed = 0
    train = []
    for seq in base.train:
        keep = ~is_cold[seq]
        removed += int((~keep).sum())
        train.append(seq[keep])
    stats = {
        **base.stats,
        "cold_items": int(n_cold),
        "train_interactions_removed": removed,
        "cold_valid_targets": int(is_cold[base.valid.targets].sum()),
        "cold_test_targets": int(is_cold[base.test.targets].sum()),
    }
    return replace(base, kind="cold_item", train=train, cold_items=cold, stats=stats)


def temporal(data: SequenceData, valid_fraction: float, test_fraction: float) -> Split:
    """Global time cuts: training before t_valid; per user, the first item after each cut is its target."""
    if data.presplit:
        raise DataError(f"{data.name} fixes its own leave-one-out split; use split.kind: leave_one_out")
    times = data.timestamps
    if times is None:
        raise DataError(f"{data.name} has no timestamps: a temporal split needs them (use leave_one_out)")
    all_times = np.concatenate([t for t in times if len(t)])
    t_valid = float(np.quantile(all_times, 1 - valid_fraction - test_fraction))
    t_test = float(np.quantile(all_times, 1 - test_fraction))
    train = []
    valid = ([], [], [])
    test = ([], [], [])
    for u, (seq, ts) in enumerate(zip(data.sequences, times)):
        train.append(seq[ts < t_valid])
        for (lo, hi), bucket in (((t_valid, t_test), valid), ((t_test, np.inf), test)):
            pos = np.flatnonzero((ts >= lo) & (ts < hi))
            if len(pos) and pos[0] > 0:
                bucket[0].append(u)
                bucket[1].append(seq[: pos[0]])
                bucket[2].append(seq[pos[0]])
    if not valid[0] or not test[0]:
        raise DataError(f"{data.name}: the temporal cuts leave no validation or no test users")
    as_set = lambda b: EvalSet(np.asarray(b[0], np.int64), b[1], np.asarray(b[2], np.int64))  # noqa: E731
    return Split(
        kind="temporal",
        train=train,
        valid=as_set(valid),
        test=as_set(test),
        num_items=data.num_items,
        stats={"t_valid": t_valid, "t_test": t_test},
    )
