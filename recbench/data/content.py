"""Item content: text rendered from a template over item-table fields, and image paths.

A template is a Python format string over the item table's columns, e.g. ``"{title} ({year}). Genres:
{genres}"``. A missing value renders as an empty string, and the separators it leaves behind are tidied
(``"A. . C"`` -> ``"A. C"``); an item whose every field is missing has no text and is handled as its card
declares (``missing_text: empty`` -> "" , ``error`` -> a DataError naming it).

Images: an adapter option ``images`` maps item ids to local files (``image_path``, absolute), see
:func:`attach_images`.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recbench.data.schema import DataError

_SPACES = re.compile(r"\s+")
_EMPTY_SEGMENTS = re.compile(r"([.,;:|])(?:\s+[.,;:|](?=\s|$))+")  # "A. . C" (a field was empty) -> "A. C"
_LEADING_SEPARATORS = re.compile(r"^[\s.,;:|]+")


def tidy(text: str) -> str:
    """Collapse whitespace and the separators that empty fields leave behind; real punctuation is kept."""
    text = _SPACES.sub(" ", text).strip()
    text = _EMPTY_SEGMENTS.sub(r"\1", text)
    return _LEADING_SEPARATORS.sub("", text).strip()


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
        texts.append(tidy(template.format(**values)))
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


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def image_spec(option) -> dict:
    """Normalise the `images` adapter option: a folder name, or {folder, pattern(s), required}."""
    if isinstance(option, str):
        option = {"folder": option}
    if not isinstance(option, dict) or "folder" not in option:
        raise DataError(
            "adapter option `images` is a folder (e.g. `images: posters/images`) or a mapping "
            "{folder: ..., pattern: '{item_id}.jpg', required: false}"
        )
    unknown = set(option) - {"folder", "pattern", "patterns", "required"}
    if unknown:
        raise DataError(
            f"adapter option `images` has unknown keys {sorted(unknown)} (folder, pattern, required)"
        )
    patterns = option.get("patterns") or option.get("pattern") or ["{item_id}.jpg", "{item_id}.png"]
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    for pattern in patterns:
        if "{item_id}" not in pattern or "/" in pattern or "\\" in pattern:
            raise DataError(f"image pattern {pattern!r} must name one file in the folder using {{item_id}}")
    folder = str(option["folder"])
    if Path(folder).is_absolute() or ".." in Path(folder).parts:
        raise DataError(f"images folder {folder!r} must be a path inside the dataset folder")
    return {"folder": folder, "patterns": patterns, "required": bool(option.get("required", False))}


def image_folder(base: Path, option) -> Path:
    return base / image_spec(option)["folder"]


def attach_images(items: pl.DataFrame, base: Path, option, notes: dict) -> pl.DataFrame:
    """Add `image_path` (absolute) for every item whose file `folder/pattern` exists; others get null.

    The folder is listed once, so a catalogue of 10^5 items costs one directory scan. A declared folder that
    is absent is an error when `required`, else every item has no image (noted in the stats)."""
    spec = image_spec(option)
    folder = (base / spec["folder"]).resolve()
    if not folder.is_dir():
        if spec["required"]:
            raise DataError(f"images folder {folder} is missing (the data card declares it required)")
        notes["images_folder_missing"] = str(folder)
        return items.with_columns(pl.lit(None, dtype=pl.String).alias("image_path"))
    present = {entry.name for entry in os.scandir(folder) if entry.is_file()}
    paths = []
    for item_id in items["item_id"].to_list():
        found = None
        for pattern in spec["patterns"]:
            name = pattern.format(item_id=item_id)
            if name in present:
                found = str(folder / name)
                break
        paths.append(found)
    notes["items_with_image_file"] = sum(p is not None for p in paths)
    return items.with_columns(pl.Series("image_path", paths, dtype=pl.String))


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
    data_dir: str | None = None  # the dataset folder the recipe gave (files a card declares beside it)

    @classmethod
    def from_data(
        cls,
        data,
        template: str | None,
        missing_text: str = "empty",
        missing_image: str = "blank",
        data_dir: str | None = None,
    ) -> ItemContent:
        return cls(data.name, data.items, template, missing_text, missing_image, data_dir)

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
