"""Leaderboard plots: grouped bar charts with 95% intervals, drawn with matplotlib's Agg backend.

A plot is first a :class:`BarPlot` (plain data, hashed into ``data_hash``) and only then an image: the hash is
written into the PNG's metadata and into LEADERBOARD.md, so ``recbench leaderboard --check`` can tell a stale
or missing image from a current one without comparing pixels (which vary with matplotlib and fonts).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from recbench.config import fingerprint

PNG_HASH_KEY = "recbench-data"


@dataclass(frozen=True)
class Bar:
    series: str  # legend entry (e.g. the encoder)
    value: float | None  # None: no data (drawn as a gap)
    low: float | None = None  # interval bounds, when known
    high: float | None = None


@dataclass(frozen=True)
class BarPlot:
    file: str  # file name inside the plots folder
    title: str
    ylabel: str
    groups: tuple[tuple[str, tuple[Bar, ...]], ...]  # x-axis groups, each with its bars

    @property
    def data_hash(self) -> str:
        return fingerprint(
            {
                "title": self.title,
                "ylabel": self.ylabel,
                "groups": [
                    [g, [[b.series, _round(b.value), _round(b.low), _round(b.high)] for b in bars]]
                    for g, bars in self.groups
                ],
            }
        )


def _round(x: float | None) -> str | None:
    """10 significant digits: the hash ignores last-bit differences between BLAS builds."""
    return None if x is None else f"{x:.10g}"


def draw(plot: BarPlot, path: Path) -> None:
    """Write the plot as PNG, its data hash in the metadata."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(b.series for _, bars in plot.groups for b in bars))
    empty = [
        name
        for name in series
        if all(b.value is None for _, bars in plot.groups for b in bars if b.series == name)
    ]
    colours = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 1.1 * len(plot.groups) * max(1, len(series)) * 0.6), 3.8))
    for s_idx, name in enumerate(series):
        if name in empty:
            continue
        xs, ys, err_lo, err_hi = [], [], [], []
        for g_idx, (_, bars) in enumerate(plot.groups):
            bar = next((b for b in bars if b.series == name), None)
            if bar is None or bar.value is None:
                continue
            xs.append(g_idx - 0.4 + width * (s_idx + 0.5))
            ys.append(bar.value)
            has_ci = bar.low is not None and bar.high is not None
            err_lo.append(bar.value - bar.low if has_ci else 0.0)
            err_hi.append(bar.high - bar.value if has_ci else 0.0)
        ax.bar(xs, ys, width, label=name, color=colours(s_idx % 10), yerr=[err_lo, err_hi], capsize=3)
    ax.set_xticks(range(len(plot.groups)))
    ax.set_xticklabels([g for g, _ in plot.groups], rotation=20 if len(plot.groups) > 4 else 0, ha="right")
    ax.set_ylabel(plot.ylabel)
    title = plot.title + (f" (no data: {', '.join(empty)})" if empty else "")
    ax.set_title(textwrap.fill(title, 70), fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None, PNG_HASH_KEY: plot.data_hash})
    plt.close(fig)


def stored_hash(path: Path) -> str | None:
    """The data hash a PNG written by :func:`draw` carries (None if absent or unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get(PNG_HASH_KEY)
    except OSError:
        return None
