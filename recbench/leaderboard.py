"""LEADERBOARD.md from the MLflow store: one table per dataset and protocol, with statistics and plots.

Reads MLflow only (:class:`recbench.tracking.Store`: FINISHED runs, their tags, metrics and artifacts), groups
them with :mod:`recbench.tables` (runs of different protocol fingerprints are never ranked against each other)
and renders markdown plus PNG plots. Everything in the file comes from the store except the date and the
command line, which are injected: ``--check`` regenerates with the file's own date and compares the rest.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recbench.evaluation.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_LEVEL, Interval, seed_summary
from recbench.plots import Bar, BarPlot, draw, stored_hash
from recbench.tables import METRICS, Row, RowStats, Table, collect, table_stats
from recbench.tracking import (
    TAG_COMMAND,
    TAG_COMMIT,
    TAG_DEVICE,
    TAG_MACHINE,
    TAG_TORCH,
    TAG_VERSION,
    StoredRun,
)

__all__ = ["Leaderboard", "build", "check", "collect", "table_stats", "write"]

DEFAULT_OUTPUT = "LEADERBOARD.md"
_DISPLAY = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}
_DATE_LINE = re.compile(r"^- Produced: (\S+)", re.MULTILINE)


@dataclass
class Leaderboard:
    markdown: str
    plots: list[BarPlot]
    tables: list[Table]
    left_out: list[tuple[StoredRun, str]]


# --------------------------------------------------------------------------------------------- formatting


def _f(x: float) -> str:
    return f"{x:.4f}"


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def _p(p: float) -> str:
    if p == 0.0:
        return "<1e-300"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}" if x >= 1 else f"{x:.3g}"


def _metric_cell(interval: Interval, std: float | None) -> str:
    spread = f" ± {_f(std)}" if std is not None else ""
    return f"{_f(interval.estimate)}{spread} [{_f(interval.low)}, {_f(interval.high)}]"


def _seed_cell(values: list[float]) -> str:
    summary = seed_summary(values)
    return _f(summary.mean) + (f" ± {_f(summary.std)}" if summary.std is not None else "")


def _slice_value(row: Row, slice_name: str, metric: str) -> str:
    values = [r.result.metrics.get(f"test/{slice_name}", {}).get(metric) for r in row.runs]
    if any(v is None for v in values):
        return "–"
    return _seed_cell(values)


def _cost_cells(row: Row) -> list[str]:
    costs = [r.result.cost for r in row.runs]

    def mean(attr: str) -> float:
        return float(np.mean([getattr(c, attr) for c in costs]))

    def spread(attr: str) -> str:
        values = sorted({getattr(c, attr) for c in costs})
        return f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}–{values[-1]:,}"

    epochs = mean("epochs")
    cells = [
        _num(mean("s_per_epoch")),
        f"{epochs:.0f}" if epochs == int(epochs) else f"{epochs:.1f}",
        _num(mean("encode_s")),
        f"{mean('peak_rss_mb'):.0f}",
    ]
    cuda = [c.cuda_peak_mb for c in costs if c.cuda_peak_mb is not None]
    cells.append(f"{np.mean(cuda):.0f}" if cuda else "–")
    cells.append(f"{spread('params_trainable')} / {spread('params_total')}")
    return cells


def candidates_label(protocol: dict[str, Any]) -> str:
    if protocol.get("candidates") == "sampled":
        return f"SAMPLED candidates (target + {protocol.get('sampled_negatives')} negatives)"
    return "full ranking"


def describe_protocol(table: Table) -> str:
    p = table.protocol
    data = ", ".join(
        f"{k}={v}" for k, v in sorted((p.get("dataset") or {}).items()) if k != "name" and v is not None
    )
    split = ", ".join(f"{k}={v}" for k, v in sorted((p.get("split") or {}).items()) if k != "kind")
    loss = f"{p.get('loss')}" + (f" ({p['negatives']} negatives)" if p.get("negatives") else "")
    head, tail = p.get("popularity_head"), p.get("popularity_tail")
    parts = [
        f"split {table.split}" + (f" ({split})" if split else ""),
        f"data {data or 'card defaults'}",
        f"max_len {p.get('max_len')}",
        f"loss {loss}",
        f"candidates: {candidates_label(p)}",
        f"history items {'excluded' if p.get('exclude_seen') else 'ranked'}",
        f"ties {p.get('ties')}",
        f"K {', '.join(map(str, p.get('ks') or []))}",
        f"cold = at most {p.get('cold_threshold')} training occurrences",
    ]
    if head is not None:
        parts.append(f"popularity head {head:.0%} / tail {tail:.0%} of the catalogue items")
    if p.get("history_bounds") is not None:
        parts.append(f"history bounds {', '.join(map(str, p['history_bounds'])) or 'none'}")
    return "; ".join(parts)


def _md_table(header: list[str], rows: list[list[str]], right_from: int) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if i < right_from else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


def _render_table(
    table: Table, stats: dict[int, RowStats], plots_dir: str
) -> tuple[list[str], list[BarPlot]]:
    k, main = table.k, f"ndcg@{table.k}"
    tag = " (sampled)" if table.sampled else ""
    first = table.rows[0].runs[0].result
    lines = [f"## {table.dataset} · {table.split} · {candidates_label(table.protocol)}", ""]
    if table.sampled:
        lines += [
            "> **Sampled-candidate protocol**: each target is ranked against "
            f"{table.protocol.get('sampled_negatives')} sampled negatives, not the whole catalogue. "
            "These numbers are not comparable with full-ranking tables.",
            "",
        ]
    lines += [
        f"Protocol `{table.fingerprint}` (dataset `{table.dataset_fingerprint}`): {describe_protocol(table)}. "
        f"{len(table.users)} test users.",
        "",
    ]
    header = ["encoder", "backbone", "seeds"] + [f"{_DISPLAY[m]}@{k}{tag}" for m in METRICS]
    header += [
        f"Δ NDCG@{k} vs baseline{tag}",
        "p Wilcoxon",
        "p t-test",
        f"NDCG@{k} warm{tag}",
        f"NDCG@{k} cold{tag}",
        "s/epoch",
        "epochs",
        "encode s",
        "peak RSS MB",
        "CUDA peak MB",
        "params trainable / total",
    ]
    body = []
    for row in table.rows:
        st = stats[id(row)]
        cells = [row.label, row.backbone, ",".join(map(str, row.seeds))]
        cells += [_metric_cell(st.metrics[f"{m}@{k}"], st.seed_std[f"{m}@{k}"]) for m in METRICS]
        if row.is_baseline:
            cells += ["baseline", "–", "–"]
        elif st.delta is not None and st.wilcoxon is not None:
            cells += [
                f"{_signed(st.delta.estimate)} [{_signed(st.delta.low)}, {_signed(st.delta.high)}] vs {row.baseline.label}",
                _p(st.wilcoxon.p_value),
                _p(st.t_test.p_value),
            ]
        else:
            cells += [f"– ({row.baseline_note or 'fewer than 2 test users'})", "–", "–"]
        cells += [_slice_value(row, "warm", main), _slice_value(row, "cold", main)]
        cells += _cost_cells(row)
        body.append(cells)
    lines += _md_table(header, body, right_from=3)

    slice_names = [g.split("/", 1)[1] for g in first.slice_sizes if g.startswith("test/")]
    sizes = ", ".join(f"{s} {first.slice_sizes[f'test/{s}']}" for s in slice_names)
    lines += ["", f"Test users per slice: {sizes or 'no slices recorded'}.", ""]
    extra = [s for s in slice_names if s not in ("warm", "cold")]
    if extra:
        lines += [f"NDCG@{k}{tag} by slice (mean over users in the slice; ± std over seeds):", ""]
        slice_rows = [
            [row.label, row.backbone] + [_slice_value(row, s, main) for s in extra] for row in table.rows
        ]
        lines += _md_table(["encoder", "backbone"] + extra, slice_rows, right_from=2)
        lines.append("")

    plots = _plots(table, stats)
    for plot in plots:
        lines.append(f"![{plot.title}]({plots_dir}/{plot.file})")
        lines.append(f"<!-- plot {plot.file} data {plot.data_hash} -->")
    lines.append("")
    return lines, plots


def _plots(table: Table, stats: dict[int, RowStats]) -> list[BarPlot]:
    k = table.k
    tag = f", {candidates_label(table.protocol)}"
    by_backbone: dict[str, list[Bar]] = defaultdict(list)
    for row in table.rows:
        ci = stats[id(row)].metrics[f"ndcg@{k}"]
        by_backbone[row.backbone].append(Bar(row.label, ci.estimate, ci.low, ci.high))
    ndcg = BarPlot(
        file=f"{table.slug}-ndcg.png",
        title=f"{table.dataset} ({table.split}{tag}): NDCG@{k}, 95% CI, ID vs content per backbone",
        ylabel=f"NDCG@{k}",
        groups=tuple((b, tuple(bars)) for b, bars in sorted(by_backbone.items())),
    )
    groups = []
    for row in table.rows:
        bars = []
        for slice_name in ("warm", "cold"):
            value = _slice_value(row, slice_name, f"ndcg@{k}")
            if value == "–":
                bars.append(Bar(slice_name, None))
                continue
            ci = stats[id(row)].slice_ci.get(slice_name)
            mean = float(np.mean([r.result.metrics[f"test/{slice_name}"][f"ndcg@{k}"] for r in row.runs]))
            bars.append(Bar(slice_name, mean, ci.low if ci else None, ci.high if ci else None))
        groups.append((f"{row.label} / {row.backbone}", tuple(bars)))
    warm_cold = BarPlot(
        file=f"{table.slug}-warm-cold.png",
        title=f"{table.dataset} ({table.split}{tag}): NDCG@{k} on warm and cold targets, 95% CI",
        ylabel=f"NDCG@{k}",
        groups=tuple(groups),
    )
    return [ndcg, warm_cold]


def _provenance(runs: list[StoredRun]) -> list[str]:
    def counted(values: list[str]) -> str:
        counts = Counter(values)
        return "; ".join(f"{v} ({n} run{'s' * (n != 1)})" for v, n in sorted(counts.items()))

    commands = [f"`{r.tags[TAG_COMMAND]}`" for r in runs if r.tags.get(TAG_COMMAND)]
    machines = [
        f"{r.tags.get(TAG_MACHINE, 'machine not recorded')}, {r.tags.get(TAG_DEVICE, 'device not recorded')}, "
        f"torch {r.tags.get(TAG_TORCH, '?')}"
        for r in runs
    ]
    code = [
        f"recbench {r.tags.get(TAG_VERSION, '?')} at {r.tags.get(TAG_COMMIT, 'unknown')[:12]}" for r in runs
    ]
    lines = [f"- Runs made by: {counted(commands) or 'no command recorded'}"]
    if len(commands) < len(runs):
        lines[-1] += f"; {len(runs) - len(commands)} runs without a recorded command"
    lines += [f"- Machines: {counted(machines)}", f"- Code: {counted(code)}"]
    return lines


LEGEND = (
    "How to read: every table holds runs of one dataset under one protocol fingerprint; runs of different "
    "protocols are never ranked against each other. Metrics are means over the test users with a "
    f"{CI_LEVEL:.0%} percentile-bootstrap CI over users ({BOOTSTRAP_RESAMPLES:,} resamples, seed "
    f"{BOOTSTRAP_SEED}); with several seeds, mean ± sample std over seeds, the CI then being that of the "
    "seed-averaged per-user values. Δ is the row minus its baseline (the recipe's `baseline` encoder, by default "
    "the `id` encoder, with the same backbone and protocol), paired over users, with its bootstrap CI; p-values "
    "are two-sided (Wilcoxon signed-rank, normal approximation without continuity correction; paired t-test), "
    "not corrected for multiple comparisons. warm/cold: targets seen more than / at most `cold_threshold` times "
    "in training. Cost columns are means over seeds; peak RSS is the resident-memory peak of the process during the run (what it already held, such as libraries and cached data, included)."
)


def build(
    runs: list[StoredRun], experiments: list[str], date: str, command: str, plots_dir: str
) -> Leaderboard:
    """The leaderboard for these stored runs; `date` and `command` are the only inputs not read from the store."""
    tables, left_out = collect(runs)
    used = [run for table in tables for row in table.rows for run in row.runs]
    lines = [
        "# recbench leaderboard",
        "",
        "<!-- Generated from the MLflow store by `recbench leaderboard`; do not edit by hand. "
        "`recbench leaderboard --check` fails when this file is not what the store produces now. -->",
        "",
        f"- Produced: {date} by `{command}` from experiment{'s' * (len(experiments) != 1)} "
        f"{', '.join(f'`{e}`' for e in sorted(experiments)) or '(none)'}",
    ]
    lines += _provenance(used) if used else ["- No FINISHED recbench runs in the store."]
    lines += ["", LEGEND, ""]
    plots: list[BarPlot] = []
    for table in tables:
        table_lines, table_plots = _render_table(table, table_stats(table), plots_dir)
        lines += table_lines
        plots += table_plots
    if left_out:
        lines += ["## Runs left out", ""]
        lines += _md_table(
            ["run", "name", "experiment", "reason"],
            [[f"`{r.run_id[:12]}`", r.run_name, r.experiment, reason] for r, reason in left_out],
            right_from=4,
        )
        lines.append("")
    return Leaderboard("\n".join(lines).rstrip() + "\n", plots, tables, left_out)


# --------------------------------------------------------------------------------------------- files


def plots_dir_for(output: Path) -> Path:
    return output.parent / f"{output.stem.lower()}-plots"


def command_line(experiments: list[str] | None, output: Path) -> str:
    """The canonical command that produces `output` (without --check, so writing and checking agree)."""
    words = ["recbench", "leaderboard"]
    for name in experiments or []:
        words += ["--experiment", name]
    path = os.path.normpath(str(output))
    if path != DEFAULT_OUTPUT:
        words += ["--output", path]
    import shlex

    return shlex.join(words)


def recorded_date(output: Path) -> str | None:
    """The date a written leaderboard says it was produced (what --check injects), or None."""
    if not output.is_file():
        return None
    found = _DATE_LINE.search(output.read_text(encoding="utf-8"))
    return found.group(1) if found else None


def today() -> str:
    return _dt.date.today().isoformat()


def write(board: Leaderboard, output: Path) -> None:
    """Write the markdown and its plots (removing plots of tables that no longer exist)."""
    folder = plots_dir_for(output)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {plot.file for plot in board.plots}
    for stale in folder.glob("*.png"):
        if stale.name not in wanted:
            stale.unlink()
    for plot in board.plots:
        draw(plot, folder / plot.file)
    output.write_text(board.markdown, encoding="utf-8")


def check(board: Leaderboard, output: Path) -> list[str]:
    """Differences between `output` (and its plots) and what the store produces now; empty when current."""
    if not output.is_file():
        return [f"{output} does not exist: run `recbench leaderboard` to write it"]
    problems = []
    current = output.read_text(encoding="utf-8")
    if current != board.markdown:
        diff = difflib.unified_diff(
            current.splitlines(),
            board.markdown.splitlines(),
            f"{output} (file)",
            f"{output} (store now)",
            lineterm="",
        )
        problems.append(
            "the markdown differs from what the store produces now:\n" + "\n".join(list(diff)[:60])
        )
    folder = plots_dir_for(output)
    for plot in board.plots:
        path = folder / plot.file
        if not path.is_file():
            problems.append(f"plot {path} is missing")
        elif stored_hash(path) != plot.data_hash:
            problems.append(f"plot {path} is stale (its data differ from the store's)")
    return problems
