"""RecBole atomic files (`<name>.inter`, `<name>.item`): a generic input format.

Each file is TAB-separated UTF-8 with a typed header (`user_id:token  item_id:token  rating:float ...`).
The card maps RecBole field names to canonical ones (`inter_fields`/`item_fields`, RecBole name -> canonical
name, e.g. `movie_title: title`); unmapped item fields keep their RecBole names.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recbench.data.readers import BadLines, iter_lines, number, parse_lines, split_fields
from recbench.data.schema import DataError, RawData, canonical_interactions, canonical_items

_INTER_DEFAULTS = {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp", "rating": "rating"}


def read_atomic(path: Path, bad: BadLines, numeric: set[str] = frozenset()) -> pl.DataFrame:
    """One atomic file as a frame, columns named without their `:type` suffix: strings, but the columns named
    in `numeric` become floats here, line by line, so a value that is not a finite number is a
    bad line under the card's policy (never a null that moves the row in time order)."""
    header = next(iter_lines(path), None)
    if header is None:
        raise DataError(f"{path} is empty")
    names = [h.split(":", 1)[0] for h in header[1].split("\t")]
    checked = [(i, name) for i, name in enumerate(names) if name in numeric]

    def row(line: str) -> list:
        fields: list = split_fields(line, "\t", n=len(names))
        for i, name in checked:
            fields[i] = number(fields[i], name)
        return fields

    rows = list(parse_lines(path, row, bad, skip_header=True))
    schema = {name: pl.Float64 if name in numeric else pl.String for name in names}
    return (
        pl.DataFrame(rows, schema=schema, orient="row")
        if rows
        else pl.DataFrame(schema=dict.fromkeys(names, pl.String))
    )


def load(folder: Path, options: dict, bad: BadLines) -> RawData:
    prefix = options.get("prefix") or folder.name
    inter_map = {**_INTER_DEFAULTS, **options.get("inter_fields", {})}
    item_map = {"item_id": "item_id", **options.get("item_fields", {})}
    numeric = {src for src, dst in inter_map.items() if dst in ("timestamp", "rating")}
    inter = read_atomic(folder / f"{prefix}.inter", bad, numeric)
    rename = {src: dst for src, dst in inter_map.items() if src in inter.columns}
    interactions = canonical_interactions(inter.select(list(rename)).rename(rename))
    item_path = folder / f"{prefix}.item"
    if item_path.is_file():
        item = read_atomic(item_path, bad)
        item = item.rename({src: dst for src, dst in item_map.items() if src in item.columns})
        items = canonical_items(item)
    else:
        items = pl.DataFrame({"item_id": interactions["item_id"].unique(maintain_order=True)})
    return RawData(interactions=interactions, items=items, notes=bad.notes())
