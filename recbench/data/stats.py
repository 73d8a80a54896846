"""`recbench data stats`: what a dataset looks like after the card's preprocessing, checked against the card.

Counts (users, items, interactions, density), the sequence-length distribution, timestamp ties, content
coverage (items with text under the card's template, items with a local image), what the adapter skipped or
repaired, and for each split that applies (leave-one-out; item cold-start; global temporal when there are
timestamps and the source does not fix its own split) how many items and targets never occur in training.
"""

from __future__ import annotations

import numpy as np
from rich.table import Table

from recbench.config import ColdItemSplit, DatasetSection, LeaveOneOutSplit, TemporalSplit
from recbench.data.cards import get_card
from recbench.data.content import has_image, has_text
from recbench.data.loader import load_dataset
from recbench.data.schema import DataError, SequenceData
from recbench.data.splits import make_split

LENGTH_BINS = [(1, 2), (3, 4), (5, 9), (10, 19), (20, 49), (50, 99), (100, None)]
_NOTE_PREFIXES = (
    "bad_lines_skipped",
    "interactions_dropped",
    "metadata_lines",
    "images_folder",
    "local_files",
    "checksum",
)


def dataset_statistics(name: str, data_dir: str | None = None) -> dict:
    card = get_card(name)
    data = load_dataset(DatasetSection(name=name, data_dir=data_dir))
    stats = sequence_statistics(data)
    stats = {"dataset": card.name, **stats}
    stats.update(
        timestamp_ties=int(data.stats.get("timestamp_ties", 0)),
        items_with_text=has_text(data.items, card.text_template),
        items_with_image=has_image(data.items),
        duplicates_removed=int(data.stats.get("duplicates_removed", 0)),
        items_without_metadata=int(data.stats.get("items_without_metadata", 0)),
    )
    stats.update({k: v for k, v in data.stats.items() if k.startswith(_NOTE_PREFIXES)})
    stats.update(cold_statistics(data))
    stats["expected"] = {k: v for k, v in card.expected.model_dump().items() if v is not None}
    stats["matches_card"] = all(stats.get(k) == v for k, v in stats["expected"].items())
    return stats


def sequence_statistics(data: SequenceData) -> dict:
    lengths = np.array([len(s) for s in data.sequences])
    out = {
        "users": data.num_users,
        "items": data.num_items,
        "interactions": data.num_interactions,
        "density": data.num_interactions / max(1, data.num_users * data.num_items),
        "seq_len_min": int(lengths.min()),
        "seq_len_median": float(np.median(lengths)),
        "seq_len_mean": float(lengths.mean()),
        "seq_len_p90": float(np.percentile(lengths, 90)),
        "seq_len_max": int(lengths.max()),
    }
    for lo, hi in LENGTH_BINS:
        count = int(((lengths >= lo) & (lengths <= (hi if hi is not None else lengths.max()))).sum())
        out[f"users with {lo}-{hi} items" if hi is not None else f"users with {lo}+ items"] = count
    return out


def applicable_splits(data: SequenceData) -> list:
    splits = [LeaveOneOutSplit(), ColdItemSplit()]
    if data.timestamps is not None and not data.presplit:
        splits.append(TemporalSplit())
    return splits


def cold_statistics(data: SequenceData) -> dict:
    """Per split: items never in training, and validation/test targets never in training."""
    out: dict = {}
    for section in applicable_splits(data):
        label = section.kind
        try:
            split = make_split(data, section)
        except DataError as exc:
            out[f"{label}: not applicable"] = str(exc)
            continue
        counts = split.train_item_counts
        out[f"{label}: items never in training"] = int((counts[1:] == 0).sum())
        out[f"{label}: valid targets never in training"] = int((counts[split.valid.targets] == 0).sum())
        out[f"{label}: test targets never in training"] = int((counts[split.test.targets] == 0).sum())
    return out


def stats_table(stats: dict) -> Table:
    table = Table(title=f"{stats['dataset']} statistics")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_column("card expects", justify="right")
    expected = stats.get("expected", {})
    for key, value in stats.items():
        if key in ("dataset", "expected", "matches_card"):
            continue
        if isinstance(value, float):
            shown = f"{value:.5f}" if value < 1 else f"{value:,.2f}"
        elif isinstance(value, int):
            shown = f"{value:,}"
        else:
            shown = str(value)
        want = expected.get(key)
        mark = "" if want is None else (f"{want:,}" if want == value else f"[red]{want:,}[/]")
        table.add_row(key, shown, mark)
    if expected:
        verdict = (
            "[green]matches the card[/]" if stats.get("matches_card") else "[red]differs from the card[/]"
        )
        table.caption = verdict
    return table
