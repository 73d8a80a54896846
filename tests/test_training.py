"""Losses against direct computations, NaN handling, early stopping restores the best state."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbench.backbones.sasrec import SASRec
from recbench.data.batches import make_windows
from recbench.encoders.fusion import FusionEncoder
from recbench.encoders.id import IdEncoder
from recbench.model import Recommender, TrainStates, cloze_positions
from recbench.training import FitConfig, LossSpec, NonFiniteLossError, TrainingCatalogue, compute_loss, fit

N, D = 12, 8


def _states(seed=0):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(N + 1, D, generator=g)
    h = torch.randn(5, D, generator=g)
    y = torch.tensor([1, 4, 4, 7, 12])
    positions = torch.zeros(1, 5, dtype=torch.bool) | True
    return TrainStates(states=h, targets=y, positions=positions, vectors=lambda ids: table[ids]), table


def test_full_ce_is_softmax_over_real_items_only():
    ts, table = _states()
    logits = ts.states @ table[1:].T  # padding is not a class
    want = F.cross_entropy(logits, ts.targets - 1)
    assert compute_loss(LossSpec("ce"), ts, None, TrainingCatalogue(N)).item() == pytest.approx(
        want.item(), rel=1e-6
    )


def test_sampled_ce_masks_a_negative_equal_to_the_target():
    ts, table = _states()
    negs = torch.tensor([4, 2, 9])
    h, y = ts.states, ts.targets
    rows = []
    for i in range(len(y)):
        logits = [h[i] @ table[y[i]]] + [h[i] @ table[n] for n in negs if n != y[i]]
        rows.append(-torch.log_softmax(torch.stack(logits), 0)[0])
    want = torch.stack(rows).mean()
    got = compute_loss(LossSpec("sampled_ce", negatives=3), ts, negs, TrainingCatalogue(N))
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_bce_with_one_negative_per_position():
    ts, table = _states()
    negs = torch.tensor([[3, 4, 5, 7, 2]])  # position 3's negative equals its target (7): not a negative
    h, y = ts.states, ts.targets
    pos = torch.sigmoid((h * table[y]).sum(-1))
    neg = torch.sigmoid((h * table[negs[0]]).sum(-1))
    valid = (negs[0] != y).float()
    want = (-torch.log(pos) - torch.log(1 - neg) * valid).mean()
    got = compute_loss(LossSpec("bce"), ts, negs, TrainingCatalogue(N))
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_in_batch_softmax_over_distinct_targets():
    ts, table = _states()
    classes = torch.tensor([1, 4, 7, 12])
    labels = torch.tensor([0, 1, 1, 2, 3])
    want = F.cross_entropy(ts.states @ table[classes].T, labels)
    assert compute_loss(LossSpec("in_batch"), ts, None, TrainingCatalogue(N)).item() == pytest.approx(
        want.item(), rel=1e-6
    )


def _model(num_items=20):
    torch.manual_seed(0)
    return Recommender(
        IdEncoder(num_items, 16),
        SASRec(16, 6, layers=1, heads=1, inner=16, dropout=0.0, attn_dropout=0.0),
        num_items,
        6,
    )


def test_non_finite_loss_stops_the_run_and_says_where():
    model = _model()
    with torch.no_grad():
        model.encoder.table.weight[3] = float("nan")
    windows = make_windows([np.arange(1, 8)] * 4, 6, 3, shift=True)
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 1"):
        fit(
            model,
            windows,
            lambda: {"ndcg@10": 0.0},
            FitConfig(LossSpec("ce"), batch_size=4, max_epochs=2),
            torch.Generator().manual_seed(0),
        )


def test_early_stopping_restores_the_best_epoch():
    model = _model()
    windows = make_windows([np.arange(1, 8)] * 4, 6, 3, shift=True)
    values = iter([0.1, 0.5, 0.3, 0.2, 0.4])
    snapshots = {}

    def validate():
        value = next(values)
        snapshots[value] = model.encoder.table.weight.detach().clone()
        return {"ndcg@10": value}

    cfg = FitConfig(LossSpec("ce"), batch_size=2, max_epochs=10, patience=2, lr=0.05)
    history = fit(model, windows, validate, cfg, torch.Generator().manual_seed(0))
    assert [e.epoch for e in history.epochs] == [1, 2, 3, 4]
    assert history.best_epoch == 2 and history.stopped_early
    assert torch.equal(model.encoder.table.weight, snapshots[0.5])


def test_training_lowers_the_loss_on_a_learnable_pattern():
    model = _model(num_items=10)
    seqs = [np.array([(s + k) % 10 + 1 for k in range(7)]) for s in range(10)]
    windows = make_windows(seqs, 6, 3, shift=True)
    cfg = FitConfig(LossSpec("ce"), batch_size=5, max_epochs=30, patience=30, lr=0.02)
    history = fit(model, windows, lambda: {"ndcg@10": 0.0}, cfg, torch.Generator().manual_seed(0))
    assert history.epochs[-1].loss < 0.3 * history.epochs[0].loss


def test_cloze_positions_mask_only_eligible_positions_and_at_least_one_per_row():
    eligible = torch.tensor([[False, True, True, True], [False, False, False, True], [False] * 4])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        masked = cloze_positions(eligible, 0.2, g)
        assert not (masked & ~eligible).any()
        assert masked[0].any() and masked[1, 3] and not masked[2].any()


def test_held_out_items_are_no_class_and_no_negative():
    ts, table = _states()
    held = torch.tensor([2, 9])
    catalogue = TrainingCatalogue(N, held)
    kept = torch.tensor([i for i in range(1, N + 1) if i not in (2, 9)])
    logits = ts.states @ table[kept].T
    labels = torch.tensor([kept.tolist().index(int(y)) for y in ts.targets])
    want = F.cross_entropy(logits, labels)
    assert compute_loss(LossSpec("ce"), ts, None, catalogue).item() == pytest.approx(want.item(), rel=1e-6)
    draws = catalogue.sample((5000,), torch.Generator().manual_seed(0))
    assert not set(draws.tolist()) & {0, 2, 9} and set(draws.tolist()) == set(kept.tolist())
    leak = TrainStates(ts.states[:1], torch.tensor([9]), ts.positions, ts.vectors)
    with pytest.raises(ValueError, match="held-out"):
        compute_loss(LossSpec("ce"), leak, None, catalogue)


def test_cold_item_id_vectors_stay_as_initialised():
    model = _model(num_items=20)
    before = model.encoder.table.weight.detach().clone()
    seqs = [np.array([(s + k) % 18 + 1 for k in range(7)]) for s in range(10)]  # items 19, 20 never occur
    windows = make_windows(seqs, 6, 3, shift=True)
    cfg = FitConfig(
        LossSpec("ce"), batch_size=5, max_epochs=3, patience=3, lr=0.02, held_out=np.array([19, 20])
    )
    fit(model, windows, lambda: {"ndcg@10": 0.0}, cfg, torch.Generator().manual_seed(0))
    after = model.encoder.table.weight.detach()
    assert torch.equal(after[19:], before[19:])  # held out: no gradient, ever
    assert not torch.equal(after[1:19], before[1:19])


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
@pytest.mark.parametrize("loss", ["ce", "sampled_ce", "bce", "in_batch"])
def test_held_out_rows_get_no_update_of_any_kind_under_weight_decay(optimizer, loss):
    """Adam's L2 term and AdamW's decoupled decay move rows with zero gradient; held-out rows must not move."""
    model = _model(num_items=20)
    before = model.encoder.table.weight.detach().clone()
    seqs = [np.array([(s + k) % 18 + 1 for k in range(7)]) for s in range(10)]  # items 19, 20 never occur
    windows = make_windows(seqs, 6, 3, shift=True)
    cfg = FitConfig(
        LossSpec(loss, negatives=5),
        optimizer=optimizer,
        weight_decay=0.01,
        batch_size=5,
        max_epochs=4,
        patience=4,
        lr=0.02,
        held_out=np.array([19, 20]),
    )
    history = fit(model, windows, lambda: {"ndcg@10": 0.0}, cfg, torch.Generator().manual_seed(0))
    after = model.encoder.table.weight.detach()
    assert torch.equal(after[19:], before[19:])
    assert not torch.equal(after[1:19], before[1:19])
    assert history.stop_reason == "max_epochs" and not history.stopped_early


def test_fusion_keeps_held_out_id_rows_too():
    torch.manual_seed(0)
    fusion = FusionEncoder(IdEncoder(20, 16), IdEncoder(20, 16), "add")
    model = Recommender(
        fusion, SASRec(16, 6, layers=1, heads=1, inner=16, dropout=0.0, attn_dropout=0.0), 20, 6
    )
    before = fusion.ids.table.weight.detach().clone()
    seqs = [np.array([(s + k) % 18 + 1 for k in range(7)]) for s in range(10)]
    cfg = FitConfig(
        LossSpec("ce"), optimizer="adamw", weight_decay=0.05, batch_size=5, max_epochs=2, held_out=[19, 20]
    )
    fit(model, make_windows(seqs, 6, 3, shift=True), lambda: {"ndcg@10": 0.0}, cfg, torch.Generator())
    assert torch.equal(fusion.ids.table.weight.detach()[19:], before[19:])


def test_weight_decay_would_move_rows_without_gradient():
    """The premise of the test above: without the restore, decay alone moves untouched rows."""
    table = torch.nn.Parameter(torch.ones(3, 2))
    for cls in (torch.optim.Adam, torch.optim.AdamW):
        p = torch.nn.Parameter(table.detach().clone())
        opt = cls([p], lr=0.1, weight_decay=0.01)
        for _ in range(3):
            opt.zero_grad()
            (p[0].sum() * 0 + p[1].sum()).backward()  # row 2 gets a zero gradient
            opt.step()
        assert not torch.equal(p.detach()[2], table.detach()[2])


def test_stop_reason_is_early_stopping_when_patience_runs_out():
    model = _model()
    windows = make_windows([np.arange(1, 8)] * 4, 6, 3, shift=True)
    cfg = FitConfig(LossSpec("ce"), batch_size=2, max_epochs=10, patience=1, lr=0.05)
    history = fit(model, windows, lambda: {"ndcg@10": 0.0}, cfg, torch.Generator().manual_seed(0))
    assert history.stop_reason == "early_stopping" and len(history.epochs) == 2


def test_last_item_share_masks_only_the_last_eligible_position_of_chosen_rows():
    eligible = torch.tensor([[False, True, True, True]] * 400)
    g = torch.Generator().manual_seed(0)
    masked = cloze_positions(eligible, 0.5, g, last_item_share=0.3)
    only_last = masked[:, 3] & ~masked[:, :3].any(dim=1)
    share = only_last.float().mean().item()
    # chosen rows (30%) mask only the last; other rows do so by chance with p = 0.5 * 0.5^2 (+ forced rows)
    assert 0.3 + 0.7 * 0.125 - 0.06 < share < 0.3 + 0.7 * (0.125 + 0.125) + 0.06
    assert not (masked & ~eligible).any() and masked.any(dim=1).all()
    plain = cloze_positions(eligible, 0.5, torch.Generator().manual_seed(0))
    again = cloze_positions(eligible, 0.5, torch.Generator().manual_seed(0), last_item_share=0.0)
    assert torch.equal(plain, again)  # share 0 draws nothing extra: old runs are reproduced bit for bit
