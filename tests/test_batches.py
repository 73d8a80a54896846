"""Training windows: every target owned exactly once; left padding; history masks."""

import numpy as np
import pytest
import torch

from recbench.data.batches import make_windows, pad_left, seen_lists, window_spans


@pytest.mark.parametrize("length", [1, 5, 50, 51, 60, 120, 333])
@pytest.mark.parametrize("stride", [1, 10, 25, 50])
def test_owned_ranges_partition_the_sequence(length, stride):
    spans = window_spans(length, 50, stride)
    owned = np.zeros(length, dtype=int)
    for start, end, own_from, own_to in spans:
        assert 0 <= start <= own_from <= own_to <= end <= length
        assert end - start <= 50
        owned[own_from:own_to] += 1
    assert owned.tolist() == [1] * length


def test_sliding_windows_give_each_target_enough_context():
    spans = window_spans(200, 50, 25)
    for start, _end, own_from, _own_to in spans:
        if start > 0:
            assert own_from - start >= 25  # at least max_len - stride items before every owned target


def test_causal_windows_shift_targets_by_one():
    seq = np.arange(1, 8)  # items 1..7
    w = make_windows([seq], max_len=10, stride=5, shift=True)
    assert w.inputs.tolist() == [[0, 0, 0, 0, 1, 2, 3, 4, 5, 6]]
    assert w.targets.tolist() == [[0, 0, 0, 0, 2, 3, 4, 5, 6, 7]]


def test_long_sequence_windows_cover_every_target_once():
    seq = np.arange(1, 31)
    w = make_windows([seq], max_len=8, stride=4, shift=True)
    targets = w.targets[w.targets > 0].tolist()
    assert sorted(targets) == list(range(2, 31))
    # inputs and targets stay aligned: the target at a position is the input one step later
    for row_in, row_tgt in zip(w.inputs.tolist(), w.targets.tolist()):
        for i, t in enumerate(row_tgt):
            if t and i + 1 < len(row_in) and row_in[i + 1]:
                assert row_in[i + 1] == t


def test_cloze_windows_keep_items_as_their_own_targets():
    w = make_windows([np.array([4, 5, 6])], max_len=4, stride=2, shift=False)
    assert w.inputs.tolist() == [[0, 4, 5, 6]]
    assert w.targets.tolist() == [[0, 4, 5, 6]]


def test_short_sequences_are_skipped_and_empty_input_is_an_error():
    w = make_windows([np.array([3]), np.array([1, 2])], max_len=4, stride=2, shift=True)
    assert len(w) == 1
    with pytest.raises(ValueError, match="long enough"):
        make_windows([np.array([3])], max_len=4, stride=2, shift=True)


def test_batches_are_a_seeded_permutation():
    w = make_windows([np.arange(1, 6) + i for i in range(10)], max_len=6, stride=3, shift=True)
    a = [b[0] for b in w.batches(3, torch.Generator().manual_seed(0))]
    b = [b[0] for b in w.batches(3, torch.Generator().manual_seed(0))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert sum(len(x) for x in a) == len(w)


def test_pad_left_keeps_the_most_recent_items():
    out = pad_left([np.array([1, 2, 3, 4, 5]), np.array([7])], 3)
    assert out.tolist() == [[3, 4, 5], [0, 0, 7]]
    rows, items = seen_lists([np.array([1, 2]), np.array([5])])
    assert rows.tolist() == [0, 0, 1] and items.tolist() == [1, 2, 5]
