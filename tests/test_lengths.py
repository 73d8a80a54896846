"""Batches run group by group at the width their histories need (recbench.backbones.lengths) give the states,
next-item states and gradients of the full-width batch, for every backbone that declares itself padding-
invariant; a backbone that does not is always run at full width."""

from __future__ import annotations

import pytest
import torch

from recbench.backbones.base import Backbone
from recbench.backbones.bert4rec import BERT4Rec
from recbench.backbones.gru4rec import GRU4Rec
from recbench.backbones.lengths import (
    MIN_ROWS,
    length_groups,
    next_state_by_length,
    real_widths,
    states_by_length,
)
from recbench.backbones.sasrec import SASRec

T, D = 20, 16


def _backbones():
    # dropout 0: the grouped run draws its masks for fewer columns, so only a dropout-free run is comparable
    return {
        "sasrec": SASRec(dim=D, max_len=T, layers=2, heads=2, inner=32, dropout=0.0, attn_dropout=0.0),
        "sasrec-pre": SASRec(D, T, 2, 2, 32, 0.0, 0.0, norm="pre"),
        "gru4rec": GRU4Rec(dim=D, hidden=24, layers=2, dropout=0.0),
        "bert4rec": BERT4Rec(dim=D, max_len=T, layers=2, heads=2, inner=32, dropout=0.0, attn_dropout=0.0),
    }


def _batch(seed: int = 0, rows: int = 96, mostly_full: bool = False):
    """Left-padded rows of lengths 1..T, including every power of two (a group's exact width).
    mostly_full: all rows full width but a few short ones spread through the batch, too few for a group of
    their own: they join the full-width group, whose rows are then not in batch order."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (rows,), generator=g)
    lengths[:6] = torch.tensor([1, 2, 4, 8, 16, T])
    if mostly_full:
        lengths = torch.full((rows,), T)
        lengths[torch.tensor([3, 17, 40, 77])] = torch.tensor([2, 5, 9, 3])
    cols = torch.arange(T).unsqueeze(0)  # (1, T)
    keep = cols >= (T - lengths).unsqueeze(1)  # (B, T)
    x = torch.randn(rows, T, D, generator=g) * keep.unsqueeze(-1)  # (B, T, D) padding vectors are zero
    return x, keep


def test_rows_are_grouped_by_power_of_two_width_and_small_groups_move_up():
    widths = torch.tensor([1] * 3 + [3] * 20 + [5] * 40 + [20] * 2)
    groups = length_groups(widths, 20)
    assert sorted(torch.cat([r for r, _ in groups]).tolist()) == list(range(len(widths)))  # each row once
    for rows, width in groups:
        assert bool((widths[rows] <= width).all())  # nobody is cut
    # 3 rows of width 1 join the width-4 group (too few alone); the full-width group stands alone, however small
    assert [(len(r), w) for r, w in groups] == [(23, 4), (40, 8), (2, 20)]
    # a too-small widest group below full width joins the group before it, which is widened for it
    groups = length_groups(torch.tensor([3] * 20 + [5] * 2), 20)
    assert [(len(r), w) for r, w in groups] == [(22, 8)]
    assert MIN_ROWS > 3


def test_real_widths_of_left_padded_rows():
    keep = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    assert real_widths(keep).tolist() == [2, 4, 0, 1]


@pytest.mark.parametrize("mostly_full", [False, True], ids=["spread", "mostly-full"])
@pytest.mark.parametrize("name", ["sasrec", "sasrec-pre", "gru4rec", "bert4rec"])
def test_grouped_states_and_gradients_equal_the_full_width_batch(name, mostly_full):
    torch.manual_seed(0)
    backbone = _backbones()[name]
    backbone.train()
    x, keep = _batch(mostly_full=mostly_full)
    groups = length_groups(real_widths(keep), T)
    if mostly_full:  # one full-width group holding the carried short rows first: not in batch order
        assert len(groups) == 1 and groups[0][1] == T
        assert groups[0][0].tolist() != sorted(groups[0][0].tolist())
    else:
        assert len(groups) > 1  # the grouped path is really taken
    target = torch.randn(x.shape[0], T, D)  # a loss that reads every real position

    def run(fn):
        backbone.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = fn(xi)
        ((out * target)[keep]).sum().backward()
        grads = {n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None}
        return out.detach(), xi.grad.clone(), grads

    full, full_dx, full_grads = run(lambda xi: backbone(xi, keep))
    grouped, grouped_dx, grouped_grads = run(lambda xi: states_by_length(backbone, xi, keep))
    assert torch.allclose(grouped, full, atol=1e-5)
    assert bool((grouped[~keep] == 0).all())
    assert torch.allclose(grouped_dx, full_dx, atol=1e-5)
    assert full_grads.keys() == grouped_grads.keys() and full_grads
    for n in full_grads:
        scale = float(full_grads[n].abs().max())  # float sums in another order: relative to the largest entry
        assert float((grouped_grads[n] - full_grads[n]).abs().max()) <= 1e-5 * scale + 1e-6, n


@pytest.mark.parametrize("mostly_full", [False, True], ids=["spread", "mostly-full"])
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_grouped_next_state_equals_the_full_width_one(name, mostly_full):
    torch.manual_seed(1)
    backbone = _backbones()[name].eval()
    x, keep = _batch(seed=3, mostly_full=mostly_full)
    with torch.no_grad():
        full = backbone.next_state(x, keep)
        grouped = next_state_by_length(backbone, x, keep)
    assert torch.allclose(grouped, full, atol=1e-5)


class LeftAligned(Backbone):
    """Position embeddings counted from the left: the output depends on the amount of padding."""

    def __init__(self):
        super().__init__()
        self.dim = D
        self.position = torch.nn.Embedding(T, D)
        self.widths: list[int] = []

    def forward(self, x, keep):
        self.widths.append(x.shape[1])
        return (x + self.position.weight[: x.shape[1]]) * keep.unsqueeze(-1)


def test_a_backbone_that_is_not_padding_invariant_runs_at_full_width():
    backbone = LeftAligned()
    x, keep = _batch()
    out = states_by_length(backbone, x, keep)
    assert backbone.widths == [T]
    assert torch.equal(out, backbone(x, keep))
    # and grouping it would have changed its output: the flag is what keeps this backbone correct
    backbone.padding_invariant = True
    assert not torch.allclose(states_by_length(backbone, x, keep), out)


@pytest.mark.parametrize(
    "backbone",
    [
        {"kind": "sasrec", "dim": 16, "heads": 2, "inner": 32, "dropout": 0.0, "attn_dropout": 0.0},
        {"kind": "gru4rec", "dim": 16, "hidden": 16, "dropout": 0.0},
        {"kind": "bert4rec", "dim": 16, "heads": 2, "inner": 32, "dropout": 0.0, "attn_dropout": 0.0},
    ],
    ids=lambda b: b["kind"],
)
def test_a_whole_run_trains_and_ranks_alike_with_and_without_grouping(tmp_path, monkeypatch, backbone):
    """End to end through windows, the trainer and the evaluator (the path unit tests above do not take):
    histories of many lengths, batches mixing them; without dropout the run's metrics are those of the
    full-width run."""
    import numpy as np
    from conftest import write_atomic

    from recbench.config import recipe_from_dict
    from recbench.runner import RunOptions, run_recipe

    rng = np.random.default_rng(0)
    seqs = {
        str(u): [str((start + k) % 30 + 1) for k in range(int(rng.integers(3, 28)))]
        for u, start in enumerate(rng.integers(0, 30, 90), start=1)
    }
    data_dir = write_atomic(tmp_path / "ml", "ml-100k", seqs)
    recipe = recipe_from_dict(
        {
            "name": "lengths",
            "experiment": "lengths",
            "dataset": {"name": "movielens-100k", "data_dir": str(data_dir)},
            "encoder": {"kind": "id"},
            "backbone": backbone,
            "train": {"max_len": 20, "batch_size": 48, "max_epochs": 3, "patience": 3, "lr": 0.01},
            "eval": {"ks": [5, 10]},
        }
    )
    from recbench.model import build_backbone

    cls = type(build_backbone(recipe.backbone, 20))
    metrics = {}
    for grouped in (True, False):
        monkeypatch.setattr(cls, "padding_invariant", grouped)
        (result,) = run_recipe(recipe, options=RunOptions(track=False))
        metrics[grouped] = result.metrics
    for group in ("valid", "test"):
        for name, value in metrics[False][group].items():
            assert abs(metrics[True][group][name] - value) < 1e-6, (group, name)
