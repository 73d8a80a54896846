"""The chunked full-softmax CE must be F.cross_entropy: same loss, same gradients, NaN stays NaN."""

import math

import pytest
import torch
import torch.nn.functional as F

from recbench.chunked_ce import softmax_cross_entropy


def _problem(m=11, c=7, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(m, d, generator=g, dtype=dtype, requires_grad=True)
    items = torch.randn(c, d, generator=g, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, c, (m,), generator=g)
    labels[0], labels[-1] = 0, c - 1  # both ends of the class range
    return states, items, labels


@pytest.mark.parametrize("chunk_rows", [1, 3, 4, 11, 100])
def test_loss_and_gradients_equal_cross_entropy(chunk_rows):
    states, items, labels = _problem()
    expected = F.cross_entropy(states @ items.T, labels)
    want_s, want_i = torch.autograd.grad(expected, (states, items))
    got = softmax_cross_entropy(states, items, labels, chunk_rows=chunk_rows)
    got_s, got_i = torch.autograd.grad(got, (states, items))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_s, want_s)
    torch.testing.assert_close(got_i, want_i)


def test_hand_computed_two_rows():
    # logits row 0: [0, ln 3] -> p(label 0) = 1/4; row 1: [0, 0] -> p(label 1) = 1/2
    states = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    items = torch.tensor([[0.0], [math.log(3.0)]], dtype=torch.float64)
    loss = softmax_cross_entropy(states, items, torch.tensor([0, 1]), chunk_rows=1)
    assert loss.item() == pytest.approx((math.log(4.0) + math.log(2.0)) / 2)


def test_gradcheck_through_several_chunks():
    states, items, labels = _problem(m=6, c=4, d=3)
    assert torch.autograd.gradcheck(
        lambda s, i: softmax_cross_entropy(s, i, labels, chunk_rows=4), (states, items)
    )


def test_only_the_inputs_that_need_gradients_get_them():
    states, items, labels = _problem()
    frozen = items.detach()
    loss = softmax_cross_entropy(states, frozen, labels, chunk_rows=2)
    loss.backward()
    assert states.grad is not None and frozen.grad is None


def test_non_finite_input_gives_a_non_finite_loss():
    states, items, labels = _problem()
    poisoned = states.detach().clone()
    poisoned[5, 0] = float("nan")
    assert math.isnan(softmax_cross_entropy(poisoned, items.detach(), labels, chunk_rows=3).item())
    poisoned[5, 0] = float("inf")
    assert not math.isfinite(softmax_cross_entropy(poisoned, items.detach(), labels, chunk_rows=3).item())


def test_large_logits_do_not_overflow():
    states, items, labels = _problem(dtype=torch.float32)
    big = states.detach() * 1e3  # logits ~1e3: exp overflows unless shifted
    expected = F.cross_entropy(big @ items.detach().T, labels)
    got = softmax_cross_entropy(big, items.detach(), labels, chunk_rows=3)
    assert math.isfinite(got.item())
    torch.testing.assert_close(got, expected)


def test_shape_and_dtype_mistakes_are_errors():
    states, items, labels = _problem()
    with pytest.raises(ValueError, match="share a dtype"):
        softmax_cross_entropy(states, items.float(), labels)
    with pytest.raises(ValueError, match=r"labels must be \(M,\)"):
        softmax_cross_entropy(states, items, labels[:-1])
    with pytest.raises(ValueError, match=r"states \(M, D\) and items \(C, D\)"):
        softmax_cross_entropy(states, items[:, :2], labels)
