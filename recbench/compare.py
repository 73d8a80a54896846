"""`recbench compare RUN_A RUN_B`: two stored runs, paired over their test users.

Two runs are comparable only under the same protocol fingerprint (same data, split, candidates, K, ...); else
:func:`protocol_differences` says which recorded protocol fields differ and the comparison is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from recbench.evaluation.stats import (
    Interval,
    PairedTest,
    bootstrap_ci,
    paired_bootstrap_ci,
    paired_t_test,
    wilcoxon_signed_rank,
)
from recbench.tracking import StoredRun

_METRIC = re.compile(r"^(hr|ndcg|mrr)@(\d+)$")


class IncomparableRuns(ValueError):
    """Two runs that must not be compared (different protocols or users, unfinished run, unknown metric)."""


@dataclass
class Comparison:
    a: StoredRun
    b: StoredRun
    metric: str
    users: int
    metrics_a: dict[str, float]
    metrics_b: dict[str, float]
    ci_a: Interval
    ci_b: Interval
    delta: Interval  # mean of a - b over users, paired bootstrap CI
    wilcoxon: PairedTest
    t_test: PairedTest


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): obj}


def protocol_differences(a: StoredRun, b: StoredRun) -> list[str]:
    """'field: value in A vs value in B' for every recorded protocol field that differs (empty if none)."""
    pa = _flatten({**a.result.protocol, "dataset_fingerprint": a.result.dataset_fingerprint})
    pb = _flatten({**b.result.protocol, "dataset_fingerprint": b.result.dataset_fingerprint})
    missing = object()
    return [
        f"{key}: {pa.get(key, '(not recorded)')} vs {pb.get(key, '(not recorded)')}"
        for key in sorted(set(pa) | set(pb))
        if pa.get(key, missing) != pb.get(key, missing)
    ]


def _usable(run: StoredRun, which: str) -> None:
    if run.problem or run.result is None or run.per_user is None:
        raise IncomparableRuns(
            f"run {which} ({run.run_id}, {run.run_name}) cannot be compared: {run.problem}"
        )


def compare(a: StoredRun, b: StoredRun, metric: str = "ndcg@10") -> Comparison:
    """Both runs' test metrics, the paired difference of `metric` (A - B) with its CI and p-values."""
    _usable(a, "A")
    _usable(b, "B")
    if not _METRIC.match(metric):
        raise IncomparableRuns(f"'{metric}' is not a metric; use hr@K, ndcg@K or mrr@K (e.g. ndcg@10)")
    if a.result.protocol_fingerprint != b.result.protocol_fingerprint:
        diffs = protocol_differences(a, b) or [
            "no recorded field differs, but the fingerprints do (the runs come from different recbench "
            "versions or the dataset fingerprint differs)"
        ]
        raise IncomparableRuns(
            f"runs have different protocols (fingerprint {a.result.protocol_fingerprint} vs "
            f"{b.result.protocol_fingerprint}) and are never compared; differing fields (A vs B):\n  "
            + "\n  ".join(diffs)
        )
    fa, fb = a.per_user.sort("user"), b.per_user.sort("user")
    if not (
        np.array_equal(fa["user"].to_numpy(), fb["user"].to_numpy())
        and np.array_equal(fa["target"].to_numpy(), fb["target"].to_numpy())
    ):
        raise IncomparableRuns("the runs' test users or targets differ, so no per-user pairing exists")
    for frame, which in ((fa, "A"), (fb, "B")):
        if metric not in frame.columns:
            have = sorted(c for c in frame.columns if _METRIC.match(c))
            raise IncomparableRuns(f"run {which} has no per-user {metric}; it has {', '.join(have)}")
    va, vb = fa[metric].to_numpy(), fb[metric].to_numpy()
    return Comparison(
        a=a,
        b=b,
        metric=metric,
        users=len(va),
        metrics_a=dict(a.result.metrics.get("test", {})),
        metrics_b=dict(b.result.metrics.get("test", {})),
        ci_a=bootstrap_ci(va),
        ci_b=bootstrap_ci(vb),
        delta=paired_bootstrap_ci(va, vb),
        wilcoxon=wilcoxon_signed_rank(va, vb),
        t_test=paired_t_test(va, vb),
    )
