"""Splits: leave-one-out, item cold-start, global temporal."""

import numpy as np
import polars as pl
import pytest

from recbench.data.schema import DataError, SequenceData
from recbench.data.splits import cold_item, leave_one_out, temporal


def _data(seqs, times=None):
    n_items = max(int(max(s)) for s in seqs)
    return SequenceData(
        name="t",
        user_ids=[str(i) for i in range(len(seqs))],
        item_ids=[str(i) for i in range(1, n_items + 1)],
        sequences=[np.asarray(s, dtype=np.int64) for s in seqs],
        items=pl.DataFrame({"item_id": [str(i) for i in range(1, n_items + 1)]}),
        fingerprint="f",
        stats={},
        timestamps=[np.asarray(t, dtype=float) for t in times] if times else None,
    )


def test_leave_one_out_last_is_test_second_last_is_valid():
    split = leave_one_out(_data([[1, 2, 3, 4], [5, 6], [7, 8, 9]]))
    assert split.stats["users_dropped_too_short"] == 1
    assert split.valid.users.tolist() == [0, 2] and split.test.users.tolist() == [0, 2]
    assert split.valid.targets.tolist() == [3, 8]
    assert split.test.targets.tolist() == [4, 9]
    assert [h.tolist() for h in split.valid.histories] == [[1, 2], [7]]
    assert [h.tolist() for h in split.test.histories] == [[1, 2, 3], [7, 8]]
    assert [t.tolist() for t in split.train] == [[1, 2], [], [7]]
    # validation never sees the test target
    for hist, target in zip(split.valid.histories, split.test.targets):
        assert target not in hist.tolist()


def test_cold_item_split_keeps_cold_items_out_of_training_only():
    rng = np.random.default_rng(0)
    seqs = [rng.permutation(np.arange(1, 41))[:15] for _ in range(30)]
    split = cold_item(_data(seqs), fraction=0.25, seed=3)
    cold = set(split.cold_items.tolist())
    assert len(cold) == 10
    assert not any(set(t.tolist()) & cold for t in split.train)
    assert split.train_item_counts[list(cold)].sum() == 0
    # targets and catalogue are untouched: same as leave-one-out
    loo = leave_one_out(_data(seqs))
    assert split.test.targets.tolist() == loo.test.targets.tolist()
    assert split.stats["cold_test_targets"] == sum(t in cold for t in split.test.targets.tolist())
    # the draw is seeded
    assert cold_item(_data(seqs), fraction=0.25, seed=3).cold_items.tolist() == split.cold_items.tolist()


def test_temporal_split_uses_global_cuts():
    seqs = [[1, 2, 3, 4], [5, 6, 7, 8]]
    times = [[1, 2, 9, 10], [3, 4, 5, 8]]
    split = temporal(_data(seqs, times), valid_fraction=0.25, test_fraction=0.25)
    assert all((t < split.stats["t_valid"]).all() for t in [np.array(times[0])[:2]])
    assert len(split.test) >= 1
    for hist, target in zip(split.test.histories, split.test.targets):
        assert target not in hist.tolist()


def test_temporal_split_needs_timestamps():
    with pytest.raises(DataError, match="timestamps"):
        temporal(_data([[1, 2, 3]]), 0.1, 0.1)
