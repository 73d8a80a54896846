"""Stored runs -> comparable tables: one per dataset x protocol fingerprint, rows = configurations.

A row is one configuration (encoder x backbone x every other setting but the seed: the config hash of the
resolved recipe); its seeds are aggregated. Each row is paired with its baseline: the row with the same backbone
whose encoder is the recipe's declared baseline (run tag ``recbench.baseline``), by default the `id` encoder.

A Δ against the baseline is only a fair comparison when both sides were trained the same way, so it is
computed only when the row and its baseline both stopped early on validation (``stop_reason``
``early_stopping``) and ran the same seeds; otherwise the row keeps its baseline for display but says why it
has no Δ (``delta_refused``). The most-popular floor (backbone ``pop``) trains nothing: it is never a
baseline and never gets a Δ. Runs recorded before the stop reason existed are *unknown*, never early-stopped.

A run that cannot be trusted (missing artifacts, non-finite metrics, per-user values that do not reproduce the
recorded means or the MLflow metrics, test users that differ from the other runs of its protocol) is left out
with the reason; a rerun of the same settings and seed supersedes the earlier run.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from recbench.config import config_hash
from recbench.evaluation.stats import (
    Interval,
    PairedTest,
    bootstrap_means,
    paired_t_test,
    percentile_interval,
    seed_summary,
    wilcoxon_signed_rank,
)
from recbench.results import SLICE_COLUMN
from recbench.tracking import TAG_BASELINE, TAG_PROTOCOL, TAG_RECIPE_HASH, StoredRun, metric_key

METRICS = ("hr", "ndcg", "mrr")
HISTORY_KEPT = "history-kept"  # metric group / per-user column prefix: ranking with history items kept
EARLY_STOPPING = "early_stopping"
TAG_STOP_REASON = "recbench.stop_reason"
FLOOR_BACKBONES = ("pop",)  # rows that train nothing: shown as a floor, never a baseline, never a Δ
_TOLERANCE = 1e-9  # per-user means must reproduce the recorded metrics to this absolute tolerance


@dataclass
class Row:
    """One configuration of a table: an encoder x backbone (x settings), over one or more seeds."""

    encoder: str
    encoder_kind: str
    backbone: str
    config: str
    recipe: str
    runs: list[StoredRun]  # sorted by seed
    label: str = ""
    baseline: Row | None = None
    baseline_note: str = ""  # why there is no baseline row
    delta_refused: str = ""  # why the row has a baseline but no Δ (stop reasons, seeds)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> seed-averaged per-user values

    @property
    def seeds(self) -> list[int]:
        return [r.result.seed for r in self.runs]

    @property
    def is_baseline(self) -> bool:
        return self.baseline is self

    @property
    def is_floor(self) -> bool:
        return self.backbone in FLOOR_BACKBONES

    @property
    def stop_reasons(self) -> list[str | None]:
        """Why each seed's training ended (None: not recorded)."""
        return [stop_reason(r) for r in self.runs]

    @property
    def early_stopped(self) -> bool:
        return all(reason == EARLY_STOPPING for reason in self.stop_reasons)

    @property
    def paired(self) -> bool:
        """Whether the row gets a Δ and p-values against its baseline."""
        return self.baseline is not None and not self.is_baseline and not self.delta_refused

    @property
    def tuning(self) -> str | None:
        """The budget of the study that chose the row's settings on validation ('10 trials'); None when the
        row was not tuned. Seeds of a row share their recipe, so their tune section."""
        tune = (self.runs[0].spec or {}).get("tune")
        if not tune:
            return None
        trials, wall_s = tune.get("trials"), tune.get("wall_s")
        parts = ([f"{trials} trials"] if trials else []) + ([f"{wall_s:g} s of trials"] if wall_s else [])
        return " or ".join(parts)


def stop_reason(run: StoredRun) -> str | None:
    """Why a run's training ended: the run tag, else the run summary's cost; None for runs recorded before
    recbench kept it (a missing value is never read as early stopping)."""
    tagged = run.tags.get(TAG_STOP_REASON)
    if tagged:
        return tagged
    return getattr(run.result.cost, "stop_reason", None) if run.result is not None else None


@dataclass
class Table:
    dataset: str
    split: str
    fingerprint: str
    dataset_fingerprint: str
    protocol: dict[str, Any]
    users: np.ndarray
    rows: list[Row]
    k: int = 10

    @property
    def sampled(self) -> bool:
        return self.protocol.get("candidates") == "sampled"

    @property
    def slug(self) -> str:
        return f"{self.dataset}-{self.split}-{self.fingerprint[:8]}"


# --------------------------------------------------------------------------------------------- grouping


def _problem(run: StoredRun) -> str | None:
    """Why a stored run cannot enter a table, or None."""
    if run.problem:
        return run.problem
    res, per_user = run.result, run.per_user
    if res is None or per_user is None or run.spec is None:
        return "missing run_summary.json, recipe.json or per_user_test.parquet"
    if run.tags.get(TAG_PROTOCOL) != res.protocol_fingerprint:
        return "its protocol tag disagrees with its run summary"
    if run.tags.get(TAG_RECIPE_HASH) != res.recipe_hash:
        return "its recipe-hash tag disagrees with its run summary"
    for group, values in res.metrics.items():
        bad = [m for m, v in values.items() if not np.isfinite(v)]
        if bad:
            return f"non-finite {group} metrics {bad}"
    test = res.metrics.get("test", {})
    if not test:
        return "no test metrics"
    if "user" not in per_user.columns or "target" not in per_user.columns:
        return "per-user results lack user/target columns"
    for name, value in test.items():
        problem = _per_user_disagrees(per_user, name, value, "")
        if problem:
            return problem
        logged = run.metrics.get(metric_key("test", name))
        if logged is None or abs(logged - value) > _TOLERANCE:
            return f"MLflow metric {metric_key('test', name)} ({logged}) disagrees with the summary ({value})"
    kept_group = f"test/{HISTORY_KEPT}"
    for name, value in res.metrics.get(kept_group, {}).items():
        problem = _per_user_disagrees(
            per_user, f"{HISTORY_KEPT}:{name}", value, f" (the summary has {kept_group} metrics)"
        )
        if problem:
            return problem
    return None


def _per_user_disagrees(per_user: pl.DataFrame, column: str, value: float, context: str) -> str | None:
    """Why a per-user column does not support the summary's mean `value` (absent, non-finite, other mean)."""
    if column not in per_user.columns:
        return f"per-user results lack {column}{context}"
    values = per_user[column].to_numpy()
    if not np.isfinite(values).all():
        return f"non-finite per-user {column}"
    if abs(float(values.mean()) - value) > _TOLERANCE:
        return f"per-user {column} averages {values.mean():.6f}, the summary says {value:.6f}"
    return None


def _main_k(ks: list[int]) -> int:
    return 10 if 10 in ks else max(ks)


def collect(runs: list[StoredRun]) -> tuple[list[Table], list[tuple[StoredRun, str]]]:
    """Valid runs grouped into tables (dataset x protocol) of rows (configurations); the rest, with reasons."""
    left_out: list[tuple[StoredRun, str]] = []
    latest: dict[tuple, StoredRun] = {}
    for run in sorted(runs, key=lambda r: (r.start_time, r.run_id)):
        reason = _problem(run)
        if reason:
            left_out.append((run, reason))
            continue
        key = (run.result.protocol_fingerprint, config_hash(run.spec), run.result.seed)
        if key in latest:
            left_out.append(
                (latest[key], f"superseded by the later run {run.run_id[:8]} (same settings, seed)")
            )
        latest[key] = run

    by_protocol: dict[tuple, list[StoredRun]] = defaultdict(list)
    for run in latest.values():
        by_protocol[(run.result.dataset, run.result.protocol_fingerprint)].append(run)

    tables = []
    for (dataset, fp), members in by_protocol.items():
        frames = {r.run_id: r.per_user.sort("user") for r in members}
        signatures = {
            rid: (f["user"].to_numpy().tobytes(), f["target"].to_numpy().tobytes())
            for rid, f in frames.items()
        }
        common = Counter(signatures.values()).most_common()
        best = max(common, key=lambda item: (item[1], item[0]))[0]  # most runs; ties: a fixed choice
        kept = []
        for run in members:
            if signatures[run.run_id] == best:
                kept.append(run)
            else:
                left_out.append((run, "its test users or targets differ from the other runs of its protocol"))
        first = kept[0].result
        table = Table(
            dataset=dataset,
            split=first.split,
            fingerprint=fp,
            dataset_fingerprint=first.dataset_fingerprint,
            protocol=first.protocol,
            users=frames[kept[0].run_id]["user"].to_numpy(),
            rows=_rows(kept, frames),
            k=_main_k(list(first.protocol.get("ks") or [10])),
        )
        tables.append(table)
    tables.sort(key=lambda t: (t.dataset, t.sampled, t.split, t.fingerprint))
    left_out.sort(key=lambda item: (item[0].run_name, item[0].run_id))
    return tables, left_out


def _rows(runs: list[StoredRun], frames: dict) -> list[Row]:
    grouped: dict[tuple, list[StoredRun]] = defaultdict(list)
    for run in runs:
        grouped[(run.result.encoder, run.result.backbone, config_hash(run.spec))].append(run)
    rows = []
    for (encoder, backbone, config), members in grouped.items():
        members.sort(key=lambda r: r.result.seed)
        row = Row(
            encoder=encoder,
            encoder_kind=members[0].result.encoder_kind,
            backbone=backbone,
            config=config,
            recipe=members[0].result.recipe,
            runs=members,
        )
        columns = [
            c
            for c in frames[members[0].run_id].columns
            if c not in ("user", "target", "rank") and not c.endswith(":rank")
        ]
        for column in columns:
            if all(column in frames[r.run_id].columns for r in members):
                stacked = np.stack([frames[r.run_id][column].to_numpy() for r in members])  # (S, U)
                row.vectors[column] = stacked[0] if column.startswith(SLICE_COLUMN) else stacked.mean(axis=0)
        rows.append(row)
    names = {id(r): r.encoder + (" (tuned)" if r.tuning else "") for r in rows}  # a tuned row says so
    per_pair = Counter((names[id(r)], r.backbone) for r in rows)
    for row in rows:
        name = names[id(row)]
        row.label = name if per_pair[(name, row.backbone)] == 1 else f"{name} [{row.config[:6]}]"
    _assign_baselines(rows)
    _refuse_unfair_deltas(rows)
    rows.sort(key=lambda r: (r.is_floor, r.backbone, not r.is_baseline, r.label))
    return rows


def _assign_baselines(rows: list[Row]) -> None:
    """Each row's baseline: the row with the same backbone whose encoder is the recipe's declared baseline
    (run tag), by default the `id` encoder; among several, the one from the same recipe. The floor rows (they
    train nothing) neither have nor are a baseline."""
    for row in rows:
        if row.is_floor:
            row.baseline_note = "not trained: the popularity floor"
            continue
        declared = Counter(r.tags[TAG_BASELINE] for r in row.runs if r.tags.get(TAG_BASELINE))
        wanted = declared.most_common(1)[0][0] if declared else None
        candidates = [
            o
            for o in rows
            if not o.is_floor
            and o.backbone == row.backbone
            and (o.encoder == wanted if wanted else o.encoder_kind == "id")
        ]
        if len(candidates) > 1:  # a tuned row is compared with a baseline tuned alike, where there is one
            alike = [o for o in candidates if o.tuning == row.tuning]
            candidates = alike or candidates
        if len(candidates) > 1:
            same_recipe = [o for o in candidates if o.recipe == row.recipe]
            candidates = same_recipe if len(same_recipe) == 1 else candidates
        if len(candidates) == 1:
            row.baseline = candidates[0]
        elif candidates:
            row.baseline_note = "several candidate baselines"
        else:
            row.baseline_note = f"no '{wanted}' run" if wanted else "no id-encoder run"


STOP_WORDS = {
    EARLY_STOPPING: "stopped early on validation",
    "max_epochs": "trained to a fixed epoch cap",
    "budget": "budget-stopped",
    "not_trained": "not trained",
    None: "stop reason not recorded",
}


def describe_stops(reasons: list[str | None]) -> str:
    """'trained to a fixed epoch cap', or for mixed seeds 'budget-stopped (1 seed), stopped early ... (2)'."""
    counts = Counter(reasons)
    if len(counts) == 1:
        return STOP_WORDS.get(reasons[0], str(reasons[0]))
    return ", ".join(
        f"{STOP_WORDS.get(r, str(r))} ({n} seed{'s' * (n != 1)})"
        for r, n in sorted(counts.items(), key=lambda item: str(item[0]))
    )


def _refuse_unfair_deltas(rows: list[Row]) -> None:
    """Δ only between early-stopped rows that ran the same seeds as their baseline, tuned alike: a row trained
    to a cap or a budget (or of unknown stopping) measures its budget as much as its representation, a row
    tuned on validation against an untuned one (or with another budget) measures the search as much as the
    model, and seed-averaged values over different seeds are not paired samples of the same thing."""
    for row in rows:
        if row.baseline is None or row.is_baseline:
            continue
        base = row.baseline
        reasons = []
        if not row.early_stopped:
            reasons.append(describe_stops(row.stop_reasons))
        if not base.early_stopped:
            reasons.append(f"baseline {describe_stops(base.stop_reasons)}")
        if row.seeds != base.seeds:
            reasons.append(
                f"different seeds: {', '.join(map(str, row.seeds))} vs the baseline's "
                f"{', '.join(map(str, base.seeds))}"
            )
        if row.tuning != base.tuning:
            reasons.append(
                f"{'tuned (' + row.tuning + ')' if row.tuning else 'not tuned'} vs a baseline "
                f"{'tuned (' + base.tuning + ')' if base.tuning else 'not tuned'}"
            )
        row.delta_refused = "; ".join(reasons)


# --------------------------------------------------------------------------------------------- statistics


@dataclass
class RowStats:
    metrics: dict[str, Interval]  # metric -> estimate and CI (seed-averaged per-user values)
    seed_std: dict[str, float | None]  # metric -> std over seeds of the run means
    delta: Interval | None = None
    wilcoxon: PairedTest | None = None
    t_test: PairedTest | None = None
    slice_ci: dict[str, Interval] = field(default_factory=dict)  # slice -> CI of metric@K in the slice


def table_stats(table: Table) -> dict[int, RowStats]:
    """Bootstrap intervals, seed spread, and paired tests against the baseline, per row (keyed by id(row)).

    Also the history-kept NDCG@K (key ``history-kept:ndcg@K``) for rows whose runs all recorded it."""
    k = table.k
    names = [f"{m}@{k}" for m in METRICS]
    main = f"ndcg@{k}"
    kept = f"{HISTORY_KEPT}:{main}"
    vectors, slots = [], []
    for row in table.rows:
        for name in names + [kept]:
            if name in row.vectors:
                vectors.append(row.vectors[name])
                slots.append((id(row), name))
        if row.paired:
            vectors.append(row.vectors[main] - row.baseline.vectors[main])
            slots.append((id(row), "delta"))
    means = bootstrap_means(vectors)  # one set of resamples for the whole table
    out = {id(row): RowStats({}, {}) for row in table.rows}
    for (key, name), vec, draws in zip(slots, vectors, means):
        interval = percentile_interval(float(vec.mean()), draws)
        if name == "delta":
            out[key].delta = interval
        else:
            out[key].metrics[name] = interval
    for row in table.rows:
        stats = out[id(row)]
        for name in names:
            stats.seed_std[name] = seed_summary([r.result.metrics["test"][name] for r in row.runs]).std
        if kept in stats.metrics:
            kept_means = [r.result.metrics.get(f"test/{HISTORY_KEPT}", {}).get(main) for r in row.runs]
            stats.seed_std[kept] = None if None in kept_means else seed_summary(kept_means).std
        if stats.delta is not None and len(table.users) >= 2:
            stats.wilcoxon = wilcoxon_signed_rank(row.vectors[main], row.baseline.vectors[main])
            stats.t_test = paired_t_test(row.vectors[main], row.baseline.vectors[main])
    for slice_name in ("warm", "cold"):  # the slice's users are the same for every row of the table
        with_mask = [row for row in table.rows if row.vectors.get(SLICE_COLUMN + slice_name) is not None]
        if not with_mask or not with_mask[0].vectors[SLICE_COLUMN + slice_name].any():
            continue
        mask = with_mask[0].vectors[SLICE_COLUMN + slice_name].astype(bool)
        sliced = [row.vectors[main][mask] for row in with_mask]
        for row, vec, draws in zip(with_mask, sliced, bootstrap_means(sliced)):
            out[id(row)].slice_ci[slice_name] = percentile_interval(float(vec.mean()), draws)
    return out
