"""`recbench data stats`: what a dataset looks like after the card's preprocessing, checked against the card."""

from __future__ import annotations

import numpy as np
from rich.table import Table

from recbench.config import ColdItemSplit, DatasetSection, LeaveOneOutSplit
from recbench.data.cards import get_card
from recbench.data.content import has_image, has_text
from recbench.data.loader import load_dataset
from recbench.data.splits import make_split


def dataset_statistics(name: str, data_dir: str | None = None) -> dict:
    card = get_card(name)
    data = load_dataset(DatasetSection(name=name, data_dir=data_dir))
    lengths = np.array([len(s) for s in data.sequences])
    stats = {
        "dataset": name,
        "users": data.num_users,
        "items": data.num_items,
        "interactions": data.num_interactions,
        "density": data.num_interactions / max(1, data.num_users * data.num_items),
        "seq_len_min": int(lengths.min()),
        "seq_len_median": float(np.median(lengths)),
        "seq_len_mean": float(lengths.mean()),
        "seq_len_p90": float(np.percentile(lengths, 90)),
        "seq_len_max": int(lengths.max()),
        "timestamp_ties": data.stats.get("timestamp_ties", 0),
        "items_with_text": has_text(data.items, card.text_template),
        "items_with_image": has_image(data.items),
        "duplicates_removed": data.stats.get("duplicates_removed", 0),
    }
    stats.update({k: v for k, v in data.stats.items() if k.startswith("bad_lines_skipped")})
    splits = [LeaveOneOutSplit(), ColdItemSplit()]
    for section in splits:
        split = make_split(data, section)
        counts = split.train_item_counts
        label = section.kind
        stats[f"{label}: items never in training"] = int((counts[1:] == 0).sum())
        stats[f"{label}: test targets never in training"] = int((counts[split.test.targets] == 0).sum())
    stats["expected"] = {k: v for k, v in card.expected.model_dump().items() if v is not None}
    stats["matches_card"] = all(stats.get(k) == v for k, v in stats["expected"].items())
    return stats


def stats_table(stats: dict) -> Table:
    table = Table(title=f"{stats['dataset']} statistics")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_column("card expects", justify="right")
    expected = stats.get("expected", {})
    for key, value in stats.items():
        if key in ("dataset", "expected", "matches_card"):
            continue
        shown = (
            f"{value:.5f}"
            if isinstance(value, float) and value < 1
            else f"{value:,.2f}"
            if isinstance(value, float)
            else f"{value:,}"
        )
        want = expected.get(key)
        mark = "" if want is None else (f"{want:,}" if want == value else f"[red]{want:,}[/]")
        table.add_row(key, shown, mark)
    return table
