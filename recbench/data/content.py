"""Item content: text rendered from a template over item-table fields, and image paths.

A template is a Python format string over the item table's columns, e.g. ``"{title} ({year}). Genres:
{genres}"``. A missing value renders as an empty string; an item whose every field is missing has no text
and is handled as its card declares (``missing_text: empty`` -> "" , ``error`` -> a DataError naming it).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import polars as pl

from recbench.data.schema import DataError

_SPACES = re.compile(r"\s+")


def template_fields(template: str) -> list[str]:
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    if not fields:
        raise DataError(f"text template {template!r} names no field (use e.g. '{{title}}')")
    return fields


def render_texts(items: pl.DataFrame, template: str, missing: str = "empty") -> list[str]:
    """One string per item row (index order). Missing values render empty; whitespace is collapsed."""
    fields = template_fields(template)
    unknown = [f for f in fields if f not in items.columns]
    if unknown:
        raise DataError(
            f"text template {template!r} uses {unknown}, not in the item table (columns: {items.columns})"
        )
    columns = {f: items[f].to_list() for f in fields}
    texts = []
    for row in range(items.height):
        values = {f: (columns[f][row] or "") for f in fields}
        if not any(str(v).strip() for v in values.values()):
            if missing == "error":
                raise DataError(
                    f"item {items['item_id'][row]!r} has no text ({', '.join(fields)} all missing); the card "
                    "declares missing_text: error"
                )
            texts.append("")
            continue
        text = template.format(**values)
        texts.append(_SPACES.sub(" ", text).strip())
    return texts


def has_text(items: pl.DataFrame, template: str | None) -> int:
    if not template:
        return 0
    fields = [f for f in template_fields(template) if f in items.columns]
    if not fields:
        return 0
    any_value = pl.any_horizontal(
        [pl.col(f).fill_null("").str.strip_chars().str.len_chars() > 0 for f in fields]
    )
    return int(items.select(any_value.sum()).item())


def has_image(items: pl.DataFrame) -> int:
    if "image_path" not in items.columns:
        return 0
    return int(items["image_path"].is_not_null().sum())


@dataclass
class ItemContent:
    """What content encoders see of the catalogue: item index i + 1 <-> row i of `items`."""

    dataset: str
    items: pl.DataFrame
    template: str | None
    missing_text: str = "empty"
    missing_image: str = "blank"

    @classmethod
    def from_data(
        cls, data, template: str | None, missing_text: str = "empty", missing_image: str = "blank"
    ) -> ItemContent:
        return cls(data.name, data.items, template, missing_text, missing_image)

    @property
    def num_items(self) -> int:
        return self.items.height

    def texts(self) -> list[str]:
        if not self.template:
            raise DataError(
                f"{self.dataset} has no text template: set dataset.text_template in the recipe (e.g. '{{title}}')"
            )
        return render_texts(self.items, self.template, self.missing_text)

    def image_paths(self) -> list[str | None]:
        if "image_path" not in self.items.columns:
            raise DataError(f"{self.dataset} has no item images (no image_path column); use a text encoder")
        paths = self.items["image_path"].to_list()
        if self.missing_image == "error":
            missing = [self.items["item_id"][i] for i, p in enumerate(paths) if not p]
            if missing:
                raise DataError(
                    f"{len(missing)} items of {self.dataset} have no image (e.g. {missing[0]!r}); the card declares "
                    "missing_image: error"
                )
        return paths
