"""The canonical frames every adapter produces, and the processed dataset every model consumes.

``interactions``: one row per event, in file order
    user_id: str, item_id: str, timestamp: float | null, rating: float | null
``items``: one row per item
    item_id: str, any text fields (str), image_path: str | null (absolute path to a local image)

Adapters read raw files into these two frames (:class:`RawData`); ``preprocess`` turns them into a
:class:`SequenceData`: integer item indices ``1..N`` (0 is padding), one time-ordered sequence per user.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

INTERACTION_SCHEMA = {
    "user_id": pl.String,
    "item_id": pl.String,
    "timestamp": pl.Float64,
    "rating": pl.Float64,
}


class DataError(ValueError):
    """Bad or inconsistent dataset input; the message names the file (and line) and what to do."""


@dataclass
class RawData:
    """What an adapter returns: canonical frames plus what it had to skip or repair."""

    interactions: pl.DataFrame
    items: pl.DataFrame
    notes: dict[str, int | str] = field(default_factory=dict)
    presplit: bool = False  # the source fixes the leave-one-out split (do not filter the sequences)


def canonical_interactions(df: pl.DataFrame) -> pl.DataFrame:
    """Cast/complete an interaction frame to the canonical schema (an absent timestamp/rating column -> null).

    The cast never invents a null: a value that does not cast (``"yesterday"``), a NaN/inf timestamp or rating,
    or a null id is a DataError. Adapters parse numbers line by line with :func:`recbench.data.readers.number`
    so the card's bad-line policy applies with file and line; this is the backstop for one that does not,
    because a null timestamp sorts last and silently becomes a user's held-out test item."""
    missing = [c for c in ("user_id", "item_id") if c not in df.columns]
    if missing:
        raise DataError(f"interaction frame lacks column(s) {missing}")
    cols = []
    for name, dtype in INTERACTION_SCHEMA.items():
        if name in df.columns:
            cols.append(pl.col(name).cast(dtype, strict=False))
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    out = df.select(cols)
    for name in INTERACTION_SCHEMA:
        if name not in df.columns:
            continue
        invalid = out[name].is_null() & df[name].is_not_null()
        if name in ("user_id", "item_id"):
            invalid = invalid | df[name].is_null()
        else:
            invalid = invalid | (~out[name].is_finite()).fill_null(False)
        if invalid.any():
            row = int(invalid.arg_true()[0])
            if name in ("user_id", "item_id"):
                what, how = "an id", "must treat a line without one as a bad line (BadLines.bad)"
            else:
                what, how = "a finite number", "must parse it with recbench.data.readers.number"
            raise DataError(
                f"interaction {row + 1} of {df.height}: {name} is {df[name][row]!r}, not {what} "
                f"({int(invalid.sum())} such interaction(s)). Fix the file; the adapter {how}, so that the "
                "card's on_bad_line policy applies with the file and line"
            )
    return out


def canonical_items(df: pl.DataFrame) -> pl.DataFrame:
    """item_id as string first, every other column as string; image_path kept when present."""
    if "item_id" not in df.columns:
        raise DataError("item table lacks an item_id column")
    others = [c for c in df.columns if c != "item_id"]
    df = df.select([pl.col("item_id").cast(pl.String)] + [pl.col(c).cast(pl.String) for c in others])
    dup = df.filter(pl.col("item_id").is_duplicated())
    if dup.height:
        raise DataError(f"item table has duplicate item ids, e.g. {dup['item_id'][0]!r}")
    return df


@dataclass
class SequenceData:
    """A processed dataset: time-ordered item-index sequences per user and an aligned item table.

    ``items`` has N rows; row ``i`` describes item index ``i + 1`` (index 0 is padding).
    """

    name: str
    user_ids: list[str]
    item_ids: list[str]
    sequences: list[np.ndarray]  # per user: int64 item indices in 1..N, time order
    items: pl.DataFrame
    fingerprint: str
    stats: dict
    presplit: bool = False
    timestamps: list[np.ndarray] | None = None  # per user, aligned with `sequences` (None: no times)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))
