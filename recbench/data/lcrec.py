"""The LC-Rec JSON layout (shared by LC-Rec, LETTER, MiniOneRec, IBA and other semantic-ID codebases).

For a dataset prefix ``<P>`` (the card's option ``prefix``), a folder holds::

    <P>.inter.json   {"user_id": [item_id, item_id, ...]}         each user's items in time order (integers)
    <P>.item.json    {"item_id": {"title": ..., "description": ..., "brand": ..., "categories": ...}}
    <P>.index.json   {"item_id": ["<a_189>", "<b_211>", ...]}     semantic codes (not read here: see
                                                                  recbench.data.semantic_ids)

There are no timestamps: the list order is the time order, and these codebases split each list
leave-one-out (last item = test, second to last = validation), which is what recbench's leave-one-out does
on the loaded sequences; the card says ``presplit: true`` so no filtering can change those last items.

Options: ``prefix`` (default: the folder's name), ``min_items`` (a list with fewer items is a bad entry;
default 2), ``semantic_ids`` (where the codes live, for a future encoder). Item fields that are strings or
numbers are kept as text columns; a list of strings is joined with ", "; empty strings are missing values.

Malformed entries (a non-integer item id, a list with fewer than ``min_items`` items, an item whose fields are
not an object) follow the card's ``on_bad_line``: an error naming the file and the user or item key, or
skipped and counted. A file that is not JSON, or a JSON object with a repeated key (which value was meant
cannot be known), is always an error naming the file (and line and column).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from recbench.data.readers import BadLines, require
from recbench.data.s3rec import check_options, integer_id, min_items
from recbench.data.schema import DataError, RawData, canonical_interactions, canonical_items
from recbench.data.semantic_ids import semantic_id_spec

OPTIONS = {"prefix", "min_items", "semantic_ids"}


def bad_entry(bad: BadLines, path: Path, where: str, why: str) -> None:
    """The bad-line policy for an entry of a JSON file, located by its key (a JSON file may be one line)."""
    if bad.policy == "error":
        raise DataError(
            f"{path}, {where}: {why}. Fix the file, or set `on_bad_line: skip` in the data card to skip and "
            "count such entries."
        )
    bad.skipped[path.name] = bad.skipped.get(path.name, 0) + 1
    bad.examples.setdefault(path.name, f"{where}: {why}")


def _no_repeated_keys(path: Path):
    def hook(pairs: list[tuple[str, object]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise DataError(
                    f"{path}: the key {key!r} appears twice in one JSON object; which value is meant cannot "
                    "be known. Remove one."
                )
            out[key] = value
        return out

    return hook


def read_json_object(path: Path) -> dict:
    """A JSON file whose top level is an object; any other content is an error naming file, line and column."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh, object_pairs_hook=_no_repeated_keys(path))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object at the top level, found {type(data).__name__}")
    return data


def _item_token(value: object, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{what} {value!r} is not an integer")
    return integer_id(str(value), what)


def read_inter(path: Path, bad: BadLines, least: int) -> pl.DataFrame:
    users: list[str] = []
    items: list[str] = []
    seen: set[str] = set()
    for user, sequence in read_json_object(path).items():
        where = f"user {user!r}"
        if not user.strip() or user.strip() in seen:
            bad_entry(
                bad, path, where, "empty user id" if not user.strip() else "a second list for this user"
            )
            continue
        seen.add(user.strip())
        if not isinstance(sequence, list):
            bad_entry(bad, path, where, f"expected a list of item ids, found {type(sequence).__name__}")
            continue
        try:
            tokens = [_item_token(v, f"item id at position {k}") for k, v in enumerate(sequence)]
        except ValueError as exc:
            bad_entry(bad, path, where, str(exc))
            continue
        if len(tokens) < least:
            bad_entry(
                bad, path, where, f"{len(tokens)} item(s), fewer than the adapter option min_items = {least}"
            )
            continue
        users.extend([user.strip()] * len(tokens))
        items.extend(tokens)
    if not users:
        raise DataError(f"{path}: no user sequence could be read (expected {{user: [item, ...]}})")
    return canonical_interactions(
        pl.DataFrame(
            {"user_id": users, "item_id": items}, schema={"user_id": pl.String, "item_id": pl.String}
        )
    )


def _field_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not text")
    if isinstance(value, (str, int, float)):
        return str(value).strip() or None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(v.strip() for v in value if v.strip()) or None
    raise ValueError(f"{type(value).__name__} is not text (expected a string, a number or a list of strings)")


def read_items(path: Path, bad: BadLines) -> pl.DataFrame:
    rows: list[dict] = []
    fields: dict[str, None] = {}
    for key, record in read_json_object(path).items():
        where = f"item {key!r}"
        try:
            item_id = integer_id(key, "item id")
            if not isinstance(record, dict):
                raise ValueError(f"expected an object of fields, found {type(record).__name__}")
            row = {"item_id": item_id}
            for name, value in record.items():
                if name == "item_id":
                    continue  # the key is the id
                try:
                    row[name] = _field_text(value)
                except ValueError as exc:
                    raise ValueError(f"field {name!r}: {exc}") from None
        except ValueError as exc:
            bad_entry(bad, path, where, str(exc))
            continue
        fields.update(dict.fromkeys(k for k in row if k != "item_id"))
        rows.append(row)
    schema = dict.fromkeys(["item_id", *fields], pl.String)
    frame = (
        pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema, orient="row")
        if rows
        else pl.DataFrame(schema=schema)
    )
    duplicated = frame.filter(pl.col("item_id").is_duplicated())
    if duplicated.height:  # keys "7" and "07": one item twice
        raise DataError(f"{path}: item {duplicated['item_id'][0]} has more than one entry")
    return canonical_items(frame)


def load(folder: Path, options: dict, bad: BadLines) -> RawData:
    check_options(options, OPTIONS, "lcrec adapter options")
    semantic_id_spec(options)  # declared for a future encoder; a malformed declaration fails now
    prefix = options.get("prefix") or folder.name
    interactions = read_inter(require(folder, f"{prefix}.inter.json"), bad, min_items(options))
    items = read_items(require(folder, f"{prefix}.item.json"), bad)
    used = set(interactions["item_id"].unique().to_list())
    notes: dict = {}
    unused = items.height - int(items["item_id"].is_in(list(used)).sum())
    if unused:
        notes["item_entries_without_interactions"] = unused
    return RawData(interactions, items, notes={**bad.notes(), **notes}, presplit=True)
