"""Amazon review data (McAuley lab): the 2014, 2018 and 2023 releases, one adapter each.

Every release is a reviews file (one review a line: who, what, rating, when) and a metadata file (one item a
line). The adapters read both line by line (gzipped or not), under the card's bad-line policy, into the
canonical frames. Canonical item fields, the same for all three releases so one text template serves them:

    item_id      ASIN (2014, 2018) or parent ASIN (2023: reviews are keyed by `parent_asin`)
    title, brand (2023: `store`), categories (the category path, ", "-joined), description
    image_url    the first product image URL (2014 `imUrl`, 2018 `imageURLHighRes`/`imageURL`,
                 2023 the MAIN image's `large`); a URL, not a local file: `image_path` stays for local files
                 (adapter option `images`, a folder of `<item_id>.jpg`)

Formats. 2014 reviews are strict JSON lines, but 2014 metadata lines are Python literals (single quotes),
read with `ast.literal_eval` (never `eval`). 2018 and 2023 are strict JSON lines. HTML entities and tags in
2018 metadata text are unescaped/removed. Timestamps are Unix seconds (2023 milliseconds are divided by 1000).
A rating or timestamp that is not a finite number ("five", "yesterday", NaN, Infinity, true) makes its review
line bad (the card's `on_bad_line`); a review without a rating keeps a null rating.

Options: `reviews`, `meta` (file names; `x.json.gz` also finds an unpacked `x.json`), `require_title`
(drop the interactions of items without a title, as UniSRec does, counted), `images`.
Metadata lines of items that no review mentions are not parsed (the metadata files list far more items
than the 5-core reviews use); repeated metadata lines for one item (2018 has some) keep the first, counted.
"""

from __future__ import annotations

import ast
import html
import json
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

from recbench.data.content import attach_images
from recbench.data.readers import BadLines, iter_lines, number, require
from recbench.data.schema import DataError, RawData, canonical_interactions, canonical_items

ITEM_FIELDS = ["item_id", "title", "brand", "categories", "description", "image_url"]
_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


# --------------------------------------------------------------------------------------------- parsing


def json_object(line: str) -> dict:
    """A strict JSON object (a ValueError, i.e. a bad line, otherwise)."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, found {type(obj).__name__}")
    return obj


def literal_object(line: str) -> dict:
    """A Python-literal dict (2014 metadata), parsed safely: literals only, never code."""
    try:
        obj = ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError) as exc:
        raise ValueError(f"not a Python literal ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a dict literal, found {type(obj).__name__}")
    return obj


def _field(obj: dict, *names: str):
    for name in names:
        if obj.get(name) not in (None, ""):
            return obj[name]
    raise ValueError(f"missing field {' or '.join(repr(n) for n in names)}")


def clean_text(value) -> str | None:
    """Strings, or lists of strings (joined), with HTML entities unescaped and tags removed."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value if v not in (None, ""))
    text = _SPACES.sub(" ", _TAGS.sub(" ", html.unescape(str(value)))).strip()
    return text or None


def category_path(value) -> str | None:
    """2014 `categories` (list of lists), 2018 `category` and 2023 `categories` (lists): unique, in order."""
    if not value:
        return None
    flat = []
    for entry in value:
        flat.extend(entry if isinstance(entry, (list, tuple)) else [entry])
    seen: list[str] = []
    for name in (clean_text(v) for v in flat):
        if name and name not in seen:
            seen.append(name)
    return ", ".join(seen) or None


def _first_url(value) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, (list, tuple)):
        return next((v for v in value if isinstance(v, str) and v), None)
    return None


def _image_2023(images) -> str | None:
    """The MAIN image's `large` URL (else the first image with any URL)."""
    if not isinstance(images, (list, tuple)):
        return None
    entries = [e for e in images if isinstance(e, dict)]
    entries.sort(key=lambda e: e.get("variant") != "MAIN")  # stable: MAIN first
    for entry in entries:
        for key in ("large", "hi_res", "thumb"):
            if entry.get(key):
                return entry[key]
    return None


# --------------------------------------------------------------------------------------------- readers

Review = Callable[[dict], tuple[str, str, float | None, float | None]]
Meta = Callable[[dict], dict]


def read_reviews(path: Path, review: Review, bad: BadLines) -> pl.DataFrame:
    users, items, ratings, times = [], [], [], []
    for no, line in iter_lines(path):
        try:
            user, item, rating, ts = review(json_object(line))
        except (ValueError, TypeError, RecursionError) as exc:
            bad.bad(path, no, str(exc))
            continue
        users.append(str(user))
        items.append(str(item))
        ratings.append(rating)
        times.append(ts)
    frame = pl.DataFrame(
        {"user_id": users, "item_id": items, "rating": ratings, "timestamp": times},
        schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64, "timestamp": pl.Float64},
    )
    if frame.height == 0:
        raise DataError(f"{path} holds no reviews")
    return canonical_interactions(frame)


def read_meta(
    path: Path, parse: Callable[[str], dict], meta: Meta, wanted: set[str], bad: BadLines, key: str
) -> tuple[pl.DataFrame, int]:
    """Item rows for the `wanted` ids (first line per id); returns the frame and the repeated lines seen."""
    rows: dict[str, dict] = {}
    repeated = 0
    for no, line in iter_lines(path):
        probe = _probe_id(line, key)
        if probe is not None and probe not in wanted:
            continue  # an item no review mentions: not parsed
        try:
            row = meta(parse(line))
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            bad.bad(path, no, str(exc))
            continue
        if row["item_id"] not in wanted:
            continue
        if row["item_id"] in rows:
            repeated += 1
            continue
        rows[row["item_id"]] = row
    frame = pl.DataFrame(list(rows.values()), schema=dict.fromkeys(ITEM_FIELDS, pl.String), orient="row")
    return canonical_items(frame), repeated


_PROBES = {
    key: re.compile(r"""['"]""" + key + r"""['"]\s*:\s*['"]([^'"]+)['"]""") for key in ("asin", "parent_asin")
}


def _probe_id(line: str, key: str) -> str | None:
    """The item id of a metadata line without parsing it (None, i.e. parse it, unless exactly one match)."""
    matches = _PROBES[key].findall(line)
    return matches[0] if len(matches) == 1 else None


def _assemble(
    folder: Path,
    options: dict,
    bad: BadLines,
    review: Review,
    parse_meta: Callable[[str], dict],
    meta: Meta,
    key: str,
    defaults: tuple[str, str],
) -> RawData:
    reviews_path = require(folder, options.get("reviews", defaults[0]))
    meta_path = require(folder, options.get("meta", defaults[1]))
    interactions = read_reviews(reviews_path, review, bad)
    wanted = set(interactions["item_id"].unique().to_list())
    items, repeated = read_meta(meta_path, parse_meta, meta, wanted, bad, key)
    notes: dict = {"metadata_lines_repeated": repeated}
    if options.get("require_title"):
        titled = items.filter(pl.col("title").fill_null("").str.strip_chars() != "")["item_id"]
        before = interactions.height
        interactions = interactions.filter(pl.col("item_id").is_in(titled.implode()))
        notes["interactions_dropped_no_title"] = before - interactions.height
        items = items.filter(pl.col("item_id").is_in(titled.implode()))
    if options.get("images"):
        items = attach_images(items, folder, options["images"], notes)
    return RawData(interactions, items, notes={**bad.notes(), **notes})


# --------------------------------------------------------------------------------------------- releases


def _review_2014_2018(obj: dict) -> tuple[str, str, float | None, float | None]:
    user = _field(obj, "reviewerID")
    item = _field(obj, "asin")
    rating = number(obj["overall"], "field 'overall'") if obj.get("overall") is not None else None
    ts = number(_field(obj, "unixReviewTime"), "field 'unixReviewTime'")
    return user, item, rating, ts


def _meta_2014(obj: dict) -> dict:
    return {
        "item_id": str(_field(obj, "asin")),
        "title": clean_text(obj.get("title")),
        "brand": clean_text(obj.get("brand")),
        "categories": category_path(obj.get("categories")),
        "description": clean_text(obj.get("description")),
        "image_url": _first_url(obj.get("imUrl")),
    }


def _meta_2018(obj: dict) -> dict:
    return {
        "item_id": str(_field(obj, "asin")),
        "title": clean_text(obj.get("title")),
        "brand": clean_text(obj.get("brand")),
        "categories": category_path(obj.get("category")),
        "description": clean_text(obj.get("description")),
        "image_url": _first_url(obj.get("imageURLHighRes")) or _first_url(obj.get("imageURL")),
    }


def _review_2023(obj: dict) -> tuple[str, str, float | None, float | None]:
    user = _field(obj, "user_id")
    item = _field(obj, "parent_asin", "asin")
    rating = number(obj["rating"], "field 'rating'") if obj.get("rating") is not None else None
    ts = number(_field(obj, "timestamp"), "field 'timestamp'") / 1000.0  # milliseconds -> seconds
    return user, item, rating, ts


def _meta_2023(obj: dict) -> dict:
    return {
        "item_id": str(_field(obj, "parent_asin", "asin")),
        "title": clean_text(obj.get("title")),
        "brand": clean_text(obj.get("store")),
        "categories": category_path(obj.get("categories")) or clean_text(obj.get("main_category")),
        "description": clean_text(obj.get("description")),
        "image_url": _image_2023(obj.get("images")),
    }


def load_2014(folder: Path, options: dict, bad: BadLines) -> RawData:
    """`reviews_<Cat>_5.json.gz` (JSON lines) + `meta_<Cat>.json.gz` (Python-literal lines)."""
    defaults = ("reviews.json.gz", "meta.json.gz")
    return _assemble(folder, options, bad, _review_2014_2018, literal_object, _meta_2014, "asin", defaults)


def load_2018(folder: Path, options: dict, bad: BadLines) -> RawData:
    """`<Cat>_5.json.gz` + `meta_<Cat>.json.gz`, both strict JSON lines."""
    defaults = ("reviews.json.gz", "meta.json.gz")
    return _assemble(folder, options, bad, _review_2014_2018, json_object, _meta_2018, "asin", defaults)


def load_2023(folder: Path, options: dict, bad: BadLines) -> RawData:
    """`<Cat>.jsonl(.gz)` + `meta_<Cat>.jsonl(.gz)`, strict JSON lines; items keyed by `parent_asin`."""
    defaults = ("reviews.jsonl.gz", "meta.jsonl.gz")
    return _assemble(folder, options, bad, _review_2023, json_object, _meta_2023, "parent_asin", defaults)
