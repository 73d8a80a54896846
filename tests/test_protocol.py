"""The evaluator: exclusion of history, padding never ranked, repeats, sampled candidates, slices."""

import numpy as np
import pytest
import torch

from recbench.data.splits import EvalSet
from recbench.evaluation.metrics import NonFiniteScoresError
from recbench.evaluation.protocol import Protocol, evaluate, target_slices


def _set(histories, targets):
    return EvalSet(np.arange(len(targets)), [np.asarray(h) for h in histories], np.asarray(targets))


def _fixed_scores(table):
    table = torch.tensor(table, dtype=torch.float32)

    def score(inputs):
        return table[: inputs.shape[0]].clone()

    return score


def test_history_items_are_excluded_and_padding_is_never_a_candidate():
    # catalogue of 5 items; the model loves items 1 and 2, which the user has already seen
    scores = [[9.0, 8.0, 7.0, 1.0, 0.5, 0.2]]
    ev_set = _set([[1, 2]], [3])
    excl = evaluate(
        _fixed_scores(scores), ev_set, Protocol(num_items=5, max_len=4, ks=(1,), exclude_seen=True)
    )
    incl = evaluate(
        _fixed_scores(scores), ev_set, Protocol(num_items=5, max_len=4, ks=(1,), exclude_seen=False)
    )
    assert excl.ranks.tolist() == [1.0]  # padding (9.0) and history (8, 7) are not candidates
    assert incl.ranks.tolist() == [3.0]  # history counted, padding still not
    assert excl.metrics["hr@1"] == 1.0 and incl.metrics["hr@1"] == 0.0


def test_one_pass_gives_both_conventions_with_slices():
    """The history-kept ranking of the same scores (the papers' convention) travels with every evaluation."""
    scores = [[9.0, 8.0, 7.0, 1.0, 0.5, 0.2], [0.0, 0.1, 0.2, 0.3, 0.9, 0.4]]
    ev_set = _set([[1, 2], [4, 3]], [3, 5])
    slices = {"warm": np.array([True, False]), "cold": np.array([False, True])}
    ev = evaluate(_fixed_scores(scores), ev_set, Protocol(num_items=5, max_len=4, ks=(1, 3)), slices=slices)
    # user 0: history 1, 2 outscore target 3 -> rank 1 excluded, 3 kept; user 1: history 4 outscores 5
    assert ev.ranks.tolist() == [1.0, 1.0]
    assert ev.history_kept.ranks.tolist() == [3.0, 2.0]
    assert ev.metrics["hr@1"] == 1.0 and ev.history_kept.metrics["hr@1"] == 0.0
    assert ev.history_kept.metrics["hr@3"] == 1.0
    assert ev.history_kept.metrics["ndcg@3"] == pytest.approx((1 / np.log2(4) + 1 / np.log2(3)) / 2)
    assert ev.history_kept.slices["warm"]["ndcg@3"] == pytest.approx(1 / np.log2(4))
    assert ev.history_kept.slices["cold"]["ndcg@3"] == pytest.approx(1 / np.log2(3))
    assert ev.history_kept.slice_sizes == {"warm": 1, "cold": 1}
    # a recipe that already keeps the history: both groups agree
    kept = evaluate(
        _fixed_scores(scores), ev_set, Protocol(num_items=5, max_len=4, ks=(1,), exclude_seen=False)
    )
    assert kept.ranks.tolist() == kept.history_kept.ranks.tolist() == [3.0, 2.0]


def test_a_repeated_target_stays_rankable_and_is_counted():
    scores = [[0.0, 0.9, 0.1, 0.5]]
    ev = evaluate(_fixed_scores(scores), _set([[1, 3]], [1]), Protocol(num_items=3, max_len=4, ks=(1,)))
    assert ev.ranks.tolist() == [1.0]
    assert ev.targets_in_history == 1


def test_history_longer_than_max_len_is_still_fully_excluded():
    seen = []

    def score(inputs):
        seen.append(inputs.clone())
        return torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0]])

    ev = evaluate(score, _set([[1, 2, 3]], [5]), Protocol(num_items=5, max_len=2, ks=(1,)))
    assert seen[0].tolist() == [[2, 3]]  # the model sees the last max_len items
    assert ev.ranks.tolist() == [2.0]  # but all three history items are excluded: only item 4 beats 5


def test_constant_model_scores_near_zero_in_full_ranking():
    n = 500
    ev_set = _set([[1]] * 20, list(range(2, 22)))
    ev = evaluate(
        lambda x: torch.zeros(x.shape[0], n + 1), ev_set, Protocol(num_items=n, max_len=4, ks=(10,))
    )
    assert ev.metrics["hr@10"] == 0.0 and ev.metrics["ndcg@10"] == 0.0
    ev = evaluate(
        lambda x: torch.zeros(x.shape[0], n + 1),
        ev_set,
        Protocol(num_items=n, max_len=4, ks=(10,), ties="expected"),
    )
    assert ev.metrics["hr@10"] == pytest.approx(10 / (n - 1))  # one history item excluded


def test_nan_scores_stop_evaluation():
    def score(inputs):
        out = torch.zeros(inputs.shape[0], 6)
        out[0, 3] = float("nan")
        return out

    with pytest.raises(NonFiniteScoresError):
        evaluate(score, _set([[1]], [2]), Protocol(num_items=5, max_len=4, ks=(1,)))


def test_sampled_candidates_rank_among_target_plus_n_unseen_negatives():
    n, negs = 200, 20
    rng = np.random.default_rng(0)
    histories = [rng.choice(np.arange(1, n + 1), 5, replace=False) for _ in range(50)]
    targets = [int(rng.choice([i for i in range(1, n + 1) if i not in h])) for h in histories]
    # a model that scores every item by its index: the rank is 1 + #candidates with a larger index
    score = lambda x: torch.arange(n + 1, dtype=torch.float32).repeat(x.shape[0], 1)
    p = Protocol(num_items=n, max_len=8, ks=(10,), candidates="sampled", sampled_negatives=negs, seed=3)
    ev = evaluate(score, _set(histories, targets), p)
    assert ev.ranks.max() <= negs + 1
    full = evaluate(score, _set(histories, targets), Protocol(num_items=n, max_len=8, ks=(10,)))
    assert (ev.ranks <= full.ranks).all()
    again = evaluate(score, _set(histories, targets), p)
    assert ev.ranks.tolist() == again.ranks.tolist()  # seeded: every model faces the same candidates


def test_warm_and_cold_slices():
    counts = np.array([0, 5, 0, 2, 1])
    slices = target_slices(np.array([1, 2, 3, 4]), counts, cold_threshold=1)
    assert slices["cold"].tolist() == [False, True, False, True]
    assert slices["warm"].tolist() == [True, False, True, False]
    scores = [[0.0, 4.0, 3.0, 2.0, 1.0]] * 4
    ev = evaluate(
        _fixed_scores(scores),
        _set([[]] * 4, [1, 2, 3, 4]),
        Protocol(num_items=4, max_len=2, ks=(1,)),
        slices=slices,
    )
    assert ev.slices["warm"]["hr@1"] == 0.5 and ev.slices["cold"]["hr@1"] == 0.0
    assert ev.slice_sizes == {"warm": 2, "cold": 2}


def _random_case(users=23, items=40, seed=0):
    rng = np.random.default_rng(seed)
    histories = [
        rng.choice(np.arange(1, items + 1), int(rng.integers(1, 9)), replace=False) for _ in range(users)
    ]
    targets = rng.integers(1, items + 1, users)
    table = torch.from_numpy(rng.normal(size=(users, items + 1)).astype(np.float32))
    table[:, 3] = table[:, 5]  # some ties
    return _set(histories, targets), table


def test_batching_does_not_change_any_rank():
    """Each batch's counts land in the rows of its own users, whatever the batch size (the last one short)."""
    ev_set, table = _random_case()

    def score(inputs):  # the table rows of this call's users (calls come in user order)
        start = next(calls)
        return table[start : start + inputs.shape[0]].clone()

    results = []
    for batch_size in (1, 5, 23, 1000):
        calls = iter(range(0, 10**6, batch_size))
        ev = evaluate(score, ev_set, Protocol(num_items=40, max_len=4, ks=(5,), batch_size=batch_size))
        results.append((ev.ranks.tolist(), ev.history_kept.ranks.tolist(), ev.targets_in_history))
    assert all(r == results[0] for r in results[1:])
    assert len(set(results[0][0])) > 5  # the ranks differ between users: rows cannot have been swapped unseen


def test_nothing_of_a_batch_outlives_it():
    """A batch's scores and its per-user counts are gone before the next batch is scored.

    Why: a small tensor that outlives its batch can be carved out of a freed multi-MB score matrix by glibc's
    malloc, so the next matrix no longer fits and the heap grows; on MicroLens-50K that made the first
    validation grow the process by 9.9 GB (see the module docstring of recbench.evaluation.protocol)."""
    import weakref

    import recbench.evaluation.protocol as protocol_module

    ev_set, table = _random_case(users=20)
    live: list[weakref.ref] = []  # everything earlier batches produced
    batches = 0

    def score(inputs):
        nonlocal batches
        assert all(ref() is None for ref in live), f"a tensor of an earlier batch is alive at batch {batches}"
        out = table[batches * 4 : batches * 4 + inputs.shape[0]].clone()
        batches += 1
        live.append(weakref.ref(out))
        return out

    def counting(*args, **kwargs):
        higher, tied = original(*args, **kwargs)
        live.extend([weakref.ref(higher), weakref.ref(tied)])
        return higher, tied

    original = protocol_module.rank_counts
    protocol_module.rank_counts = counting
    try:
        ev = evaluate(score, ev_set, Protocol(num_items=40, max_len=4, ks=(5,), batch_size=4))
    finally:
        protocol_module.rank_counts = original
    assert batches == 5 and len(live) == 5 * 5  # 5 batches: scores + 2 counts per convention
    assert len(ev.ranks) == 20
