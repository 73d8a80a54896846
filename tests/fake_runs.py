"""Synthetic but internally consistent recbench runs, logged through the real Tracker/RunHandle API.

Each run's per-user ranks are drawn from a seeded generator; its per-user metrics, summary metrics and slice
metrics are computed from those ranks exactly as the evaluator would, so the store passes every consistency
check the leaderboard makes. Like the runner, a run records why its training ended (``stop_reason``: tag and
cost) and a second ranking with the history kept as candidates (``history-kept`` groups and per-user
columns); ``stop=None, history_kept=False`` stands for a run recorded before either existed. Used by the
leaderboard and compare tests (fast: no training).
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import torch

from recbench.config import RunSpec, expand, fingerprint, recipe_from_dict
from recbench.evaluation.metrics import mean_metrics, metrics_from_ranks
from recbench.evaluation.protocol import history_slices, popularity_slices, target_slices
from recbench.results import Cost, RunResult, per_user_frame
from recbench.tracking import Tracker

NUM_USERS = 60
NUM_ITEMS = 40
DATASET_FP = "d0d0d0d0d0d0d0d0"
TIMESTAMP_TIES = 7  # tied consecutive pairs the fixture's preprocessing "ordered by file order"
KEPT = "history-kept"


def spec_for(
    encoder: dict,
    backbone: str = "sasrec",
    seed: int = 0,
    eval_: dict | None = None,
    train: dict | None = None,
) -> RunSpec:
    raw = {
        "name": "fixture",
        "experiment": "fixture",
        "seed": seed,
        "dataset": {"name": "movielens-100k"},
        "encoder": encoder,
        "backbone": {"kind": backbone},
        "train": {"max_len": 20, **(train or {})},
        "eval": {"ks": [5, 10], "history_bounds": [10, 20], **(eval_ or {})},
    }
    return expand(recipe_from_dict(raw))[0]


def _population(seed: int = 123):
    """Users, targets, histories and training counts shared by every run of the fixture (one split)."""
    rng = np.random.default_rng(seed)
    users = np.arange(1, NUM_USERS + 1)
    targets = rng.integers(1, NUM_ITEMS + 1, size=NUM_USERS)
    lengths = rng.integers(3, 30, size=NUM_USERS)
    counts = np.concatenate([[0], rng.poisson(3.0, size=NUM_ITEMS)])
    counts[targets[:5]] = 0  # a few cold targets
    return users, targets, lengths, counts


def log_run(
    tracker: Tracker,
    spec: RunSpec,
    quality: float,
    *,
    rank_seed: int,
    baseline: str | None = "id",
    command: str | None = None,
    tamper: bool = False,
    stop: str | None = "early_stopping",
    history_kept: bool = True,
) -> str:
    """Log one FINISHED run whose ranks are better the larger `quality` (0..1); returns its run id.

    `stop`: the run's stop reason (None: not recorded, as in runs made before it existed); `history_kept`:
    whether the run also recorded the history-kept ranking (ranks a little worse: more candidates)."""
    users, targets, lengths, counts = _population()
    rng = np.random.default_rng(rank_seed)
    good = rng.random(NUM_USERS) < quality
    ranks = np.where(good, rng.integers(1, 6, NUM_USERS), rng.integers(1, NUM_ITEMS, NUM_USERS)).astype(float)
    per_user = {k: v.numpy() for k, v in metrics_from_ranks(torch.from_numpy(ranks), spec.eval.ks).items()}
    kept_ranks = ranks + rng.integers(0, 4, NUM_USERS)  # history items ranked too: never a better rank
    kept_user = {
        k: v.numpy() for k, v in metrics_from_ranks(torch.from_numpy(kept_ranks), spec.eval.ks).items()
    }
    slices = {
        **target_slices(targets, counts, spec.eval.cold_threshold),
        **popularity_slices(targets, counts, spec.eval.popularity_head, spec.eval.popularity_tail),
        **history_slices(lengths, spec.eval.history_bounds),
    }
    metrics = {"test": mean_metrics({k: torch.from_numpy(v) for k, v in per_user.items()})}
    metrics["valid"] = dict(metrics["test"])
    for name, mask in slices.items():
        metrics[f"test/{name}"] = mean_metrics({k: torch.from_numpy(v[mask]) for k, v in per_user.items()})
    slice_sizes = {f"test/{name}": int(mask.sum()) for name, mask in slices.items()}
    if history_kept:
        metrics[f"test/{KEPT}"] = mean_metrics({k: torch.from_numpy(v) for k, v in kept_user.items()})
        metrics[f"valid/{KEPT}"] = dict(metrics[f"test/{KEPT}"])
        for name in ("warm", "cold"):
            mask = slices[name]
            metrics[f"test/{KEPT}/{name}"] = mean_metrics(
                {k: torch.from_numpy(v[mask]) for k, v in kept_user.items()}
            )
            slice_sizes[f"test/{KEPT}/{name}"] = int(mask.sum())
    trains = stop != "not_trained"
    protocol_fp = fingerprint({**spec.protocol(), "dataset_fingerprint": DATASET_FP})
    result = RunResult(
        name=spec.run_name,
        recipe=spec.name,
        experiment=spec.experiment,
        dataset=spec.dataset.name,
        split=spec.split.kind,
        encoder=spec.encoder.display,
        encoder_kind=spec.encoder.kind,
        backbone=spec.backbone.kind,
        seed=spec.seed,
        recipe_hash=spec.recipe_hash,
        protocol_fingerprint=protocol_fp,
        dataset_fingerprint=DATASET_FP,
        protocol=spec.protocol(),
        git_commit="0123456789abcdef",
        metrics=metrics,
        slice_sizes=slice_sizes,
        cost=Cost(
            wall_s=100.0 + 10 * spec.seed,
            train_s=80.0 if trains else 0.0,
            s_per_epoch=2.5 + spec.seed if trains else 0.0,
            epochs=20 + spec.seed if trains else 0,
            best_epoch=15 if trains else 0,
            stop_reason=stop,
            encode_s=0.0 if spec.encoder.kind in ("id", "none") else 12.5,
            eval_s=1.0,
            peak_rss_mb=900.0 + 100 * spec.seed,
            params_total=100_000 if spec.encoder.kind == "id" else 22_000_000 if trains else 0,
            params_trainable=100_000 if spec.encoder.kind == "id" else 50_000 if trains else 0,
        ),
        data_stats={"users": NUM_USERS, "timestamp_ties": TIMESTAMP_TIES},
    )
    frame = per_user_frame(users, targets, ranks, per_user, slices)
    if history_kept:
        frame = frame.with_columns(
            pl.Series(f"{KEPT}:rank", kept_ranks.astype(np.float64)),
            *(pl.Series(f"{KEPT}:{k}", v.astype(np.float64)) for k, v in kept_user.items()),
        )
    if tamper:  # the per-user values no longer reproduce the summary
        frame = frame.with_columns((frame["ndcg@10"] * 0.5).alias("ndcg@10"))
    tags = {
        "recbench.recipe_hash": spec.recipe_hash,
        "recbench.version": "0.1.0",
        "recbench.git_commit": "0123456789abcdef",
        "recbench.recipe": spec.name,
        "recbench.machine": "Test CPU, 2 logical CPUs",
        "recbench.torch": "2.13.0+cpu",
        "mlflow.runName": spec.run_name,
    }
    if baseline:
        tags["recbench.baseline"] = baseline
    if stop:
        tags["recbench.stop_reason"] = stop
    if command:
        tags["recbench.command"] = command
    time.sleep(0.003)  # distinct start times: "the later run" is well defined
    with tracker.run(spec.run_name, spec.model_dump(mode="json"), tags) as handle:
        handle.set_tags(
            {
                "recbench.protocol_fingerprint": protocol_fp,
                "recbench.dataset_fingerprint": DATASET_FP,
                "recbench.device": "cpu",
            }
        )
        result.run_id = handle.run_id
        handle.log_result(result, frame, spec.model_dump(mode="json"))
    return handle.run_id


def log_failed(tracker: Tracker, spec: RunSpec) -> str:
    """A run that raised mid-way (FAILED, with the reason as a tag)."""
    try:
        with tracker.run(spec.run_name, {}, {"recbench.recipe_hash": spec.recipe_hash}) as handle:
            raise KeyboardInterrupt("stopped by the test")
    except KeyboardInterrupt:
        pass
    return handle.run_id


RUN_COMMAND = "recbench run recipes/fixture.yaml"


def build_store() -> dict[str, str]:
    """The fixture store (experiment `fixture`). Returns {token: run id}.

    Full-ranking table: SASRec with id and text over seeds 0, 1 (early-stopped: the one fair Δ) and clip over
    seed 0 only (different seeds: no Δ); GRU4Rec with id (early-stopped), text (budget-stopped) and clip
    (fixed epoch cap, rerun: the first run is superseded); the most-popular floor (trains nothing). A
    sampled-candidate table whose text run predates stop reasons and history-kept metrics. A tampered run,
    a FAILED run."""
    tracker = Tracker("fixture")
    ids: dict[str, str] = {}
    encoders = {
        "id": ({"kind": "id"}, 0.50),
        "text": ({"kind": "text", "model": "minilm", "label": "text-minilm-frozen"}, 0.60),
        "clip": ({"kind": "clip", "label": "clip-image"}, 0.35),
    }
    stops = {("text", "gru4rec"): "budget", ("clip", "gru4rec"): "max_epochs"}
    for b_idx, backbone in enumerate(("sasrec", "gru4rec")):
        for e_idx, (name, (encoder, quality)) in enumerate(encoders.items()):
            seeds = (0, 1) if backbone == "sasrec" and name in ("id", "text") else (0,)
            for seed in seeds:
                ids[f"{name}-{backbone}-{seed}"] = log_run(
                    tracker,
                    spec_for(encoder, backbone, seed),
                    quality,
                    rank_seed=100 * b_idx + 10 * e_idx + seed,
                    command=RUN_COMMAND,
                    stop=stops.get((name, backbone), "early_stopping"),
                )
    # a rerun of the same settings and seed: the earlier one is superseded
    ids["superseded"] = ids["clip-gru4rec-0"]
    ids["clip-gru4rec-0"] = log_run(
        tracker,
        spec_for(encoders["clip"][0], "gru4rec", 0),
        0.40,
        rank_seed=999,
        command=RUN_COMMAND,
        stop="max_epochs",
    )
    ids["pop"] = log_run(
        tracker,
        spec_for({"kind": "none"}, "pop"),
        0.2,
        rank_seed=300,
        command=RUN_COMMAND,
        stop="not_trained",
    )
    sampled = {"candidates": "sampled", "sampled_negatives": 20}
    for e_idx, name in enumerate(("id", "text")):
        old = name == "text"  # recorded before stop reasons and history-kept metrics existed
        ids[f"{name}-sampled"] = log_run(
            tracker,
            spec_for(encoders[name][0], "sasrec", 0, eval_=sampled),
            0.7 + 0.1 * e_idx,
            rank_seed=500 + e_idx,
            stop=None if old else "early_stopping",
            history_kept=not old,
        )
    ids["tampered"] = log_run(
        tracker, spec_for({"kind": "id", "label": "id-tampered"}), 0.5, rank_seed=777, tamper=True
    )
    ids["failed"] = log_failed(tracker, spec_for({"kind": "id"}, "sasrec", 5))
    return ids


def fake_store(tmp_path_factory, dest) -> dict[str, str]:
    """Copy the fixture store (built once per test session) to `dest`/mlflow.db; returns {token: run id}.

    The copy's artifact locations still point into the session's build folder, which only grows."""
    import json
    import os
    import shutil

    import pytest

    built = tmp_path_factory.getbasetemp() / "fake-store"
    if not (built / "ids.json").is_file():
        built.mkdir(exist_ok=True)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{built / 'mlflow.db'}")
            mp.chdir(built)
            ids = build_store()
        (built / "ids.json").write_text(json.dumps(ids))
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(built / "mlflow.db", os.path.join(dest, "mlflow.db"))
    return json.loads((built / "ids.json").read_text())
