"""Preprocessing: rating threshold, de-duplication, k-core, tie rule, index assignment."""

import polars as pl
import pytest

from recbench.data.preprocess import Preprocessing, k_core, preprocess
from recbench.data.schema import DataError, RawData, canonical_interactions


def _raw(rows):
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "rating"], orient="row")
    items = pl.DataFrame({"item_id": sorted({r[1] for r in rows}), "title": "t"})
    return RawData(canonical_interactions(df), items)


ROWS = [
    ("u1", "10", 5.0, 4.0),
    ("u1", "11", 3.0, 2.0),
    ("u1", "12", 3.0, 5.0),  # tied with the row above: file order keeps 11 before 12
    ("u2", "10", 1.0, 5.0),
    ("u2", "10", 2.0, 1.0),  # duplicate pair
    ("u2", "12", 4.0, 3.0),
]


def test_order_ties_and_index_assignment():
    data = preprocess(_raw(ROWS), Preprocessing(dedup="none"), "t", "fp")
    assert data.item_ids == ["10", "11", "12"]  # numeric ids sorted numerically -> indices 1..3
    assert data.user_ids == ["u1", "u2"]
    assert data.sequences[0].tolist() == [2, 3, 1]  # 11 (t=3), 12 (t=3, later in file), 10 (t=5)
    assert data.stats["timestamp_ties"] == 1
    by_item = preprocess(_raw(ROWS), Preprocessing(dedup="none", ties="item_id"), "t", "fp")
    assert by_item.sequences[0].tolist() == [2, 3, 1]
    rev = [ROWS[0], ROWS[2], ROWS[1]] + ROWS[3:]
    assert preprocess(_raw(rev), Preprocessing(dedup="none"), "t", "fp").sequences[0].tolist() == [3, 2, 1]
    assert preprocess(_raw(rev), Preprocessing(dedup="none", ties="item_id"), "t", "fp").sequences[
        0
    ].tolist() == [2, 3, 1]


def test_dedup_keeps_first_or_last_occurrence_in_time():
    first = preprocess(_raw(ROWS), Preprocessing(dedup="first"), "t", "fp")
    assert first.sequences[1].tolist() == [1, 3]  # 10@1, 12@4
    assert first.stats["duplicates_removed"] == 1
    last = preprocess(_raw(ROWS), Preprocessing(dedup="last"), "t", "fp")
    assert last.sequences[1].tolist() == [1, 3]  # 10@2, 12@4


def test_rating_threshold():
    data = preprocess(_raw(ROWS), Preprocessing(min_rating=4, dedup="none"), "t", "fp")
    assert data.num_interactions == 3  # ratings 4, 5, 5
    with pytest.raises(DataError, match="no interactions"):
        preprocess(_raw(ROWS), Preprocessing(min_rating=6), "t", "fp")


def test_k_core_is_iterative():
    rows = [
        ("a", "1", 1.0, 1.0),
        ("a", "2", 2.0, 1.0),
        ("b", "1", 1.0, 1.0),
        ("b", "2", 2.0, 1.0),
        ("c", "3", 1.0, 1.0),
        ("c", "1", 2.0, 1.0),
    ]
    df = canonical_interactions(
        pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "rating"], orient="row")
    )
    out, rounds = k_core(df, user_core=2, item_core=2)
    # item 3 has one interaction -> dropped -> user c has one left -> dropped -> item 1 keeps 2 (a, b)
    assert sorted(out["user_id"].unique().to_list()) == ["a", "b"]
    assert rounds >= 2


def test_items_without_metadata_are_counted():
    raw = _raw(ROWS)
    raw.items = raw.items.filter(pl.col("item_id") != "11")
    data = preprocess(raw, Preprocessing(), "t", "fp")
    assert data.stats["items_without_metadata"] == 1
    assert data.items.height == 3 and data.items["title"][1] is None
