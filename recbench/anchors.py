"""Published figures beside recbench's: the table `recbench run` prints for a recipe's `published:` list.

Each figure names the row it is compared with and the ranking convention its source used; recbench's value
is the seed mean of that row under the same convention (``test/history-kept`` for history kept, ``test`` for
history excluded, recbench's default), printed with the other convention beside it and the ratio, so a
reader sees at once whether a gap is the model or the protocol.
"""

from __future__ import annotations

from statistics import mean
from typing import Any

from rich.table import Table

from recbench.config import PublishedFigure

GROUP_OF = {"history-kept": "test/history-kept", "history-excluded": "test"}


def matching(results: list[Any], fig: PublishedFigure) -> list[Any]:
    """The runs of the row a figure is compared with (one per seed)."""
    return [
        r
        for r in results
        if (r.dataset, r.encoder, r.backbone, r.split) == (fig.dataset, fig.encoder, fig.backbone, fig.split)
        and (fig.loss is None or r.protocol.get("loss") == fig.loss)
    ]


def anchor_rows(results: list[Any], figures: list[PublishedFigure]) -> list[dict[str, Any]]:
    """One dict per (figure, metric): published value, recbench's in the same and in the other convention."""
    rows = []
    for fig in figures:
        runs = matching(results, fig)
        other = "history-excluded" if fig.convention == "history-kept" else "history-kept"
        for metric, published in fig.metrics.items():
            same = [r.metrics.get(GROUP_OF[fig.convention], {}).get(metric) for r in runs]
            alt = [r.metrics.get(GROUP_OF[other], {}).get(metric) for r in runs]
            same = [v for v in same if v is not None]
            alt = [v for v in alt if v is not None]
            ours = mean(same) if same else None
            rows.append(
                {
                    "dataset": fig.dataset,
                    "row": f"{fig.encoder} x {fig.backbone}" + (f" ({fig.loss})" if fig.loss else ""),
                    "source": fig.source,
                    "protocol": fig.protocol,
                    "convention": fig.convention,
                    "metric": metric,
                    "published": published,
                    "recbench": ours,
                    "seeds": len(same),
                    "ratio": ours / published if ours is not None and published else None,
                    "other_convention": mean(alt) if alt else None,
                }
            )
    return rows


def anchors_table(results: list[Any], figures: list[PublishedFigure]) -> Table:
    table = Table(title="published figures beside recbench's (test, seed mean; same ranking convention)")
    for name in ("dataset", "row", "source", "metric", "published", "recbench", "ratio", "other conv."):
        table.add_column(name, justify="right" if name in ("published", "recbench", "ratio") else "left")
    for row in anchor_rows(results, figures):
        ours = (
            "not run"
            if row["recbench"] is None
            else f"{row['recbench']:.4f} ({row['seeds']} seed{'s' * (row['seeds'] > 1)})"
        )
        table.add_row(
            row["dataset"],
            row["row"],
            f"{row['source']}\n[dim]{row['protocol']}; {row['convention']}[/]",
            row["metric"],
            f"{row['published']:.4f}",
            ours,
            "" if row["ratio"] is None else f"{row['ratio']:.2f}",
            "" if row["other_convention"] is None else f"{row['other_convention']:.4f}",
        )
    return table
