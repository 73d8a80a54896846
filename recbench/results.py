"""RunResult: the record every consumer (CLI summary, --json, MLflow, leaderboard, compare) reads.

Metric groups are named ``valid``, ``test``, and ``<split>/<slice>`` (e.g. ``test/warm``, ``test/cold``,
``test/pop-tail``, ``test/hist-le5``); metric names look like ``ndcg@10``. Per-user results (users, targets,
ranks, per-user metrics, slice membership) travel beside the record as a parquet artifact, so statistics can
be recomputed from the store alone.
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

import recbench


class Cost(BaseModel):
    wall_s: float = 0.0
    train_s: float = 0.0
    s_per_epoch: float = 0.0
    epochs: int = 0
    best_epoch: int = 0
    # why training ended: early_stopping | max_epochs | budget | not_trained; unknown for runs recorded before
    # it existed (never read as early_stopping)
    stop_reason: str | None = None
    encode_s: float = 0.0
    eval_s: float = 0.0
    peak_rss_mb: float = 0.0
    cuda_peak_mb: float | None = None
    params_total: int = 0
    params_trainable: int = 0
    pretrain_s: float | None = None  # transfer: the source stage's wall time (reused or trained for this run)
    tune_s: float | None = None  # tuned runs: the study's trial time (every session); also counted in wall_s
    # generative retrieval only (None elsewhere): items ranked per user and beam-search time per test user
    beam_width: int | None = None
    decode_ms_per_user: float | None = None


class RunResult(BaseModel):
    name: str  # run name: dataset/split/encoder/backbone/seed
    recipe: str
    experiment: str
    dataset: str
    split: str
    encoder: str  # display label
    encoder_kind: str
    backbone: str
    seed: int
    recipe_hash: str
    protocol_fingerprint: str
    dataset_fingerprint: str
    protocol: dict[str, Any]
    encoder_revision: str | None = None
    recbench_version: str = recbench.__version__
    git_commit: str = "unknown"
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    slice_sizes: dict[str, int] = Field(default_factory=dict)
    cost: Cost = Field(default_factory=Cost)
    history: list[dict[str, Any]] = Field(default_factory=list)
    data_stats: dict[str, Any] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None

    def summary_json(self) -> dict[str, Any]:
        """The `--json` line: one object per run."""
        return {
            "name": self.name,
            "dataset": self.dataset,
            "encoder": self.encoder,
            "backbone": self.backbone,
            "split": self.split,
            "seed": self.seed,
            "protocol": {"fingerprint": self.protocol_fingerprint, **self.protocol},
            "metrics": self.metrics,
            "cost": self.cost.model_dump(),
            "recipe_hash": self.recipe_hash,
            "run_id": self.run_id,
        }


SLICE_COLUMN = "slice:"  # per-user frame column prefix: `slice:cold` is True for users in the cold slice


def per_user_frame(
    users: np.ndarray,
    targets: np.ndarray,
    ranks: np.ndarray,
    metrics: dict[str, np.ndarray],
    slices: dict[str, np.ndarray] | None = None,
) -> pl.DataFrame:
    """Per-user test results: one row per evaluated user; `slices` adds one bool column per slice."""
    cols = {
        "user": users.astype(np.int64),
        "target": targets.astype(np.int64),
        "rank": ranks.astype(np.float64),
    }
    cols.update({name: values.astype(np.float64) for name, values in metrics.items()})
    cols.update(
        {f"{SLICE_COLUMN}{name}": np.asarray(mask, dtype=bool) for name, mask in (slices or {}).items()}
    )
    return pl.DataFrame(cols)


@lru_cache(maxsize=1)
def machine_description() -> str:
    """CPU model and logical CPU count from /proc/cpuinfo (e.g. 'AMD EPYC, 2 logical CPUs'); a run tag."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    models = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name") and ":" in ln]
    cpus = sum(1 for ln in lines if ln.startswith("processor")) or os.cpu_count() or 0
    model = models[0] if models else (platform.processor() or platform.machine() or "unknown CPU")
    return f"{model}, {cpus} logical CPUs"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the recbench checkout (with `-dirty` when it has uncommitted changes), or `unknown`."""
    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
