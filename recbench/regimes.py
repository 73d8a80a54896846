"""Training regimes: how the stages of a run (prepare data, build model, train, assess, record) compose.

- ``scratch``: build the model, train it on the run's dataset, assess it. Every run before transfer existed.
- ``transfer``: a *source stage* first (a scratch run of the same encoder and backbone on the sources' mixed
  catalogue, tracked and reused like any run: keyed by its recipe hash and dataset fingerprint), then the
  target run starts from it: every transferred weight is loaded except ID tables (target items are other
  items, so an ID row always trains from its initialisation), and the target mode decides what trains:
  ``zero_shot`` nothing, ``full`` everything, ``adapter`` only bottleneck adapters in the backbone, its layer
  norms and the encoder's own small parts (projection; a fusion encoder's target ID table), ``lora`` the same
  with low-rank adapters in the text/CLIP tower's attention instead of backbone adapters.

A regime is looked up from its recipe section's class (:data:`REGIMES`); the runner calls its three hooks and
never asks which regime it runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from recbench.config import LeaveOneOutSplit, RunSpec, ScratchRegime, TransferRegime


@dataclass
class SourceModel:
    """The source stage's product: its trained weights and what it cost."""

    state: dict[str, torch.Tensor]
    run_id: str | None
    wall_s: float
    name: str


class Scratch:
    trains = True

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.source: SourceModel | None = None

    def before(self, stage: Callable[[RunSpec], tuple[SourceModel, bool]]) -> None:
        """Work before the run's own stages (the transfer regime's source stage)."""

    def adapt(self, model: nn.Module, loaded: bool = False) -> dict:
        """Make the built model this regime's starting point; returns notes for the run record."""
        return {}

    def structure(self, model: nn.Module) -> None:
        """Module changes a checkpoint of this regime needs before its weights load (adapters)."""


class Transfer(Scratch):
    def __init__(self, spec: RunSpec):
        super().__init__(spec)
        self.regime: TransferRegime = spec.regime
        self.trains = self.regime.mode != "zero_shot"
        self.reused = False

    def source_spec(self) -> RunSpec:
        """The source stage as a run: same encoder, backbone, eval and seed, on the sources' mixture. Target
        rows that differ only in their mode or label share it."""
        first, *rest = self.regime.source
        return RunSpec(
            name=f"{self.spec.name}:source",
            experiment=self.spec.experiment,
            seed=self.spec.seed,
            dataset=first.model_copy(update={"mix_with": tuple(rest)}),
            split=LeaveOneOutSplit(),
            encoder=self.spec.encoder.model_copy(update={"label": None}),  # a row label: not the source's
            backbone=self.spec.backbone,
            train=self.regime.source_train or self.spec.train,
            eval=self.spec.eval,
            regime=ScratchRegime(),
        )

    def before(self, stage: Callable[[RunSpec], tuple[SourceModel, bool]]) -> None:
        self.source, self.reused = stage(self.source_spec())

    def structure(self, model: nn.Module) -> list[nn.Parameter]:
        """Insert the modules the mode trains (adapters, LoRA); returns their parameters."""
        if self.regime.mode == "adapter":
            from recbench.backbones.adapters import insert_adapters

            return insert_adapters(model.backbone, self.regime.adapter_dim)
        if self.regime.mode == "lora":
            from recbench.encoders.lora import insert_lora

            return insert_lora(model.encoder, self.regime.lora_rank, self.regime.lora_alpha)
        return []

    def adapt(self, model: nn.Module, loaded: bool = False) -> dict:
        """Load the source weights (never ID tables), then set what trains for the target mode."""
        if loaded:  # a checkpoint of this run: its own weights, structure only
            self.structure(model)
            return {}
        assert self.source is not None, "the source stage runs before the target stage"
        skipped = transfer_weights(model, self.source.state)
        inserted = self.structure(model)
        if self.regime.mode in ("adapter", "lora"):
            train_only_adapted(model, inserted)
        return {
            "source_run_id": self.source.run_id,
            "source": self.source.name,
            "source_reused": self.reused,
            "transfer_mode": self.regime.mode,
            "not_transferred": skipped,
        }


def train_only_adapted(model: nn.Module, inserted: list[nn.Parameter]) -> None:
    """Freeze every weight but the inserted adapters (or LoRA), the backbone's layer norms and the encoder's
    own small parts (modes adapter and lora)."""
    keep = {id(p) for p in inserted} | {id(p) for p in model.encoder.adapter_trainable()}
    for module in model.backbone.modules():
        if isinstance(module, nn.LayerNorm):
            keep |= {id(p) for p in module.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


REGIMES: dict[type, type[Scratch]] = {ScratchRegime: Scratch, TransferRegime: Transfer}


def regime_for(spec: RunSpec) -> Scratch:
    return REGIMES[type(spec.regime)](spec)


class TransferError(ValueError):
    """Source weights that do not fit the target model."""


def transfer_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every source tensor into `model` except its ID tables (the encoder's item rows); returns the names
    left at their initialisation. Shapes and names must match exactly: a partial transfer would be silent."""
    item_rows = {id(p) for p in model.encoder.item_rows()}
    skipped = sorted(name for name, p in model.named_parameters() if id(p) in item_rows)
    own = model.state_dict()
    unknown = sorted(k for k in state if k not in own and k not in skipped)
    missing = sorted(k for k in own if k not in state and k not in skipped)
    if unknown or missing:
        raise TransferError(
            f"the source model does not fit the target: missing {missing[:5]}, unexpected {unknown[:5]} "
            "(source and target must use the same encoder and backbone settings)"
        )
    for key, value in state.items():
        if key in skipped:
            continue
        if own[key].shape != value.shape:
            raise TransferError(
                f"{key}: source shape {tuple(value.shape)} != target shape {tuple(own[key].shape)}"
            )
    with torch.no_grad():
        for key, value in state.items():
            if key not in skipped:
                own[key].copy_(value)
    return skipped


def read_checkpoint_state(client, run_id: str) -> dict[str, torch.Tensor]:
    """The weights a FINISHED run saved (checkpoint/model.safetensors)."""
    from safetensors.torch import load_file

    from recbench.checkpoints import CHECKPOINT_DIR, WEIGHTS_FILE

    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, f"{CHECKPOINT_DIR}/{WEIGHTS_FILE}", tmp)
        return load_file(str(Path(path)))
