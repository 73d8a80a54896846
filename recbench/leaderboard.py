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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from recbench.evaluation.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_LEVEL, Interval, seed_summary
from recbench.plots import Bar, BarPlot, draw, stored_hash
from recbench.tables import (
    EARLY_STOPPING,
    HISTORY_KEPT,
    METRICS,
    Row,
    RowStats,
    Table,
    collect,
    table_stats,
)
from recbench.tracking import (
    TAG_COMMAND,
    TAG_COMMIT,
    TAG_DEVICE,
    TAG_MACHINE,
    TAG_TORCH,
    TAG_VERSION,
    StoredRun,
)

__all__ = [
    "Leaderboard",
    "Refusal",
    "build",
    "check",
    "collect",
    "recipe_experiments",
    "select_runs",
    "table_stats",
    "write",
]

DEFAULT_OUTPUT = "LEADERBOARD.md"
_DISPLAY = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}
_DATE_LINE = re.compile(r"^- Produced: (\S+)", re.MULTILINE)
_COMMAND_IN_DATE_LINE = re.compile(r"^(- Produced: \S+ by )`[^`\n]*`", re.MULTILINE)


class Refusal(Exception):
    """Nothing to build a leaderboard from (no store, no FINISHED runs): exit 2, nothing written or created."""


@dataclass
class Leaderboard:
    markdown: str
    plots: list[BarPlot]
    tables: list[Table]
    left_out: list[tuple[StoredRun, str]]
    kept_plots: frozenset[str] = field(default_factory=frozenset)  # plots of blocks kept from the file


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


def _kept_cell(row: Row, st: RowStats, main: str) -> str:
    """History-kept NDCG@K: mean ± seed std [bootstrap CI], '–' for runs recorded before it was evaluated."""
    interval = st.metrics.get(f"{HISTORY_KEPT}:{main}")
    if interval is None:
        return "– (not recorded)"
    return _metric_cell(interval, st.seed_std.get(f"{HISTORY_KEPT}:{main}"))


# short marks of the `stopped` column; † = the row gets no Δ (see the table notes)
_STOP_MARKS = {
    EARLY_STOPPING: "early stop",
    "max_epochs": "epoch cap †",
    "budget": "budget †",
    "not_trained": "not trained",
    None: "unknown †",
}


def _stop_cell(row: Row) -> str:
    reasons = row.stop_reasons
    if len(set(reasons)) == 1:
        return _STOP_MARKS.get(reasons[0], f"{reasons[0]} †")
    return "mixed †"


def _seeds_cell(row: Row) -> str:
    """The number of seeds averaged (a count, not a list that reads like a value); † when they are not the
    baseline's seeds."""
    differs = row.baseline is not None and not row.is_baseline and row.seeds != row.baseline.seeds
    return f"{len(row.seeds)}" + (" †" if differs else "")


def _tuned_cell(row: Row) -> str:
    """How the row's settings were chosen: '–' (as declared), or the study's trials, pruned trials and trial
    time per seed with its budget; † when its baseline was tuned otherwise (no Δ)."""
    differs = row.baseline is not None and not row.is_baseline and row.tuning != row.baseline.tuning
    mark = " †" if differs else ""
    if not row.tuning:
        return "–" + mark
    notes = [r.result.notes.get("tune") or {} for r in row.runs]

    def spread(key: str) -> str:
        values = sorted({n.get(key, 0) for n in notes})
        return f"{values[0]}" if len(values) == 1 else f"{values[0]}–{values[-1]}"

    seconds = [r.result.cost.tune_s for r in row.runs if r.result.cost.tune_s is not None]
    took = f", {_num(float(np.mean(seconds)))} s" if seconds else ""
    return f"{spread('trials')} trials, {spread('pruned')} pruned{took} (budget {row.tuning}){mark}"


def _slice_value(row: Row, slice_name: str, metric: str) -> str:
    values = [r.result.metrics.get(f"test/{slice_name}", {}).get(metric) for r in row.runs]
    if any(v is None for v in values):
        return "–"
    return _seed_cell(values)


def _cost_cells(row: Row, with_pretrain: bool = False) -> list[str]:
    """Cost columns; `with_pretrain` adds the source stage's wall time of transfer rows (a table that holds
    any), so a transferred row's cost is read with what its pretraining cost."""
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
    ]
    if with_pretrain:
        pretrain = [c.pretrain_s for c in costs if c.pretrain_s is not None]
        cells.append(_num(float(np.mean(pretrain))) if pretrain else "–")
    cells += [f"{mean('peak_rss_mb'):.0f}"]
    cuda = [c.cuda_peak_mb for c in costs if c.cuda_peak_mb is not None]
    cells.append(f"{np.mean(cuda):.0f}" if cuda else "–")
    cells.append(f"{spread('params_trainable')} / {spread('params_total')}")
    return cells


def candidates_label(protocol: dict[str, Any]) -> str:
    if protocol.get("candidates") == "sampled":
        return f"SAMPLED candidates (target + {protocol.get('sampled_negatives')} negatives)"
    return "full ranking"


def _timestamp_ties(table: Table) -> str:
    """How equal timestamps were ordered and how many tied pairs that decided, from the run's data stats."""
    p = table.protocol
    rule = (p.get("dataset") or {}).get("ties")
    if rule is None:  # the card's default
        try:
            from recbench.data.cards import get_card

            rule = get_card(table.dataset).preprocess.get("ties", "file_order")
        except Exception:  # noqa: BLE001 - an unknown card: say the rule is the default
            rule = "file_order"
    counts = {r.result.data_stats.get("timestamp_ties") for row in table.rows for r in row.runs}
    counts.discard(None)
    order = "file order" if rule == "file_order" else rule.replace("_", " ")
    if not counts:
        return f"equal timestamps ordered by {order} (tied pairs not recorded)"
    n = sorted(counts)[-1] if len(counts) == 1 else "/".join(map(str, sorted(counts)))
    return f"equal timestamps ordered by {order}: {n} tied consecutive pairs"


def _data_settings(dataset: dict[str, Any]) -> str:
    """A protocol's dataset section in words: the settings that differ from the card ('' when none), and the
    datasets mixed into it by name with their own settings."""
    words = [
        f"{k}={v}"
        for k, v in sorted(dataset.items())
        if k not in ("name", "mix_with") and v is not None and v != []
    ]
    for other in dataset.get("mix_with") or []:
        own = _data_settings(other)
        words.append(f"mixed with {other.get('name')}" + (f" ({own})" if own else ""))
    return ", ".join(words)


def _dataset_title(table: Table) -> str:
    """The table's dataset, with the datasets mixed into it (a transfer regime's source stage)."""
    mixed = [d.get("name") for d in (table.protocol.get("dataset") or {}).get("mix_with") or []]
    return " + ".join([table.dataset, *mixed])


def describe_protocol(table: Table) -> str:
    p = table.protocol
    data = _data_settings(p.get("dataset") or {})
    split = ", ".join(f"{k}={v}" for k, v in sorted((p.get("split") or {}).items()) if k != "kind")
    loss = f"{p.get('loss')}" + (f" ({p['negatives']} negatives)" if p.get("negatives") else "")
    head, tail = p.get("popularity_head"), p.get("popularity_tail")
    parts = [
        f"split {table.split}" + (f" ({split})" if split else ""),
        f"data {data or 'card defaults'}",
        f"max_len {p.get('max_len')}",
        f"loss {loss}",
        f"candidates: {candidates_label(p)}",
        "history items "
        + (
            "excluded (recbench default; also ranked kept)" if p.get("exclude_seen") else "kept as candidates"
        ),
        f"tied scores {p.get('ties')} (eval.ties)",
        _timestamp_ties(table),
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
    lines = [f"## {_dataset_title(table)} · {table.split} · {candidates_label(table.protocol)}", ""]
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
    excluded = bool(table.protocol.get("exclude_seen"))
    kept_recorded = excluded and any(f"{HISTORY_KEPT}:{main}" in row.vectors for row in table.rows)
    named = {m: f"{_DISPLAY[m]}@{k}{tag}" for m in METRICS}
    named["ndcg"] += " history excluded" if excluded else " history kept"
    header = ["encoder", "backbone", "seeds", "stopped"] + [named[m] for m in METRICS]
    if kept_recorded:
        header.append(f"NDCG@{k}{tag} history kept")
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
    with_pretrain = any(r.result.cost.pretrain_s is not None for row in table.rows for r in row.runs)
    if with_pretrain:
        header.insert(header.index("encode s") + 1, "pretrain s")
    with_tuning = any(row.tuning for row in table.rows)
    if with_tuning:
        header.insert(header.index("stopped") + 1, "tuned on validation")
    body = []
    for row in table.rows:
        st = stats[id(row)]
        cells = [row.label, row.backbone, _seeds_cell(row), _stop_cell(row)]
        if with_tuning:
            cells.append(_tuned_cell(row))
        cells += [_metric_cell(st.metrics[f"{m}@{k}"], st.seed_std[f"{m}@{k}"]) for m in METRICS]
        if kept_recorded:
            cells.append(_kept_cell(row, st, main))
        if row.is_baseline:
            cells += ["baseline", "–", "–"]
        elif row.paired and st.delta is not None and st.wilcoxon is not None:
            cells += [
                f"{_signed(st.delta.estimate)} [{_signed(st.delta.low)}, {_signed(st.delta.high)}] vs {row.baseline.label}",
                _p(st.wilcoxon.p_value),
                _p(st.t_test.p_value),
            ]
        else:
            why = row.delta_refused or row.baseline_note or "fewer than 2 test users"
            cells += [f"– ({why})", "–", "–"]
        cells += [_slice_value(row, "warm", main), _slice_value(row, "cold", main)]
        cells += _cost_cells(row, with_pretrain)
        body.append(cells)
    lines += _md_table(header, body, right_from=5 if with_tuning else 4)
    lines += ["", *_table_notes(table, k, tag, excluded, kept_recorded)]

    slice_names = [
        g.split("/", 1)[1]
        for g in first.slice_sizes
        if g.startswith("test/") and not g.startswith(f"test/{HISTORY_KEPT}")
    ]
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


def _table_notes(table: Table, k: int, tag: str, excluded: bool, kept_recorded: bool) -> list[str]:
    """What the marks mean and which NDCG column to quote, under the table they describe."""
    notes = []
    if excluded:
        notes.append(
            f"- **Two NDCG@{k} columns.** *History excluded* (recbench's default, `eval.exclude_seen: true`) "
            "removes the items already in the user's history from the candidates; *history kept* ranks them "
            "too, the convention of RecBole, UniSRec, VQ-Rec and most papers. Quote *history kept* beside "
            "published numbers; use *history excluded* to judge recommending items the user has not consumed "
            "yet. Kept is never higher (it only adds candidates); HR/MRR, Δ, warm/cold and slices use the "
            "history-excluded ranking."
            + ("" if kept_recorded else " No run of this table recorded the history-kept metrics.")
        )
    else:
        notes.append(
            "- **History kept** (`eval.exclude_seen: false`): every metric here ranks the user's history "
            "items as candidates, the convention of RecBole, UniSRec, VQ-Rec and most papers."
        )
    marked = [row for row in table.rows if "†" in _stop_cell(row) + _seeds_cell(row) + _tuned_cell(row)]
    not_trained = [row for row in table.rows if row.is_floor]
    notes.append(
        "- **Δ and p-values** only pair a row with a baseline that ran the same seeds, both having stopped "
        "early on validation (`stopped`: early stop). † marks why a row has none: `epoch cap †` trained to a "
        "fixed epoch cap, `budget †` budget-stopped, `unknown †` stop reason not recorded (runs made before "
        "recbench recorded it), `mixed †` seeds stopped differently, `N †` different seeds from its "
        "baseline; its Δ cell says which."
        + (f" {len(marked)} row{'s' * (len(marked) != 1)} of this table marked." if marked else "")
    )
    tuned = [row for row in table.rows if row.tuning]
    if tuned:
        notes.append(
            "- **(tuned)** rows chose their settings on validation before training: an Optuna study per seed "
            "(seeded TPE, median pruning; `tuned on validation`: its trials, pruned trials and trial time, and "
            "the budget; the values each seed chose are in its run, tags `recbench.tune.best.*`). Their test "
            "metrics were computed once, for the best configuration. A tuned row is ranked here beside rows "
            "trained as declared, but paired (Δ, p) only with a baseline tuned alike: `†` in that column marks "
            "a row whose baseline was tuned otherwise."
        )
    if not_trained:
        notes.append(
            "- **pop** (`not trained`) ranks items by their training popularity and reads no item content: "
            "the floor every trained row should beat. It is never a baseline and has no Δ."
        )
    return notes


def _plots(table: Table, stats: dict[int, RowStats]) -> list[BarPlot]:
    k = table.k
    tag = f", {candidates_label(table.protocol)}"
    by_backbone: dict[str, list[Bar]] = defaultdict(list)
    floors = []
    for row in table.rows:
        ci = stats[id(row)].metrics[f"ndcg@{k}"]
        if row.is_floor:  # trains nothing: a reference line across the backbones, not a group of its own
            floors.append((f"{row.label} / {row.backbone} (floor)", ci.estimate))
        else:
            by_backbone[row.backbone].append(Bar(row.label, ci.estimate, ci.low, ci.high))
    ndcg = BarPlot(
        file=f"{table.slug}-ndcg.png",
        title=f"{table.dataset} ({table.split}{tag}): NDCG@{k}, 95% CI, ID vs content per backbone",
        ylabel=f"NDCG@{k}",
        groups=tuple((b, tuple(bars)) for b, bars in sorted(by_backbone.items())),
        lines=tuple(floors),
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
    f"{BOOTSTRAP_SEED}); with several seeds (the `seeds` column counts them), mean ± sample std over seeds, "
    "the CI then being that of the seed-averaged per-user values. Δ is the row minus its baseline (the recipe's `baseline` encoder, by default "
    "the `id` encoder, with the same backbone and protocol), paired over users, with its bootstrap CI; p-values "
    "are two-sided (Wilcoxon signed-rank, normal approximation without continuity correction; paired t-test), "
    "not corrected for multiple comparisons. warm/cold: targets seen more than / at most `cold_threshold` times "
    "in training. What cold means depends on the split: in `leave_one_out` a cold target still belongs to the "
    "training catalogue (a softmax class, possibly a sampled negative: its ID vector is only ever pushed down), "
    "while in `cold_item` the held-out items are out of training altogether (no class, no negative, their ID "
    "rows kept exactly as initialised), the cold start content encoders are for. Cost columns are means over seeds; peak RSS is the resident-memory peak of the process during the run (what it already held, such as libraries and cached data, included)."
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


def command_line(experiments: list[str] | None, output: Path, stores: list[str] | None = None) -> str:
    """The canonical command that produces `output` (without --check, so writing and checking agree)."""
    words = ["recbench", "leaderboard"]
    for given in stores or []:
        words += ["--store", given]
    for name in experiments or []:
        words += ["--experiment", name]
    path = os.path.normpath(str(output))
    if path != DEFAULT_OUTPUT:
        words += ["--output", path]
    import shlex

    return shlex.join(words)


def recorded_date(output: Path, experiments: list[str] | None = None) -> str | None:
    """The date a written leaderboard says it was produced (what --check injects), or None; with
    `experiments`, the date of the block that holds them (:mod:`recbench.board_blocks`)."""
    if not output.is_file():
        return None
    text = output.read_text(encoding="utf-8")
    if experiments is not None:
        from recbench.board_blocks import block_date

        try:
            return block_date(text, experiments)
        except ValueError:
            return None
    found = _DATE_LINE.search(text)
    return found.group(1) if found else None


def keep_other_blocks(board: Leaderboard, experiments: list[str], output: Path):
    """(board, kept blocks, replaced blocks): `board` (one store's experiments) put into the file at `output`
    in place of the blocks of the same experiments, every other block kept as the file has it."""
    from recbench.board_blocks import merge

    existing = output.read_text(encoding="utf-8") if output.is_file() else None
    try:
        markdown, kept, replaced = merge(board.markdown, experiments, existing)
    except ValueError as exc:
        raise Refusal(
            f"{output}: {exc}. Move it away to write a new leaderboard. Nothing was written."
        ) from None
    kept_plots = frozenset().union(*(b.plots for b in kept))
    clash = sorted(kept_plots & {plot.file for plot in board.plots})
    if clash:
        holders = sorted({e for b in kept if b.plots & set(clash) for e in b.experiments})
        raise Refusal(
            f"{output} keeps a table of the same dataset and protocol from experiment(s) "
            f"{', '.join(holders)} (plot {clash[0]}); tables of one protocol are ranked together, so write them "
            f"in one command: --experiment for each of {', '.join(sorted({*holders, *experiments}))}, and "
            "--store for each store that holds their runs. Nothing was written."
        )
    return replace(board, markdown=markdown, kept_plots=kept_plots), kept, replaced


def today() -> str:
    return _dt.date.today().isoformat()


# --------------------------------------------------------------------------------------------- selection


def local_store_path(uri: str) -> Path | None:
    """The file or folder a local tracking URI names (sqlite database, file store), None for a server.

    Opening a local store that does not exist makes MLflow create an empty one, so the leaderboard looks
    first: a missing store is a mistake (wrong directory, unset MLFLOW_TRACKING_URI), never an empty board."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])  # sqlite:////abs/path -> /abs/path; sqlite:///rel -> rel
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    if "://" not in uri:
        return Path(uri)  # a bare path is a file store
    return None


def recipes_folder() -> Path:
    """The shipped recipes (recbench.shipped, through importlib.resources), else the checkout's recipes/."""
    try:
        from recbench.shipped import shipped_dir

        return shipped_dir("recipes")
    except ImportError:
        return Path(__file__).resolve().parents[1] / "recipes"


def recipe_experiments(folder: Path | None = None) -> dict[str, list[str]]:
    """{experiment: [recipe files declaring it]} over the recipes in `folder` (default: the shipped ones).

    These are the default experiments of the leaderboard, so that whatever else is in the store (a smoke
    run, someone's experiment) does not become a table. A recipe that caps its users (`dataset.max_users`,
    "for smoke tests, never benchmarks") declares no leaderboard experiment."""
    import yaml

    from recbench.config import Recipe

    default = Recipe.model_fields["experiment"].default
    found: dict[str, list[str]] = defaultdict(list)
    folder = folder or recipes_folder()
    for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue  # `recbench validate` reports broken recipes; here they declare nothing
        if not isinstance(raw, dict):
            continue
        datasets = [raw.get("dataset")] + list(((raw.get("grid") or {}).get("dataset")) or [])
        if any(isinstance(d, dict) and d.get("max_users") is not None for d in datasets):
            continue
        found[str(raw.get("experiment") or default)].append(path.name)
    return dict(sorted(found.items()))


def store_uri(given: str) -> str:
    """A tracking URI from what a user gives --store: a URI as is, a path to an sqlite file as sqlite:///,
    a folder as a file store (what MLflow makes of a bare path)."""
    if "://" in given or given.startswith("file:"):
        return given
    path = Path(given).expanduser().resolve()
    if path.suffix == ".db" or path.is_file():
        return f"sqlite:///{path}"
    return str(path)


def _open_store(uri: str):
    from recbench.tracking import Store

    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise Refusal(
            f"no MLflow store at {path.resolve()} (tracking URI {uri}). `recbench leaderboard` reads the "
            "runs `recbench run` recorded: run it in the directory where you ran `recbench run` (its "
            "mlflow.db is there), point MLFLOW_TRACKING_URI at that store, or name it with --store. "
            "Nothing was written."
        )
    return Store(uri)


def select_runs(
    experiments: list[str] | None, recipes: Path | None = None, stores: list[str] | None = None
) -> tuple[dict[str, str], list[StoredRun]]:
    """The experiments to read ({key: name}) and their FINISHED recbench runs, from every store.

    `stores` None: the tracking URI (MLFLOW_TRACKING_URI, else ./mlflow.db). Several stores (runs made on
    different machines) are read as one: an experiment's runs may be spread over them, and runs of the same
    settings and seed in two stores are one row (the later supersedes, as within a store). `experiments`
    None: those the recipes declare (:func:`recipe_experiments`); named experiments must each be in at least
    one store. Raises :class:`Refusal` (without creating a store) when a store is missing or nothing FINISHED
    is there."""
    from recbench.tracking import tracking_uri

    uris = list(dict.fromkeys(store_uri(s) for s in stores)) if stores else [tracking_uri()]
    opened = [_open_store(uri) for uri in uris]
    where = f"in {', '.join(uris)}"
    declared = None if experiments else recipe_experiments(recipes)
    chosen: dict[str, str] = {}
    runs: list[StoredRun] = []
    for store in opened:
        if experiments:
            mine = store.experiments(list(experiments), missing_ok=True)
        else:  # experiments with at least one recbench run that the recipes declare
            mine = {i: n for i, n in store.experiments().items() if n in declared}
        runs += store.finished_runs(mine)
        chosen.update({f"{store.uri}#{i}": n for i, n in mine.items()})

    def held() -> list[str]:  # experiments holding recbench runs, for the messages
        return sorted({n for store in opened for n in store.experiments().values()})

    if experiments:
        asked = ", ".join(f"'{e}'" for e in experiments)
        missing = [e for e in experiments if e not in chosen.values()]
        if missing:
            raise Refusal(
                f"no experiment named {', '.join(map(repr, missing))} {where}; experiments holding recbench "
                f"runs: {', '.join(held()) or '(none)'}. Nothing was written."
            )
    else:
        asked = (
            f"the experiments the recipes in {recipes or recipes_folder()} declare "
            f"({', '.join(f'{e!r}' for e in declared) or 'none'})"
        )
        if not chosen:
            raise Refusal(
                f"no recbench runs {where} in {asked}; experiments holding recbench runs: "
                f"{', '.join(f'{n!r}' for n in held()) or 'none'}. Run a recipe first (`recbench run "
                "recipes/morec_vs_idrec.yaml`), or choose experiments with --experiment NAME. Nothing was "
                "written."
            )
    if not runs:
        raise Refusal(
            f"no FINISHED recbench run {where} in {asked} (failed or interrupted runs are not ranked): "
            "finish a run with `recbench run RECIPE`, or choose other experiments with --experiment NAME. "
            "Nothing was written."
        )
    return chosen, runs


def write(board: Leaderboard, output: Path) -> None:
    """Write the markdown and its plots (removing plots of tables that no longer exist)."""
    folder = plots_dir_for(output)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {plot.file for plot in board.plots} | board.kept_plots
    for stale in folder.glob("*.png"):
        if stale.name not in wanted:
            stale.unlink()
    for plot in board.plots:
        draw(plot, folder / plot.file)
    output.write_text(board.markdown, encoding="utf-8")


def _comparable(markdown: str) -> str:
    """The markdown without the command in the 'Produced' line: the same board written with --output spelt
    another way (absolute, ./, a symlink) is still current."""
    return _COMMAND_IN_DATE_LINE.sub(r"\1`recbench leaderboard`", markdown)


def check(board: Leaderboard, output: Path) -> list[str]:
    """Differences between `output` (and its plots) and what the store produces now; empty when current."""
    if not output.is_file():
        return [f"{output} does not exist: run `recbench leaderboard` to write it"]
    problems = []
    current = output.read_text(encoding="utf-8")
    if _comparable(current) != _comparable(board.markdown):
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
