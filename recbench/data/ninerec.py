"""NineRec/MicroLens-style folders: an interaction file, an item table, an optional folder of covers.

Generic: the card declares file names, layouts, columns and separators in the mirror's `options`, so a new
dataset of this family needs a card, not code::

    options:
      interactions:
        file: MicroLens-50k_pairs.csv
        layout: pairs              # pairs: one interaction a line | sequences: one user a line
        sep: comma                 # tab | comma | space (runs of whitespace) | pipe | semicolon | a char | auto
        header: true               # skip the first line
        columns: [user_id, item_id, timestamp]   # pairs: names in file order; `-` ignores a column
        item_sep: space            # sequences: between items (default: space)
      items:
        file: MicroLens-50k_titles.csv
        sep: comma
        header: true
        columns: [item_id, title]  # the last column takes the rest of the line (titles may hold the separator)
      images: {folder: covers, patterns: ["{item_id}.jpg", "{item_id}.png"]}   # optional

CRLF and LF line ends both work; files are read as UTF-8 with or without a byte-order mark (`encoding` in
either section changes that). Pairs may carry `timestamp` and `rating` columns (finite numbers: anything else,
empty included, makes the line bad under the card's `on_bad_line`); without a timestamp the file order is the
time order. A sequences line is `user<sep>item<item_sep>item...`, items in time order.
Comma-separated fields follow CSV quoting.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recbench.data.content import attach_images
from recbench.data.readers import (
    BadLines,
    first_data_line,
    iter_lines,
    number,
    require,
    separator,
    split_record,
)
from recbench.data.schema import DataError, RawData, canonical_interactions, canonical_items

_PAIR_COLUMNS = {"user_id", "item_id", "timestamp", "rating", "-"}


def _section(options: dict, key: str, required: bool = True) -> dict | None:
    section = options.get(key)
    if section is None and not required:
        return None
    if not isinstance(section, dict) or not section.get("file"):
        raise DataError(f"adapter option `{key}` needs at least `file` (see recbench.data.ninerec)")
    allowed = {"file", "layout", "sep", "header", "columns", "item_sep", "encoding"}
    unknown = set(section) - allowed
    if unknown:
        raise DataError(
            f"adapter option `{key}` has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    return section


def read_interactions(folder: Path, spec: dict, bad: BadLines) -> pl.DataFrame:
    path = require(folder, spec["file"])
    encoding = spec.get("encoding", "utf-8-sig")
    header = bool(spec.get("header", False))
    sep = separator(str(spec.get("sep", "auto")), path, first_data_line(path, encoding, header))
    layout = spec.get("layout", "pairs")
    if layout == "pairs":
        columns = list(spec.get("columns") or ["user_id", "item_id"])
        unknown = set(columns) - _PAIR_COLUMNS
        if unknown or not {"user_id", "item_id"} <= set(columns):
            raise DataError(
                f"interactions.columns {columns}: name user_id and item_id (and optionally timestamp, rating; "
                "`-` skips a column)"
            )
        return _pairs(path, sep, columns, header, encoding, bad)
    if layout == "sequences":
        item_sep = separator(str(spec.get("item_sep", "space")), path, None)
        return _sequences(path, sep, item_sep, header, encoding, bad)
    raise DataError(f"interactions.layout {layout!r}: use pairs or sequences")


def _pairs(
    path: Path, sep: str, columns: list[str], header: bool, encoding: str, bad: BadLines
) -> pl.DataFrame:
    data: dict[str, list] = {c: [] for c in columns if c != "-"}
    numeric = [c for c in ("timestamp", "rating") if c in data]
    for no, line in iter_lines(path, encoding, skip_header=header):
        fields = split_record(line, sep)
        if len(fields) != len(columns):
            bad.bad(
                path,
                no,
                f"expected {len(columns)} fields ({', '.join(columns)}) separated by {sep!r}, found {len(fields)}",
            )
            continue
        row = {c: f.strip() for c, f in zip(columns, fields) if c != "-"}
        if not row["user_id"] or not row["item_id"]:
            bad.bad(path, no, "empty user or item id")
            continue
        try:
            for c in numeric:
                row[c] = number(row[c], c)
        except ValueError as exc:
            bad.bad(path, no, str(exc))
            continue
        for c, v in row.items():
            data[c].append(v)
    return canonical_interactions(
        pl.DataFrame(data, schema={c: pl.Float64 if c in numeric else pl.String for c in data})
    )


def _sequences(
    path: Path, sep: str, item_sep: str, header: bool, encoding: str, bad: BadLines
) -> pl.DataFrame:
    users, items = [], []
    seen = set()
    for no, line in iter_lines(path, encoding, skip_header=header):
        parts = split_record(line, sep, maxsplit=1)
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            bad.bad(path, no, f"expected `user{sep}item{item_sep}item...`")
            continue
        user = parts[0].strip()
        if user in seen:
            bad.bad(path, no, f"user {user} has a second line (one line per user expected)")
            continue
        sequence = split_record(parts[1].strip(), item_sep)
        if not all(s.strip() for s in sequence):
            bad.bad(path, no, f"an empty item id between two {item_sep!r}")
            continue
        seen.add(user)
        users.extend([user] * len(sequence))
        items.extend(s.strip() for s in sequence)
    return canonical_interactions(
        pl.DataFrame(
            {"user_id": users, "item_id": items}, schema={"user_id": pl.String, "item_id": pl.String}
        )
    )


def read_items(folder: Path, spec: dict, bad: BadLines) -> pl.DataFrame:
    path = require(folder, spec["file"])
    encoding = spec.get("encoding", "utf-8-sig")
    header = bool(spec.get("header", False))
    sep = separator(str(spec.get("sep", "auto")), path, first_data_line(path, encoding, header))
    columns = list(spec.get("columns") or ["item_id", "title"])
    if columns[0] != "item_id" and "item_id" not in columns:
        raise DataError(f"items.columns {columns} must name item_id")
    rows = []
    for no, line in iter_lines(path, encoding, skip_header=header):
        fields = split_record(line, sep, maxsplit=len(columns) - 1)
        if len(fields) < len(columns) - 1 or len(fields) > len(columns):
            bad.bad(
                path,
                no,
                f"expected {len(columns)} fields ({', '.join(columns)}) separated by {sep!r}, found {len(fields)}",
            )
            continue
        fields = fields + [""] * (len(columns) - len(fields))  # a missing last text column is empty text
        row = {c: (f.strip() or None) for c, f in zip(columns, fields) if c != "-"}
        if not row["item_id"]:
            bad.bad(path, no, "empty item id")
            continue
        rows.append(row)
    names = [c for c in columns if c != "-"]
    frame = (
        pl.DataFrame(rows, schema=dict.fromkeys(names, pl.String), orient="row")
        if rows
        else pl.DataFrame(schema=dict.fromkeys(names, pl.String))
    )
    duplicated = frame.filter(pl.col("item_id").is_duplicated())
    if duplicated.height:
        raise DataError(f"{path}: item id {duplicated['item_id'][0]!r} has more than one row")
    return canonical_items(frame)


def load(folder: Path, options: dict, bad: BadLines) -> RawData:
    interactions = read_interactions(folder, _section(options, "interactions"), bad)
    items_spec = _section(options, "items", required=False)
    if items_spec is not None:
        items = read_items(folder, items_spec, bad)
    else:
        items = pl.DataFrame({"item_id": interactions["item_id"].unique(maintain_order=True)})
    notes: dict = {}
    if options.get("images"):
        items = attach_images(items, folder, options["images"], notes)
    return RawData(interactions, items, notes={**bad.notes(), **notes})
