"""GroupLens MovieLens formats: ml-100k (`u.data`, `u.item`) and ml-1m (`ratings.dat`, `movies.dat`).

Canonical item fields: `title` (without the trailing "(YYYY)"), `year`, `genres` (space-joined, as RecBole
writes them, so one text template serves every MovieLens source).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from recbench.data.readers import BadLines, parse_lines, split_fields
from recbench.data.schema import RawData, canonical_interactions, canonical_items

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
    user, item, rating, ts = split_fields(line.strip(), sep, n=4)
    return user, item, float(rating), float(ts)


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

    items = list(parse_lines(folder / "u.item", item, bad, encoding="latin-1"))
    return RawData(_frame(rows), canonical_items(pl.DataFrame(items)), notes=bad.notes())


def load_1m(folder: Path, options: dict, bad: BadLines) -> RawData:
    """`ratings.dat`: UserID::MovieID::Rating::Timestamp; `movies.dat`: MovieID::Title::Genres (latin-1)."""
    rows = list(
        parse_lines(folder / "ratings.dat", lambda ln: _interaction(ln, "::"), bad, encoding="latin-1")
    )
    items = read_movies_dat(folder / "movies.dat", bad)
    return RawData(_frame(rows), items, notes=bad.notes())


def read_movies_dat(path: Path, bad: BadLines) -> pl.DataFrame:
    def movie(line: str) -> dict:
        movie_id, raw_title, genres = split_fields(line, "::", n=3)
        title, year = split_title(raw_title)
        return {"item_id": movie_id, "title": title, "year": year, "genres": genres.replace("|", " ")}

    return canonical_items(pl.DataFrame(list(parse_lines(path, movie, bad, encoding="latin-1"))))
