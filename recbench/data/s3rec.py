"""S3-Rec sequence files (the Amazon 2014 Beauty / Sports / Toys benchmarks of S3-Rec, TIGER, LC-Rec, ...).

One user a line, whitespace-separated integers: ``user_id item_id item_id ...``, items in time order. There
are no timestamps: **the order on the line is the time order**, so leave-one-out on the loaded sequences holds
out exactly the last item of each line as test and the one before it as validation, as S3-Rec and TIGER do
(the cards say ``presplit: true``: filtering, which could change those last items, is refused). The files are
already 5-core; nothing is re-filtered.

Options (in the card's mirror)::

    sequences: s3rec/Beauty.txt             # the sequence file (may be gzipped)
    text:                                   # optional: an item table joined on the S3-Rec item id
      file: text/Beauty_s3rec_id2asin_text.tsv
      sep: tab                              # default tab
      header: true                          # default true: the first line names the columns
      columns: [item_id, asin, title]       # the last column takes the rest of the line
    min_items: 5                            # a line with fewer items is a bad line (default 2)
    semantic_ids: {file: ..., id_shift: 1}  # not read here; see recbench.data.semantic_ids

Malformed lines (a non-integer id, an empty line between lines, a line with fewer than ``min_items`` items, a
user's second line, a text row with a bad or repeated item id) follow the card's ``on_bad_line``: an error naming file and line, or skipped and
counted. Ids are integers compared by value (``007`` and ``7`` are the same item), kept as their decimal text.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recbench.data.readers import BadLines, iter_lines, require, separator, split_record
from recbench.data.schema import DataError, RawData, canonical_interactions, canonical_items
from recbench.data.semantic_ids import semantic_id_spec

OPTIONS = {"sequences", "text", "min_items", "semantic_ids"}
TEXT_OPTIONS = {"file", "sep", "header", "columns", "encoding"}


def integer_id(token: str, what: str) -> str:
    """The decimal text of an integer id; a ValueError (a bad line) naming `what` when it is not one."""
    token = token.strip()
    if not (token.isascii() and token.isdigit()):
        raise ValueError(f"{what} {token!r} is not a non-negative integer")
    return str(int(token))


def check_options(options: dict, allowed: set[str], where: str) -> None:
    unknown = set(options) - allowed
    if unknown:
        raise DataError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def min_items(options: dict, default: int = 2) -> int:
    value = options.get("min_items", default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DataError(f"adapter option min_items must be a positive integer, got {value!r}")
    return value


def lines(path: Path, bad: BadLines, encoding: str = "utf-8", skip_header: bool = False):
    """`iter_lines`, but a blank line between two lines is a bad line: in a one-record-a-line file it is a
    record lost (S3-Rec's user ids are their line numbers). Blank lines at the end of the file are ignored."""
    last = 1 if skip_header else 0
    for no, line in iter_lines(path, encoding, skip_header):
        for blank in range(last + 1, no):
            bad.bad(path, blank, "empty line (one record a line expected)")
        last = no
        yield no, line


def read_sequences(path: Path, bad: BadLines, least: int) -> pl.DataFrame:
    """Canonical interactions (no timestamps) in file order: one line per user, items in time order."""
    users: list[str] = []
    items: list[str] = []
    seen: dict[str, int] = {}
    for no, line in lines(path, bad):
        tokens = line.split()
        try:
            user = integer_id(tokens[0], "user id")
            sequence = [integer_id(t, f"item id (position {k})") for k, t in enumerate(tokens[1:], start=1)]
        except ValueError as exc:
            bad.bad(path, no, str(exc))
            continue
        if len(sequence) < least:
            bad.bad(
                path,
                no,
                f"user {user} has {len(sequence)} item(s), fewer than the adapter option min_items = {least} "
                "(expected `user item item ...`)",
            )
            continue
        if user in seen:
            bad.bad(path, no, f"user {user} already has line {seen[user]} (one line per user expected)")
            continue
        seen[user] = no
        users.extend([user] * len(sequence))
        items.extend(sequence)
    if not users:
        raise DataError(f"{path}: no user sequence could be read (expected `user item item ...` lines)")
    return canonical_interactions(
        pl.DataFrame(
            {"user_id": users, "item_id": items}, schema={"user_id": pl.String, "item_id": pl.String}
        )
    )


def read_text_table(folder: Path, spec: dict, bad: BadLines) -> pl.DataFrame:
    """The item table: one row per integer item id; empty fields are null, a repeated id is a bad line."""
    if not isinstance(spec, dict) or not spec.get("file"):
        raise DataError("adapter option `text` needs at least `file` (see recbench.data.s3rec)")
    check_options(spec, TEXT_OPTIONS, "adapter option `text`")
    path = require(folder, spec["file"])
    encoding = spec.get("encoding", "utf-8-sig")
    header = bool(spec.get("header", True))
    sep = separator(str(spec.get("sep", "tab")), path)
    columns = list(spec.get("columns") or ["item_id", "title"])
    if "item_id" not in columns or len(set(columns)) != len(columns):
        raise DataError(f"text.columns {columns}: name item_id once (and the text columns, each once)")
    rows: list[dict] = []
    first_line: dict[str, int] = {}
    for no, line in lines(path, bad, encoding, skip_header=header):
        fields = split_record(line, sep, maxsplit=len(columns) - 1)
        if not len(columns) - 1 <= len(fields) <= len(columns):
            bad.bad(path, no, f"expected {len(columns)} fields ({', '.join(columns)}), found {len(fields)}")
            continue
        fields += [""] * (len(columns) - len(fields))  # a missing last column is an empty text
        row = {c: (f.strip() or None) for c, f in zip(columns, fields) if c != "-"}
        try:
            row["item_id"] = integer_id(row["item_id"] or "", "item id")
        except ValueError as exc:
            bad.bad(path, no, str(exc))
            continue
        if row["item_id"] in first_line:
            bad.bad(path, no, f"item {row['item_id']} already has line {first_line[row['item_id']]}")
            continue
        first_line[row["item_id"]] = no
        rows.append(row)
    names = [c for c in columns if c != "-"]
    frame = (
        pl.DataFrame(rows, schema=dict.fromkeys(names, pl.String), orient="row")
        if rows
        else pl.DataFrame(schema=dict.fromkeys(names, pl.String))
    )
    return canonical_items(frame)


def load(folder: Path, options: dict, bad: BadLines) -> RawData:
    check_options(options, OPTIONS, "s3rec adapter options")
    semantic_id_spec(options)  # declared for a future encoder; a malformed declaration fails now
    if not options.get("sequences"):
        raise DataError("the s3rec adapter needs the option `sequences` (the sequence file, e.g. Beauty.txt)")
    interactions = read_sequences(require(folder, options["sequences"]), bad, min_items(options))
    notes: dict = {}
    if options.get("text") is not None:
        items = read_text_table(folder, options["text"], bad)
        used = set(interactions["item_id"].unique().to_list())
        unused = items.height - int(items["item_id"].is_in(list(used)).sum())
        if unused:
            notes["text_rows_without_interactions"] = unused
    else:
        items = pl.DataFrame({"item_id": interactions["item_id"].unique(maintain_order=True)})
    return RawData(interactions, items, notes={**bad.notes(), **notes}, presplit=True)
