"""GroupLens MovieLens formats: ml-100k (`u.data`, `u.item`) and ml-1m (`ratings.dat`, `movies.dat`).

Canonical item fields: `title` (without the trailing "(YYYY)"), `year`, `genres` (space-joined, as RecBole
writes them, so one text template serves every MovieLens source), and `image_path` when the card gives the
adapter option ``images`` (a folder of posters keyed by movie id, e.g. ``posters/images/<MovieID>.jpg``).

``grouplens-1m-partial`` reads the ml-1m files that are around when the full ``ratings.dat`` is not: the last
20% of ratings by time (``ratings_val.dat`` + ``ratings_test.dat``, movie ids renumbered, mapped back with
``movie_id_mapping.dat``). It is a different dataset (truncated histories), for smoke runs only.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from recbench.data.content import attach_images
from recbench.data.readers import BadLines, integer_id, number, parse_lines, split_fields
from recbench.data.schema import DataError, RawData, canonical_interactions, canonical_items

ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


def split_title(raw: str) -> tuple[str, str | None]:
    """'Toy Story (1995)' -> ('Toy Story', '1995'); a title without a year keeps year None."""
    m = _YEAR.match(raw.strip())
    return (m.group(1), m.group(2)) if m else (raw.strip(), None)


def _interaction(line: str, sep: str) -> tuple[str, str, float, float]:
    """GroupLens ids are integers; a rating or time that is not a finite number is a bad line (card policy)."""
    user, item, rating, ts = split_fields(line.strip(), sep, n=4)
    return (
        integer_id(user, "user id"),
        integer_id(item, "movie id"),
        number(rating, "rating"),
        number(ts, "timestamp"),
    )


def _frame(rows: list[tuple]) -> pl.DataFrame:
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row")
    return canonical_interactions(df)


def load_100k(folder: Path, options: dict, bad: BadLines) -> RawData:
    """`u.data`: user TAB item TAB rating TAB unix-time; `u.item`: '|'-separated, 19 genre flags, latin-1."""
    rows = list(parse_lines(folder / "u.data", lambda ln: _interaction(ln, "\t"), bad))

    def item(line: str) -> dict:
        parts = split_fields(line, "|", n=5 + len(ML100K_GENRES))
        title, year = split_title(parts[1])
        flags = parts[5:]
        genres = " ".join(g for g, f in zip(ML100K_GENRES, flags) if f == "1")
        return {"item_id": parts[0], "title": title, "year": year, "genres": genres}

    items = canonical_items(pl.DataFrame(list(parse_lines(folder / "u.item", item, bad, encoding="latin-1"))))
    return _with_images(RawData(_frame(rows), items), folder, options, bad)


def load_1m(folder: Path, options: dict, bad: BadLines) -> RawData:
    """`ratings.dat`: UserID::MovieID::Rating::Timestamp; `movies.dat`: MovieID::Title::Genres (latin-1)."""
    rows = list(
        parse_lines(folder / "ratings.dat", lambda ln: _interaction(ln, "::"), bad, encoding="latin-1")
    )
    items = read_movies_dat(folder / "movies.dat", bad)
    return _with_images(RawData(_frame(rows), items), folder, options, bad)


PARTIAL_DEFAULTS = {
    "ratings": ["ratings-partial-last20pct/ratings_val.dat", "ratings-partial-last20pct/ratings_test.dat"],
    "id_map": "ratings-partial-last20pct/movie_id_mapping.dat",
}


def load_1m_partial(folder: Path, options: dict, bad: BadLines) -> RawData:
    """`movies.dat` + the last-20% ratings (UserID::MovieID'::Rating::Timestamp, MovieID' renumbered) mapped
    back to MovieLens ids through `movie_id_mapping.dat` (CSV `movie_id,movie_id_orig`)."""
    id_map_path = folder / options.get("id_map", PARTIAL_DEFAULTS["id_map"])

    def mapping(line: str) -> tuple[str, str]:
        renumbered, original = split_fields(line.strip(), ",", n=2)
        return integer_id(renumbered, "movie_id"), integer_id(original, "movie_id_orig")

    pairs = list(parse_lines(id_map_path, mapping, bad, skip_header=True))
    id_map = dict(pairs)
    if len(id_map) != len(pairs) or len(set(id_map.values())) != len(pairs):
        raise DataError(f"{id_map_path}: the id mapping is not one-to-one")

    def rating(line: str) -> tuple[str, str, float, float]:
        user, item, value, ts = _interaction(line, "::")
        if item not in id_map:
            raise ValueError(f"movie id {item} is not in {id_map_path.name}")
        return user, id_map[item], value, ts

    rows = []
    for name in options.get("ratings", PARTIAL_DEFAULTS["ratings"]):
        rows += list(parse_lines(folder / name, rating, bad, encoding="latin-1"))
    items = read_movies_dat(folder / "movies.dat", bad)
    return _with_images(RawData(_frame(rows), items), folder, options, bad)


def _with_images(raw: RawData, folder: Path, options: dict, bad: BadLines) -> RawData:
    notes: dict = {}
    if options.get("images"):
        raw.items = attach_images(raw.items, folder, options["images"], notes)
    raw.notes = {**bad.notes(), **notes}
    return raw


def read_movies_dat(path: Path, bad: BadLines) -> pl.DataFrame:
    def movie(line: str) -> dict:
        movie_id, raw_title, genres = split_fields(line, "::", n=3)
        title, year = split_title(raw_title)
        return {"item_id": movie_id, "title": title, "year": year, "genres": genres.replace("|", " ")}

    return canonical_items(pl.DataFrame(list(parse_lines(path, movie, bad, encoding="latin-1"))))
