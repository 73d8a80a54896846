"""Raw canonical frames -> :class:`SequenceData`, with every choice explicit and recorded.

Timestamps are all present or all absent (a null among dated rows would sort last and become the held-out
item). Order of operations (each recorded in ``stats``): rating threshold, de-duplication of (user, item) pairs,
iterative k-core, ordering by time with the declared tie rule, index assignment, optional user cap.
The tie rule matters: with equal timestamps the order of a user's items (and so the leave-one-out target)
is decided by it, so the number of tied consecutive pairs is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recbench.data.schema import DataError, RawData, SequenceData


@dataclass(frozen=True)
class Preprocessing:
    min_rating: float | None = None
    user_core: int = 0
    item_core: int = 0
    dedup: str = "first"  # first | last | none
    ties: str = "file_order"  # file_order | item_id
    max_users: int | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _natural_key(values: list[str]) -> list[str]:
    """Sort ids numerically when they all are integers, else as strings (deterministic either way)."""
    if values and all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def order_interactions(df: pl.DataFrame, ties: str) -> pl.DataFrame:
    """Sort by user, then timestamp (nulls: file order only), then the tie rule. Adds `order` first."""
    if "order" not in df.columns:
        df = df.with_row_index("order")
    keys = ["user_id", "timestamp"] + (["item_id"] if ties == "item_id" else []) + ["order"]
    return df.sort(keys, nulls_last=True, maintain_order=True)


def count_timestamp_ties(df: pl.DataFrame) -> int:
    """Consecutive pairs of one user's (ordered) interactions that share a timestamp."""
    if df["timestamp"].null_count() == df.height:
        return 0
    same_user = pl.col("user_id") == pl.col("user_id").shift(1)
    same_time = pl.col("timestamp") == pl.col("timestamp").shift(1)
    return int(df.select((same_user & same_time).fill_null(False).sum()).item())


def k_core(df: pl.DataFrame, user_core: int, item_core: int) -> tuple[pl.DataFrame, int]:
    """Iteratively drop users/items with too few interactions; returns the frame and the rounds taken."""
    rounds = 0
    while user_core > 1 or item_core > 1:
        before = df.height
        if item_core > 1:
            df = df.filter(pl.len().over("item_id") >= item_core)
        if user_core > 1:
            df = df.filter(pl.len().over("user_id") >= user_core)
        rounds += 1
        if df.height == before:
            break
    return df, rounds


def preprocess(raw: RawData, prep: Preprocessing, name: str, fingerprint: str) -> SequenceData:
    df = raw.interactions.with_row_index("order")
    stats: dict = {"raw_interactions": df.height, "preprocessing": prep.as_dict()}
    if raw.presplit and (
        prep.min_rating is not None or prep.user_core or prep.item_core or prep.dedup != "none"
    ):
        raise DataError(
            f"{name}: this source fixes its own leave-one-out split; filtering it would change the split. "
            "Set dataset.dedup: none and leave min_rating/user_core/item_core unset."
        )
    undated = df["timestamp"].null_count()
    if 0 < undated < df.height:
        raise DataError(
            f"{name}: {undated} of {df.height} interactions have no timestamp; ordering by time would put them "
            "after every dated one and so change which item each such user holds out. Give every interaction a "
            "timestamp, or none (then file order is time order)"
        )
    if prep.min_rating is not None:
        unrated = df["rating"].null_count()
        if unrated == df.height:
            raise DataError(f"{name}: min_rating is set but this dataset has no ratings")
        if unrated:
            raise DataError(
                f"{name}: min_rating is set but {unrated} of {df.height} interactions have no rating, so the "
                "filter would drop them unnoticed; give them a rating in the file or unset min_rating"
            )
        df = df.filter(pl.col("rating") >= prep.min_rating)
    stats["after_rating_filter"] = df.height

    df = order_interactions(df, prep.ties)
    if prep.dedup != "none":
        before = df.height
        df = df.unique(subset=["user_id", "item_id"], keep=prep.dedup, maintain_order=True)
        stats["duplicates_removed"] = before - df.height
    else:
        stats["duplicates_removed"] = 0

    df, rounds = k_core(df, prep.user_core, prep.item_core)
    stats["k_core_rounds"] = rounds
    if df.height == 0:
        raise DataError(f"{name}: no interactions left after preprocessing {prep.as_dict()}")
    df = order_interactions(df, prep.ties)
    stats["timestamp_ties"] = count_timestamp_ties(df)

    user_ids = _natural_key(df["user_id"].unique().to_list())
    if prep.max_users is not None:
        user_ids = user_ids[: prep.max_users]
        df = df.filter(pl.col("user_id").is_in(user_ids))
    item_ids = _natural_key(df["item_id"].unique().to_list())
    item_index = pl.DataFrame(
        {"item_id": item_ids, "item_idx": np.arange(1, len(item_ids) + 1, dtype=np.int64)}
    )
    df = df.join(item_index, on="item_id", how="left", maintain_order="left")
    grouped = df.group_by("user_id", maintain_order=True).agg(pl.col("item_idx"), pl.col("timestamp"))
    by_user = {u: i for i, u in enumerate(grouped["user_id"].to_list())}
    rows = [by_user[u] for u in user_ids]
    item_lists = grouped["item_idx"].to_list()
    sequences = [np.asarray(item_lists[r], dtype=np.int64) for r in rows]
    timestamps = None
    if df["timestamp"].null_count() == 0:
        time_lists = grouped["timestamp"].to_list()
        timestamps = [np.asarray(time_lists[r], dtype=np.float64) for r in rows]

    items = _aligned_items(raw.items, item_ids)
    stats.update(
        users=len(user_ids),
        items=len(item_ids),
        interactions=int(df.height),
        items_without_metadata=int(items["_missing"].sum()),
    )
    items = items.drop("_missing")
    return SequenceData(
        name=name,
        user_ids=user_ids,
        item_ids=item_ids,
        sequences=sequences,
        items=items,
        fingerprint=fingerprint,
        stats=stats,
        presplit=raw.presplit,
        timestamps=timestamps,
    )


def _aligned_items(items: pl.DataFrame, item_ids: list[str]) -> pl.DataFrame:
    """The item table in index order; items absent from the table get null fields (counted)."""
    order = pl.DataFrame({"item_id": item_ids})
    marked = items.with_columns(pl.lit(False).alias("_missing"))
    out = order.join(marked, on="item_id", how="left", maintain_order="left")
    return out.with_columns(pl.col("_missing").fill_null(True))
