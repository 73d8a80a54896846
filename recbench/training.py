"""Losses, the training loop, early stopping. Returns a history; logs nothing (the runner does).

Losses over the states of every loss position (M, D) and the item vectors of the step:
- ``ce``: full softmax over the whole catalogue (padding excluded), computed in row chunks without keeping
  the (M, C) logits (:mod:`recbench.chunked_ce`);
- ``sampled_ce``: softmax over the target and N uniform negatives shared by the batch (a negative equal to
  the row's target is masked out);
- ``bce``: the original SASRec loss, one uniform negative per position (a negative equal to the target is
  redrawn once, then masked);
- ``in_batch``: softmax over the distinct targets of the batch.

Items a split holds out of training (the item cold-start split) are not in the training catalogue at all:
never a class of the softmax, never a sampled negative. They exist only at evaluation, where they are ranked
like any other item. Their own rows in an ID table (:meth:`ItemEncoder.item_rows`) are restored after every
optimizer step, so they stay bit-identical to their initialisation whatever the optimizer does: a zero gradient
alone is not enough, since Adam's L2 term and AdamW's decoupled decay both move rows that get no gradient.

Every history says why training stopped (``stop_reason``): ``early_stopping`` (patience ran out),
``max_epochs`` (the epoch cap came first: the run may be undertrained) or ``budget`` (a wall-clock budget
ended it). Rows are ranked against each other only when they stopped alike.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from recbench.chunked_ce import softmax_cross_entropy
from recbench.data.batches import Windows
from recbench.model import Recommender, TrainStates


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; the run stops with an error that says where."""


@dataclass(frozen=True)
class LossSpec:
    kind: str = "ce"
    negatives: int = 100


class TrainingCatalogue:
    """The items training may score: all of 1..N, or those minus the split's held-out items."""

    def __init__(self, num_items: int, held_out=None, device: torch.device | str = "cpu"):
        allowed = torch.ones(num_items + 1, dtype=torch.bool)
        allowed[0] = False
        if held_out is not None and len(held_out):
            allowed[torch.as_tensor(held_out, dtype=torch.long)] = False
        self.num_items = num_items
        self.ids = torch.nonzero(allowed).flatten().to(device)  # (C,) item indices, sorted
        self.complete = len(self.ids) == num_items
        position = torch.full((num_items + 1,), -1, dtype=torch.long)
        position[self.ids.cpu()] = torch.arange(len(self.ids))
        self.position = position.to(device)  # item index -> class index (-1: not a class)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Uniform draws from the training catalogue."""
        picks = torch.randint(0, len(self.ids), shape, generator=generator)
        return self.ids[picks.to(self.ids.device)]


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    train_s: float
    valid: dict[str, float]
    valid_s: float


STOP_REASONS = ("early_stopping", "max_epochs", "budget", "not_trained")


@dataclass
class History:
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = -math.inf
    stopped_early: bool = False
    stop_reason: str = "max_epochs"  # one of STOP_REASONS

    @property
    def train_s(self) -> float:
        return sum(e.train_s for e in self.epochs)

    @property
    def s_per_epoch(self) -> float:
        return self.train_s / max(1, len(self.epochs))


def sample_extra_ids(
    spec: LossSpec, inputs: torch.Tensor, catalogue: TrainingCatalogue, generator: torch.Generator
) -> torch.Tensor | None:
    """Items the loss will score besides the batch's own, chosen before the forward pass so the encoder
    encodes them together with the batch: sampled negatives, or the training catalogue for full CE when it
    is not the whole catalogue (None then means: encode every item)."""
    if spec.kind == "sampled_ce":
        return catalogue.sample((spec.negatives,), generator).to(inputs.device)
    if spec.kind == "bce":
        return catalogue.sample(tuple(inputs.shape), generator).to(inputs.device)  # (B, L)
    if spec.kind == "ce" and not catalogue.complete:
        return catalogue.ids.to(inputs.device)
    return None


def compute_loss(
    spec: LossSpec, ts: TrainStates, extra: torch.Tensor | None, catalogue: TrainingCatalogue
) -> torch.Tensor:
    h, y = ts.states, ts.targets  # (M, D), (M,)
    if spec.kind == "ce":
        # the training catalogue: padding and held-out items are no class
        items = ts.vectors(catalogue.ids)  # (C, D)
        labels = catalogue.position[y]  # (M,)
        if bool((labels < 0).any()):
            raise ValueError("a training target is outside the training catalogue (a held-out item leaked)")
        return softmax_cross_entropy(h, items, labels)
    if spec.kind == "sampled_ce":
        pos = (h * ts.vectors(y)).sum(-1, keepdim=True)  # (M, 1)
        neg = h @ ts.vectors(extra).T  # (M, n)
        neg = neg.masked_fill(
            extra.unsqueeze(0) == y.unsqueeze(1), -torch.inf
        )  # a negative = target is no negative
        logits = torch.cat([pos, neg], dim=1)  # (M, 1 + n)
        return F.cross_entropy(logits, torch.zeros_like(y))
    if spec.kind == "bce":
        neg_ids = extra[ts.positions]  # (M,)
        pos = (h * ts.vectors(y)).sum(-1)  # (M,)
        neg = (h * ts.vectors(neg_ids)).sum(-1)  # (M,)
        valid_neg = (neg_ids != y).float()  # (M,) a collision with the target is not a negative
        loss = F.softplus(-pos) + F.softplus(neg) * valid_neg  # -log s(pos) - log(1 - s(neg))
        return loss.mean()
    if spec.kind == "in_batch":
        classes, label = torch.unique(y, return_inverse=True)  # (C,), (M,)
        logits = h @ ts.vectors(classes).T  # (M, C)
        return F.cross_entropy(logits, label)
    raise ValueError(f"unknown loss {spec.kind!r}")


def batch_loss(
    model: Recommender,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    spec: LossSpec,
    catalogue: TrainingCatalogue,
    generator: torch.Generator,
    mask_prob: float = 0.0,
) -> tuple[torch.Tensor, TrainStates]:
    """One training batch, as `fit` runs it: negatives, encoder + backbone, loss -> (loss, states).

    A model whose loss is not a score over item vectors (generative retrieval, which predicts code tokens)
    provides `own_loss(inputs, targets, catalogue, generator) -> (loss, states)` and is trained by the same
    loop, early stopping and held-out-row rules as every other model."""
    own_loss = getattr(model, "own_loss", None)
    if own_loss is not None:
        return own_loss(inputs, targets, catalogue, generator)
    extra = sample_extra_ids(spec, inputs, catalogue, generator)
    ts = model.train_states(
        inputs,
        targets,
        generator,
        extra_ids=extra,
        all_items=spec.kind == "ce" and catalogue.complete,
        mask_prob=mask_prob,
    )
    return compute_loss(spec, ts, extra, catalogue), ts


class HeldOutRows:
    """Keeps the rows of held-out items bit-identical across optimizer steps.

    Snapshot once, restore after each step: exact whatever the optimizer (weight decay, momentum) does, and
    cheap (H rows per table, H = held-out items). Only parameters an encoder declares as item rows are touched.
    """

    def __init__(self, params: list[torch.nn.Parameter], held_out) -> None:
        self.index = (
            torch.as_tensor(held_out, dtype=torch.long) if held_out is not None and len(held_out) else None
        )
        self.saved: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]] = []
        if self.index is None:
            return
        for p in params:
            index = self.index.to(p.device)
            self.saved.append((p, index, p.detach()[index].clone()))  # (H, D) the rows as initialised

    @torch.no_grad()
    def restore(self) -> None:
        for p, index, rows in self.saved:
            p.index_copy_(0, index, rows)


def make_optimizer(model: Recommender, kind: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = [
        {**g, "params": [p for p in g["params"] if p.requires_grad]} for g in model.encoder.param_groups(lr)
    ]
    encoder_params = {id(p) for g in groups for p in g["params"]}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_params]
    groups.append({"params": rest, "lr": lr})
    groups = [g for g in groups if g["params"]]  # frozen parts (adapter-only training) leave groups empty
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(groups, lr=lr, weight_decay=weight_decay)


@dataclass
class FitConfig:
    loss: LossSpec
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 10
    valid_metric: str = "ndcg@10"
    grad_clip: float | None = None
    mask_prob: float = 0.0  # cloze objectives only
    # item indices never in training (cold-start split): no class, no negative, no update
    held_out: object = None


def fit(
    model: Recommender,
    windows: Windows,
    validate: Callable[[], dict[str, float]],
    config: FitConfig,
    generator: torch.Generator,
    on_epoch: Callable[[EpochRecord, bool], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    device: torch.device | str = "cpu",
) -> History:
    """Train until the validation metric stops improving for `patience` epochs; restore the best state.

    In a data-parallel run (:mod:`recbench.distributed`) each process trains on its shard of every batch,
    the gradients are summed before the step, and rank 0's validation decides for all."""
    from recbench import distributed

    ddp = distributed.current()
    if ddp:
        ddp.begin()
    optimizer = make_optimizer(model, config.optimizer, config.lr, config.weight_decay)
    catalogue = TrainingCatalogue(model.num_items, config.held_out, device)
    held_rows = HeldOutRows(model.encoder.item_rows(), config.held_out)
    history = History()
    best_state = copy.deepcopy(model.state_dict())
    since_best = 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        for step, (inputs, targets) in enumerate(windows.batches(config.batch_size, generator)):
            if ddp:
                inputs, targets = ddp.shard(inputs, targets)
            inputs, targets = inputs.to(device), targets.to(device)
            loss, ts = (
                batch_loss(model, inputs, targets, config.loss, catalogue, generator, config.mask_prob)
                if len(inputs)
                else (None, None)  # a rank whose shard of a short last batch is empty
            )
            weight, finite = (
                ddp.weigh(loss, len(ts.targets) if ts else 0) if ddp else (1.0, bool(torch.isfinite(loss)))
            )
            if not finite:
                raise NonFiniteLossError(
                    f"loss is {loss.item() if ts and not torch.isfinite(loss) else 'not finite on another rank'} at epoch "
                    f"{epoch}, batch {step + 1}; lower train.lr or set train.grad_clip"
                )
            optimizer.zero_grad(set_to_none=True)
            if loss is not None:
                (loss * weight if ddp else loss).backward()
            if ddp:
                ddp.sync_gradients(list(model.parameters()))
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            held_rows.restore()
            if loss is not None:
                total += float(loss.detach()) * len(ts.targets)
                count += len(ts.targets)
            if on_batch:
                on_batch(len(inputs))
        train_s = time.perf_counter() - t0
        model.eval()
        t1 = time.perf_counter()
        if ddp:
            total, count = ddp.epoch_loss(total, count)
            ddp.sync_generator(generator)
        valid = ddp.validate(validate) if ddp else validate()
        record = EpochRecord(epoch, total / max(1, count), train_s, valid, time.perf_counter() - t1)
        history.epochs.append(record)
        value = valid[config.valid_metric]
        improved = value > history.best_value
        if improved:
            history.best_value, history.best_epoch = value, epoch
            best_state = copy.deepcopy(model.state_dict())
            since_best = 0
        else:
            since_best += 1
        if on_epoch:
            on_epoch(record, improved)
        if since_best >= config.patience:
            history.stopped_early = True
            history.stop_reason = "early_stopping"
            break
    model.load_state_dict(best_state)
    model.eval()
    return history
