"""Mixed catalogues: several datasets trained as one (the source stage of a transfer run).

Users and items of different datasets never share an index: raw ids become ``<card>:<raw id>``, so an ID
table over a mixture has one row per (dataset, item) and a content encoder sees every item's own text. Each
dataset's text is rendered with its own card's template before mixing (cards name their fields differently);
the mixture's item table then carries one ``text`` column and the template ``{text}``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recbench.config import fingerprint
from recbench.data.content import ItemContent
from recbench.data.schema import SequenceData

MIXED_TEXT_TEMPLATE = "{text}"


def mix_datasets(parts: list[tuple[SequenceData, ItemContent]]) -> tuple[SequenceData, ItemContent]:
    """One SequenceData and ItemContent over the union of `parts` (in order); item indices are offset."""
    if len(parts) < 2:
        raise ValueError(f"a mixed catalogue needs at least two datasets, got {len(parts)}")
    user_ids: list[str] = []
    item_ids: list[str] = []
    sequences: list[np.ndarray] = []
    texts: list[str] = []
    images: list[str | None] = []
    any_text = all(content.template for _, content in parts)
    any_image = all("image_path" in data.items.columns for data, _ in parts)
    offset = 0
    stats: dict = {}
    for data, content in parts:
        user_ids += [f"{data.name}:{u}" for u in data.user_ids]
        item_ids += [f"{data.name}:{i}" for i in data.item_ids]
        sequences += [np.asarray(s, dtype=np.int64) + offset for s in data.sequences]  # 1..N -> offset+1..
        if any_text:
            texts += content.texts()
        if any_image:
            images += data.items["image_path"].to_list()
        offset += data.num_items
        stats[f"{data.name}:users"] = data.num_users
        stats[f"{data.name}:items"] = data.num_items
    columns: dict = {"item_id": item_ids}
    if any_text:
        columns["text"] = texts
    if any_image:
        columns["image_path"] = pl.Series(images, dtype=pl.String)
    name = "+".join(data.name for data, _ in parts)
    mixed = SequenceData(
        name=name,
        user_ids=user_ids,
        item_ids=item_ids,
        sequences=sequences,
        items=pl.DataFrame(columns),
        fingerprint=fingerprint([data.fingerprint for data, _ in parts]),
        stats={"mixed": name, **stats},
        presplit=False,
        timestamps=None,
    )
    content = ItemContent(
        name,
        mixed.items,
        MIXED_TEXT_TEMPLATE if any_text else None,
        missing_text="empty",
        missing_image=parts[0][1].missing_image,
    )
    return mixed, content
