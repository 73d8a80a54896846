"""Metrics against hand-computed cases: ties, a constant-score model, exclusion, NaN."""

import math

import pytest
import torch

from recbench.evaluation.metrics import (
    NonFiniteScoresError,
    mean_metrics,
    metrics_from_counts,
    metrics_from_ranks,
    rank_counts,
    ranks_from_counts,
)


def _ranks(scores, targets, excluded=None, ties="pessimistic"):
    higher, tied = rank_counts(torch.tensor(scores), torch.tensor(targets), excluded)
    return ranks_from_counts(higher, tied, ties).tolist()


def test_rank_is_one_plus_number_of_higher_scores():
    scores = [[0.0, 0.9, 0.1, 0.5, 0.3]]
    assert _ranks(scores, [1]) == [1.0]
    assert _ranks(scores, [3]) == [2.0]
    assert _ranks(scores, [2]) == [4.0]


def test_ties_count_against_the_target():
    scores = [[0.0, 0.5, 0.5, 0.5, 0.1]]  # target 1 ties with items 2 and 3
    assert _ranks(scores, [1], ties="pessimistic") == [3.0]
    assert _ranks(scores, [1], ties="expected") == [2.0]


def test_constant_scores_rank_last_never_first():
    n = 1000
    scores = torch.zeros(4, n + 1)
    targets = torch.tensor([1, 10, 500, 1000])
    excluded = torch.zeros(4, n + 1, dtype=torch.bool)
    excluded[:, 0] = True
    higher, tied = rank_counts(scores, targets, excluded)
    pess = metrics_from_counts(higher, tied, (10,), "pessimistic")
    assert ranks_from_counts(higher, tied, "pessimistic").tolist() == [1000.0] * 4
    assert pess["hr@10"].tolist() == [0.0] * 4 and pess["ndcg@10"].tolist() == [0.0] * 4
    exp = metrics_from_counts(higher, tied, (10,), "expected")
    # uniform random rank over 1..1000: P(rank <= 10) = 10/1000
    assert exp["hr@10"][0].item() == pytest.approx(10 / 1000)
    want_ndcg = sum(1 / math.log2(r + 1) for r in range(1, 11)) / 1000
    assert exp["ndcg@10"][0].item() == pytest.approx(want_ndcg)
    want_mrr = sum(1 / r for r in range(1, 11)) / 1000
    assert exp["mrr@10"][0].item() == pytest.approx(want_mrr)


def test_expected_ties_without_ties_equal_pessimistic():
    higher = torch.tensor([0.0, 3.0, 12.0], dtype=torch.float64)
    tied = torch.zeros(3, dtype=torch.float64)
    a = metrics_from_counts(higher, tied, (5, 10), "expected")
    b = metrics_from_counts(higher, tied, (5, 10), "pessimistic")
    for key in a:
        assert torch.allclose(a[key], b[key]), key


def test_hand_computed_hr_ndcg_mrr():
    ranks = torch.tensor([1.0, 3.0, 10.0, 11.0])
    m = metrics_from_ranks(ranks, (10,))
    assert m["hr@10"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert m["ndcg@10"].tolist() == pytest.approx([1.0, 1 / math.log2(4), 1 / math.log2(11), 0.0])
    assert m["mrr@10"].tolist() == pytest.approx([1.0, 1 / 3, 1 / 10, 0.0])
    means = mean_metrics(m)
    assert means["hr@10"] == pytest.approx(0.75)
    assert means["ndcg@10"] == pytest.approx((1 + 0.5 + 1 / math.log2(11)) / 4)
    assert means["mrr@10"] == pytest.approx((1 + 1 / 3 + 0.1) / 4)


def test_excluded_items_do_not_count_but_the_target_is_never_excluded():
    scores = torch.tensor([[0.0, 0.2, 0.9, 0.8, 0.1]])
    excluded = torch.tensor([[True, True, True, False, False]])  # target 1 itself is marked
    higher, tied = rank_counts(scores, torch.tensor([1]), excluded)
    assert higher.tolist() == [1.0]  # only item 3 (0.8) counts; item 2 (0.9) is excluded
    assert tied.tolist() == [0.0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_stop(bad):
    scores = torch.tensor([[0.0, 0.2, bad, 0.1]])
    with pytest.raises(NonFiniteScoresError, match="non-finite"):
        rank_counts(scores, torch.tensor([1]))
