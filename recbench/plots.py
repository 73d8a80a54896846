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
    lines: tuple[tuple[str, float], ...] = ()  # horizontal reference lines (e.g. the popularity floor)

    @property
    def data_hash(self) -> str:
        data = {
            "title": self.title,
            "ylabel": self.ylabel,
            "groups": [
                [g, [[b.series, _round(b.value), _round(b.low), _round(b.high)] for b in bars]]
                for g, bars in self.groups
            ],
        }
        if self.lines:
            data["lines"] = [[name, _round(value)] for name, value in self.lines]
        return fingerprint(data)


def _round(x: float | None) -> str | None:
    """10 significant digits: the hash ignores last-bit differences between BLAS builds."""
    return None if x is None else f"{x:.10g}"


LABEL_CHARS = 16  # x labels are wrapped to lines of about this many characters
TITLE_CHARS_PER_INCH = 11  # at the title's font size


def _label(text: str) -> str:
    """An x label wrapped at its own separators (' / ', '-', spaces), so long encoder names stack instead
    of running into their neighbours."""
    return textwrap.fill(text.replace(" / ", " /\u00a0"), LABEL_CHARS, break_on_hyphens=True)


def layout(plot: BarPlot) -> tuple[float, float, int]:
    """Figure width and height (inches) and x-label rotation: each group gets room for its bars and its
    wrapped label; past a readable width the figure stops growing and the labels turn 30 degrees."""
    series = len({b.series for _, bars in plot.groups for b in bars})
    per_group = max(1.35, 0.42 * series)
    width = max(6.0, 1.2 + per_group * max(1, len(plot.groups)))
    rotation = 0
    if width > 16.0:
        width, rotation = 16.0, 30
    lines = max((_label(g).count("\n") + 1 for g, _ in plot.groups), default=1)
    return width, 3.6 + 0.18 * lines, rotation


def draw(plot: BarPlot, path: Path) -> None:
    """Write the plot as PNG, its data hash in the metadata."""
    import matplotlib.pyplot as plt

    fig = render(plot)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(
        path,
        dpi=110,
        bbox_inches="tight",
        pad_inches=0.1,
        metadata={"Software": None, PNG_HASH_KEY: plot.data_hash},
    )
    plt.close(fig)


def render(plot: BarPlot):
    """The matplotlib figure of a plot (Agg backend); the caller closes it.

    Layout rules (a clipped title or a legend over the bars hides what the plot is for): the title is
    wrapped to the figure's width, the legend sits outside the axes on the right, x labels are wrapped (and
    rotated only when the figure would get too wide), and the file is cropped to what was drawn
    (``bbox_inches="tight"``), so nothing is cut off whatever the label lengths."""
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
    fig_w, fig_h, rotation = layout(plot)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    top = 0.0
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
            # a percentile interval can miss its own estimate on skewed data: never a negative error bar
            err_lo.append(max(0.0, bar.value - bar.low) if has_ci else 0.0)
            err_hi.append(max(0.0, bar.high - bar.value) if has_ci else 0.0)
            top = max(top, bar.high if has_ci else bar.value)
        ax.bar(xs, ys, width, label=name, color=colours(s_idx % 10), yerr=[err_lo, err_hi], capsize=3)
    for name, value in plot.lines:
        ax.axhline(value, color="0.35", linestyle="--", linewidth=1.2, label=name)
        top = max(top, value)
    ax.set_xticks(range(len(plot.groups)))
    ax.set_xticklabels(
        [_label(g) for g, _ in plot.groups],
        rotation=rotation,
        ha="right" if rotation else "center",
        rotation_mode="anchor",
        fontsize=8,
    )
    ax.set_xlim(-0.6, len(plot.groups) - 0.4)
    ax.set_ylabel(plot.ylabel)
    title = plot.title + (f" (no data: {', '.join(empty)})" if empty else "")
    ax.set_title(textwrap.fill(title, int(TITLE_CHARS_PER_INCH * (fig_w - 0.8))), fontsize=9)
    ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if len(series) > len(empty) or plot.lines:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def stored_hash(path: Path) -> str | None:
    """The data hash a PNG written by :func:`draw` carries (None if absent or unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get(PNG_HASH_KEY)
    except OSError:
        return None
