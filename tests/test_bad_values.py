"""Bad values in data files (issue 10, item 4): a number that does not parse or is not finite (a rating, a
timestamp, an id the format declares numeric) follows the card's `on_bad_line` policy in every adapter, like a
malformed line: `error` names the file, the line and the value; `skip` drops exactly that line and counts it.
Before, `1<TAB>61<TAB>five<TAB>yesterday` in a RecBole `.inter` file became nulls, and the null timestamp sorted
last: item 61 silently became user 1's held-out test item."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import polars as pl
import pytest

from recbench.config import DatasetSection
from recbench.data.adapters import get_adapter
from recbench.data.loader import load_dataset
from recbench.data.preprocess import Preprocessing, preprocess
from recbench.data.readers import BadLines, integer_id, number
from recbench.data.schema import DataError, RawData, canonical_interactions
from recbench.data.splits import leave_one_out
from recbench.data.stats import dataset_statistics


def write(path: Path, lines: list[str], gz: bool = False, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines).encode(encoding)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def load(fmt: str, folder: Path, options: dict, policy: str = "error"):
    bad = BadLines(policy)
    return get_adapter(fmt)(folder, options, bad), bad


def assert_error_then_skip(fmt: str, folder: Path, options: dict, file: str, line: int, value: str):
    """`error`: a DataError naming file, line and the value, saying how to fix; `skip`: that line counted."""
    with pytest.raises(DataError) as info:
        load(fmt, folder, options)
    message = str(info.value)
    assert f"{file}, line {line}: " in message
    assert value in message
    assert "on_bad_line: skip" in message  # says how to proceed
    raw, bad = load(fmt, folder, options, policy="skip")
    assert bad.skipped == {file: 1}
    assert bad.examples[file].startswith(f"line {line}: ")
    assert raw.notes[f"bad_lines_skipped[{file}]"] == 1
    return raw


def assert_no_null_or_nan(raw: RawData, numeric: tuple[str, ...] = ("timestamp", "rating")):
    for name in numeric:
        column = raw.interactions[name]
        assert column.null_count() == 0 and column.is_finite().all(), name


# --------------------------------------------------------------------------------------------- the helpers


@pytest.mark.parametrize(
    "value, expected", [("5", 5.0), (" 3.5 ", 3.5), (881250949, 881250949.0), (4.0, 4.0)]
)
def test_number_reads_finite_numbers(value, expected):
    assert number(value, "rating") == expected


@pytest.mark.parametrize(
    "value, why",
    [
        ("five", "not a number"),
        ("yesterday", "not a number"),
        ("", "empty"),
        ("nan", "not a finite number"),
        ("-inf", "not a finite number"),
        ("1e999", "not a finite number"),
        (math.nan, "not a finite number"),
        (math.inf, "not a finite number"),
        (True, "not a number"),
        (None, "not a number"),
        ([5], "not a number"),
    ],
)
def test_number_rejects_what_is_not_a_finite_number(value, why):
    with pytest.raises(ValueError, match=why) as info:
        number(value, "timestamp")
    assert str(info.value).startswith("timestamp is ")


def test_integer_id():
    assert integer_id(" 61 ", "movie id") == "61"
    for value in ("61x", "", "-1", "6.1", "٦١"):  # the last: Arabic-Indic digits, isdigit() but not ASCII
        with pytest.raises(ValueError, match="movie id is .*expected an integer"):
            integer_id(value, "movie id")


# --------------------------------------------------------------------------------------------- RecBole atomic


INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def recbole_folder(folder: Path, bad_line: str | None, at: int = 3) -> Path:
    """User 1 watches 10, 20, (the bad line), 30 in time order; user 2 watches 10, 20, 30."""
    lines = [
        INTER_HEADER,
        "1\t10\t4\t100",
        "1\t20\t3\t200",
        "1\t30\t5\t300",
        "2\t10\t4\t110",
        "2\t20\t4\t210",
    ]
    lines.append("2\t30\t2\t310")
    if bad_line is not None:
        lines.insert(at, bad_line)
    write(folder / "Tiny.inter", lines)
    write(
        folder / "Tiny.item",
        ["item_id:token\tmovie_title:token_seq"] + [f"{i}\tMovie {i}" for i in (10, 20, 30, 61)],
    )
    return folder


def test_recbole_issue_reproduction_five_yesterday(tmp_path):
    """The exact line of the issue: line 4 of the file (the header is line 1)."""
    folder = recbole_folder(tmp_path / "r", "1\t61\tfive\tyesterday")
    options = {"prefix": "Tiny"}
    with pytest.raises(DataError, match=r"Tiny\.inter, line 4: rating is 'five', not a number"):
        load("recbole-atomic", folder, options)
    raw = assert_error_then_skip("recbole-atomic", folder, options, "Tiny.inter", 4, "'five'")
    assert raw.interactions.height == 6 and "61" not in raw.interactions["item_id"].to_list()
    assert_no_null_or_nan(raw)


@pytest.mark.parametrize("value", ["yesterday", "nan", "inf", ""])
def test_recbole_bad_timestamp_never_becomes_the_held_out_item(tmp_path, value):
    """A timestamp that is not a number used to sort last and become user 1's test item (61)."""
    folder = recbole_folder(tmp_path / "r", f"1\t61\t5\t{value}")
    assert_error_then_skip("recbole-atomic", folder, {"prefix": "Tiny"}, "Tiny.inter", 4, "timestamp is")
    raw, _ = load("recbole-atomic", folder, {"prefix": "Tiny"}, policy="skip")
    clean, _ = load("recbole-atomic", recbole_folder(tmp_path / "clean", None), {"prefix": "Tiny"})
    assert raw.interactions.equals(clean.interactions)  # exactly the bad line is gone
    data = preprocess(raw, Preprocessing(dedup="none"), "tiny", "fp")
    split = leave_one_out(data)
    targets = {data.user_ids[u]: data.item_ids[t - 1] for u, t in zip(split.test.users, split.test.targets)}
    assert targets == {"1": "30", "2": "30"}


def test_recbole_bad_value_through_a_card_is_counted_in_data_stats(tmp_path, monkeypatch):
    cards = tmp_path / "cards"
    cards.mkdir()
    monkeypatch.setenv("RECBENCH_CARDS", str(cards))
    front = """
title: tiny
domain: test
licence: test
mirrors:
  - format: recbole-atomic
    files: {Tiny.inter: null, Tiny.item: null}
    options: {prefix: Tiny, item_fields: {movie_title: title}}
text_template: "{title}"
on_bad_line: POLICY
preprocess: {dedup: first}
"""
    folder = recbole_folder(tmp_path / "r", "1\t61\tfive\tyesterday")
    for policy in ("error", "skip"):
        text = f"---\nname: tiny-{policy}\n{front.strip().replace('POLICY', policy)}\n---\n# tiny\n"
        (cards / f"tiny-{policy}.md").write_text(text, "utf-8")
    with pytest.raises(DataError, match=r"Tiny\.inter, line 4: rating is 'five'"):
        load_dataset(DatasetSection(name="tiny-error", data_dir=str(folder)))
    stats = dataset_statistics("tiny-skip", str(folder))
    assert stats["bad_lines_skipped[Tiny.inter]"] == 1
    assert stats["interactions"] == 6 and stats["items"] == 3


# --------------------------------------------------------------------------------------------- GroupLens


ML100K_ITEM = "{0}|Movie {0} (1995)|01-Jan-1995||http://x|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0"


@pytest.mark.parametrize(
    "bad_line, value",
    [
        ("1\t61\t5\tnan", "timestamp is 'nan'"),
        ("1\t61x\t5\t150", "movie id is '61x'"),
        ("1\t61\t\t150", "rating is empty"),
    ],
)
def test_grouplens_100k_bad_values(tmp_path, bad_line, value):
    folder = tmp_path / "ml"
    write(folder / "u.data", ["1\t10\t4\t100", bad_line, "1\t20\t3\t200", "2\t10\t5\t120"])
    write(folder / "u.item", [ML100K_ITEM.format(i) for i in (10, 20, 61)], encoding="latin-1")
    raw = assert_error_then_skip("grouplens-100k", folder, {}, "u.data", 2, value)
    assert raw.interactions["item_id"].to_list() == ["10", "20", "10"]
    assert_no_null_or_nan(raw)


def test_grouplens_1m_bad_values(tmp_path):
    folder = tmp_path / "ml"
    write(
        folder / "movies.dat",
        ["1::Toy Story (1995)::Animation", "2::Heat (1995)::Action"],
        encoding="latin-1",
    )
    write(folder / "ratings.dat", ["1::1::5::100", "1::2::3::101", "1::2::inf::1e999", "2::1::4::102"])
    raw = assert_error_then_skip("grouplens-1m", folder, {}, "ratings.dat", 3, "rating is 'inf'")
    assert raw.interactions.height == 3
    assert_no_null_or_nan(raw)


def test_grouplens_1m_partial_bad_timestamp(tmp_path):
    folder = tmp_path / "ml"
    write(
        folder / "movies.dat",
        ["1::Toy Story (1995)::Animation", "2::Heat (1995)::Action"],
        encoding="latin-1",
    )
    part = folder / "ratings-partial-last20pct"
    write(part / "movie_id_mapping.dat", ["movie_id,movie_id_orig", "6041,1", "6042,2"])
    write(part / "ratings_val.dat", ["7::6041::4::975768738", "7::6042::5::NaN"])
    write(part / "ratings_test.dat", ["8::6042::3::978133414"])
    raw = assert_error_then_skip("grouplens-1m-partial", folder, {}, "ratings_val.dat", 2, "'NaN'")
    assert raw.interactions["item_id"].to_list() == ["1", "2"]
    assert_no_null_or_nan(raw)


# --------------------------------------------------------------------------------------------- UniSRec


def unisrec_folder(folder: Path, test_lines: list[str]) -> Path:
    """Two users (indices 1, 2) with sequences 1 2 3 4 and 3 2 1; lists untruncated (max_len 50)."""
    header = "user_id:token\titem_id_list:token_seq\titem_id:token"
    write(folder / "Tiny.train.inter", [header, "1\t1\t2"])
    write(folder / "Tiny.valid.inter", [header, "1\t1 2\t3", "2\t3\t2"])
    write(folder / "Tiny.test.inter", [header] + test_lines)
    write(folder / "Tiny.item2index", [f"ASIN{i}\t{i}" for i in range(5)])
    write(folder / "Tiny.text", ["item_id:token\ttext:token_seq"] + [f"ASIN{i}\tItem {i}" for i in range(5)])
    return folder


@pytest.mark.parametrize(
    "line, value",
    [("1\t1 2 3\t4x", "item index is '4x'"), ("1\t1 2 three\t4", "'three'"), ("one\t1 2 3\t4", "'one'")],
)
def test_unisrec_non_numeric_index_is_an_error_naming_file_and_line(tmp_path, line, value):
    options = {"prefix": "Tiny"}
    ok = unisrec_folder(tmp_path / "ok", ["1\t1 2 3\t4", "2\t3 2\t1"])
    raw, _ = load("unisrec", ok, options)
    assert raw.interactions.height == 7
    folder = unisrec_folder(tmp_path / "u", [line, "2\t3 2\t1"])
    with pytest.raises(DataError, match=r"Tiny\.test\.inter, line 2: .*expected an integer") as info:
        load("unisrec", folder, options)
    assert value in str(info.value) and "on_bad_line: skip" in str(info.value)
    with pytest.raises(DataError, match="cannot skip lines"):  # presplit: skipping would change the split
        load("unisrec", folder, options, policy="skip")


# --------------------------------------------------------------------------------------------- NineRec


PAIRS = {
    "interactions": {
        "file": "pairs.csv",
        "sep": "comma",
        "header": True,
        "columns": ["user_id", "item_id", "timestamp", "rating"],
    }
}


@pytest.mark.parametrize(
    "bad_line, value", [("u1,13,nan,4", "timestamp is 'nan'"), ("u1,13,4,five", "'five'")]
)
def test_ninerec_pairs_bad_values(tmp_path, bad_line, value):
    folder = tmp_path / "n"
    write(folder / "pairs.csv", ["user,item,time,rating", "u1,10,1,5", bad_line, "u1,11,2,4", "u2,10,3,3"])
    raw = assert_error_then_skip("ninerec", folder, PAIRS, "pairs.csv", 3, value)
    assert raw.interactions["item_id"].to_list() == ["10", "11", "10"]
    assert_no_null_or_nan(raw)


def test_ninerec_sequences_empty_item_id(tmp_path):
    folder = tmp_path / "s"
    write(folder / "seq.txt", ["u1\t10,11", "u2\t10,,12", "u3\t12,10"])
    options = {"interactions": {"file": "seq.txt", "layout": "sequences", "sep": "tab", "item_sep": ","}}
    raw = assert_error_then_skip("ninerec", folder, options, "seq.txt", 2, "empty item id")
    assert raw.interactions["user_id"].to_list() == ["u1", "u1", "u3", "u3"]
    assert "" not in raw.interactions["item_id"].to_list()


# --------------------------------------------------------------------------------------------- Amazon


def amazon_folder(folder: Path, reviews: list[dict | str], meta: list[dict], user="reviewerID", item="asin"):
    lines = [r if isinstance(r, str) else json.dumps(r) for r in reviews]
    write(folder / "reviews.json.gz", lines, gz=True)
    write(folder / "meta.json.gz", [json.dumps(m) for m in meta], gz=True)
    return folder


def review(user, item, rating, ts) -> dict:
    return {"reviewerID": user, "asin": item, "overall": rating, "unixReviewTime": ts}


@pytest.mark.parametrize(
    "bad, value",
    [
        (review("U1", "A9", "five", 150), "field 'overall' is 'five'"),
        (review("U1", "A9", 5.0, "yesterday"), "field 'unixReviewTime' is 'yesterday'"),
        (review("U1", "A9", math.nan, 150), "field 'overall' is nan"),
        (review("U1", "A9", 5.0, math.inf), "field 'unixReviewTime' is inf"),
        (review("U1", "A9", True, 150), "field 'overall' is True"),
        ('{"reviewerID": "U1", "asin": "A9", "overall": 5, "unixReviewTime": NaN}', "unixReviewTime' is nan"),
    ],
)
@pytest.mark.parametrize("fmt", ["amazon-2014", "amazon-2018"])
def test_amazon_2014_2018_bad_values(tmp_path, fmt, bad, value):
    reviews = [review("U1", "A1", 5.0, 100), bad, review("U1", "A2", 4.0, 200), review("U2", "A1", 3.0, 50)]
    meta = [
        {"asin": a, "title": f"Item {a}"} for a in ("A1", "A2", "A9")
    ]  # JSON, and a Python literal (2014)
    folder = amazon_folder(tmp_path / "a", reviews, meta)
    raw = assert_error_then_skip(fmt, folder, {}, "reviews.json.gz", 2, value)
    assert raw.interactions["item_id"].to_list() == ["A1", "A2", "A1"]
    assert "A9" not in raw.items["item_id"].to_list()  # never reviewed once the line is dropped
    assert_no_null_or_nan(raw)


@pytest.mark.parametrize(
    "bad, value",
    [
        ({"user_id": "U1", "parent_asin": "C9", "rating": 5, "timestamp": "yesterday"}, "'yesterday'"),
        ({"user_id": "U1", "parent_asin": "C9", "rating": "five", "timestamp": 1500}, "'five'"),
        ({"user_id": "U1", "parent_asin": "C9", "rating": 5, "timestamp": -math.inf}, "timestamp' is -inf"),
    ],
)
def test_amazon_2023_bad_values(tmp_path, bad, value):
    reviews = [
        {"user_id": "U1", "parent_asin": "C1", "rating": 5, "timestamp": 1000},
        bad,
        {"user_id": "U1", "parent_asin": "C2", "rating": 4, "timestamp": 2000},
        {"user_id": "U2", "parent_asin": "C1", "rating": 3, "timestamp": 500},
    ]
    folder = tmp_path / "c"
    write(folder / "reviews.jsonl.gz", [json.dumps(r) for r in reviews], gz=True)
    write(
        folder / "meta.jsonl.gz",
        [json.dumps({"parent_asin": c, "title": c}) for c in ("C1", "C2", "C9")],
        gz=True,
    )
    raw = assert_error_then_skip("amazon-2023", folder, {}, "reviews.jsonl.gz", 2, value)
    assert raw.interactions["timestamp"].to_list() == [1.0, 2.0, 0.5]
    assert_no_null_or_nan(raw)


def test_amazon_missing_rating_stays_missing_not_bad(tmp_path):
    """A review without a rating is a rating-less interaction (documented), not a bad line."""
    reviews = [review("U1", "A1", 5.0, 100), {"reviewerID": "U1", "asin": "A2", "unixReviewTime": 200}]
    folder = amazon_folder(tmp_path / "a", reviews, [{"asin": "A1"}, {"asin": "A2"}])
    raw, bad = load("amazon-2018", folder, {})
    assert bad.total == 0 and raw.interactions["rating"].to_list() == [5.0, None]


# --------------------------------------------------------------------------------------------- backstops


@pytest.mark.parametrize(
    "column, values, shown",
    [
        ("timestamp", ["100", "yesterday"], "timestamp is 'yesterday'"),
        ("timestamp", [100.0, math.nan], "timestamp is nan"),
        ("rating", ["5", "inf"], "rating is 'inf'"),
        ("item_id", ["10", None], "item_id is None"),
    ],
)
def test_canonical_interactions_never_casts_a_value_to_null(column, values, shown):
    """The backstop for an adapter that does not parse its numbers: the lenient cast used to make nulls."""
    frame = {"user_id": ["1", "1"], "item_id": ["10", "20"], column: values}
    with pytest.raises(DataError, match=f"interaction 2 of 2: {shown}, not"):
        canonical_interactions(pl.DataFrame(frame))
    fine = canonical_interactions(pl.DataFrame({"user_id": ["1"], "item_id": ["10"], "timestamp": [None]}))
    assert fine["timestamp"].to_list() == [None]  # a null stays a null (no timestamps at all is allowed)


def _raw(rows) -> RawData:
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "rating"], orient="row")
    return RawData(canonical_interactions(df), pl.DataFrame({"item_id": sorted({r[1] for r in rows})}))


def test_preprocess_refuses_some_timestamps_missing():
    """A null timestamp among dated ones would sort last and become the user's test item."""
    rows = [("1", "10", 100.0, 4.0), ("1", "61", None, 4.0), ("1", "20", 200.0, 4.0), ("1", "30", 300.0, 4.0)]
    with pytest.raises(DataError, match="1 of 4 interactions have no timestamp"):
        preprocess(_raw(rows), Preprocessing(dedup="none"), "t", "fp")
    undated = [(u, i, None, r) for u, i, _, r in rows]  # none dated: file order is time order
    data = preprocess(_raw(undated), Preprocessing(dedup="none"), "t", "fp")
    assert [data.item_ids[i - 1] for i in data.sequences[0]] == ["10", "61", "20", "30"]


def test_preprocess_min_rating_refuses_unrated_interactions():
    rows = [("1", "10", 100.0, 4.0), ("1", "20", 200.0, None), ("1", "30", 300.0, 5.0)]
    with pytest.raises(DataError, match="1 of 3 interactions have no rating"):
        preprocess(_raw(rows), Preprocessing(min_rating=4, dedup="none"), "t", "fp")
    assert preprocess(_raw(rows), Preprocessing(dedup="none"), "t", "fp").num_interactions == 3
