"""Adapters on tiny fixture files written here: Amazon 2014/2018/2023, UniSRec presplit folders, NineRec-style
folders, MovieLens posters and the partial ml-1m files; malformed input is a clear error naming file and line,
or skipped and counted, as the card declares."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from recbench.config import DatasetSection
from recbench.data.adapters import get_adapter
from recbench.data.content import ItemContent, render_texts, tidy
from recbench.data.loader import load_dataset
from recbench.data.preprocess import Preprocessing, preprocess
from recbench.data.readers import BadLines
from recbench.data.schema import DataError
from recbench.data.splits import leave_one_out
from recbench.data.stats import dataset_statistics


def write(
    path: Path, lines: list[str], newline: str = "\n", gz: bool = False, encoding: str = "utf-8"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + newline for line in lines).encode(encoding)
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def load(fmt: str, folder: Path, options: dict, policy: str = "error"):
    bad = BadLines(policy)
    return get_adapter(fmt)(folder, options, bad), bad


@pytest.fixture
def cards_dir(tmp_path, monkeypatch):
    """A folder of test-only data cards, searched before the shipped ones."""
    folder = tmp_path / "cards"
    folder.mkdir()
    monkeypatch.setenv("RECBENCH_CARDS", str(folder))
    return folder


def write_card(folder: Path, name: str, front: str) -> None:
    (folder / f"{name}.md").write_text(f"---\nname: {name}\n{front.strip()}\n---\n# {name}\n", "utf-8")


# --------------------------------------------------------------------------------------------- Amazon 2014


def amazon_2014(folder: Path, extra_meta: list[str] = (), extra_reviews: list[str] = ()) -> Path:
    reviews = [
        json.dumps(
            {"reviewerID": "U1", "asin": "A1", "overall": 5.0, "unixReviewTime": 100, "reviewText": "x"}
        ),
        json.dumps({"reviewerID": "U1", "asin": "A2", "overall": 4.0, "unixReviewTime": 200}),
        json.dumps({"reviewerID": "U2", "asin": "A1", "overall": 3.0, "unixReviewTime": 150}),
        json.dumps({"reviewerID": "U2", "asin": "A3", "overall": 1.0, "unixReviewTime": 50}),
        *extra_reviews,
    ]
    meta = [
        "{'asin': 'A1', 'title': 'Rose Cream', 'brand': 'Acme', 'categories': [['Beauty', 'Skin Care'], "
        "['Beauty', 'Face']], 'imUrl': 'http://img/A1.jpg', 'description': 'Soft &amp; light'}",
        "{'asin': 'A2', 'title': \"Kid's Shampoo\", 'categories': [['Beauty']], 'salesRank': {'Beauty': 3}}",
        "{'asin': 'A3', 'categories': [['Beauty', 'Tools']], 'related': {'also_bought': ['A1']}}",
        "{'asin': 'ZZ', 'title': 'never reviewed: not parsed'}",
        *extra_meta,
    ]
    write(folder / "reviews_Beauty_5.json.gz", reviews, gz=True)
    write(folder / "meta_Beauty.json.gz", meta, gz=True)
    return folder


OPTS_2014 = {"reviews": "reviews_Beauty_5.json.gz", "meta": "meta_Beauty.json.gz"}


def test_amazon_2014_reviews_json_and_python_literal_metadata(tmp_path):
    raw, bad = load("amazon-2014", amazon_2014(tmp_path / "a"), OPTS_2014)
    inter = raw.interactions
    assert inter.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert inter["item_id"].to_list() == ["A1", "A2", "A1", "A3"]  # file order
    assert inter["timestamp"].to_list() == [100.0, 200.0, 150.0, 50.0]
    items = {r["item_id"]: r for r in raw.items.to_dicts()}
    assert set(items) == {"A1", "A2", "A3"}  # ZZ is never reviewed
    assert items["A1"]["categories"] == "Beauty, Skin Care, Face"  # flattened, unique, in order
    assert items["A1"]["image_url"] == "http://img/A1.jpg"
    assert items["A1"]["description"] == "Soft & light"
    assert items["A2"]["title"] == "Kid's Shampoo"
    assert items["A3"]["title"] is None and items["A3"]["image_url"] is None
    texts = render_texts(raw.items, "{title}. {brand}. {categories}. {description}")
    assert texts[0] == "Rose Cream. Acme. Beauty, Skin Care, Face. Soft & light"
    assert texts[1] == "Kid's Shampoo. Beauty."  # no stray ". ." where brand/description are missing
    assert texts[2] == "Beauty, Tools."
    assert bad.total == 0


def test_amazon_2014_metadata_is_never_evaluated(tmp_path, monkeypatch):
    """A metadata line that is code, not a literal, is a bad line: it is parsed with ast.literal_eval."""
    called = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: called.append(a))
    evil = "{'asin': 'A1', 'title': print('pwned')}"
    folder = amazon_2014(tmp_path / "a", extra_meta=[])
    meta = gzip.open(folder / "meta_Beauty.json.gz", "rt").read().splitlines()
    write(folder / "meta_Beauty.json.gz", [evil] + meta[1:], gz=True)
    with pytest.raises(DataError, match=r"meta_Beauty\.json\.gz, line 1: not a Python literal"):
        load("amazon-2014", folder, OPTS_2014)
    raw, bad = load("amazon-2014", folder, OPTS_2014, policy="skip")
    assert called == []  # nothing ran
    assert bad.skipped == {"meta_Beauty.json.gz": 1}
    assert "A1" not in raw.items["item_id"].to_list()  # its only metadata line was bad


def test_amazon_bad_review_line_error_names_file_and_line_or_is_counted(tmp_path):
    folder = amazon_2014(tmp_path / "a", extra_reviews=['{"reviewerID": "U3", "asin": ', '{"asin": "A1"}'])
    with pytest.raises(DataError) as info:
        load("amazon-2014", folder, OPTS_2014)
    assert "reviews_Beauty_5.json.gz, line 5" in str(info.value)
    assert "on_bad_line: skip" in str(info.value)  # says how to proceed
    raw, bad = load("amazon-2014", folder, OPTS_2014, policy="skip")
    assert bad.skipped == {"reviews_Beauty_5.json.gz": 2}
    assert bad.examples["reviews_Beauty_5.json.gz"].startswith("line 5: ")
    assert raw.interactions.height == 4
    assert raw.notes["bad_lines_skipped[reviews_Beauty_5.json.gz]"] == 2


def test_amazon_unpacked_files_are_found_for_gz_names(tmp_path):
    folder = amazon_2014(tmp_path / "a")
    for name in ("reviews_Beauty_5.json.gz", "meta_Beauty.json.gz"):
        text = gzip.open(folder / name, "rt").read()
        (folder / name).unlink()
        (folder / name[:-3]).write_text(text)
    raw, _ = load("amazon-2014", folder, OPTS_2014)
    assert raw.interactions.height == 4 and raw.items.height == 3


# --------------------------------------------------------------------------------------------- Amazon 2018


def test_amazon_2018_strict_json_html_duplicates_and_require_title(tmp_path):
    folder = tmp_path / "b"
    reviews = [
        {"reviewerID": "U1", "asin": "B1", "overall": 5.0, "unixReviewTime": 10, "verified": True},
        {"reviewerID": "U1", "asin": "B2", "overall": 2.0, "unixReviewTime": 20},
        {"reviewerID": "U2", "asin": "B2", "overall": 4.0, "unixReviewTime": 30},
    ]
    meta = [
        {
            "asin": "B1",
            "title": "Microscope &amp; Slides",
            "brand": "Lab<b>Co</b>",
            "category": ["Industrial & Scientific", "Lab"],
            "description": ["<p>Great</p>", "tool"],
            "imageURLHighRes": ["https://img/B1.jpg"],
            "also_buy": ["B2"],
        },
        {"asin": "B1", "title": "a repeated line (2018 has some): the first one is kept"},
        {"asin": "B2", "title": "", "category": [], "imageURL": ["https://img/B2s.jpg"]},
    ]
    write(folder / "Industrial_and_Scientific_5.json.gz", [json.dumps(r) for r in reviews], gz=True)
    write(folder / "meta_Industrial_and_Scientific.json.gz", [json.dumps(m) for m in meta], gz=True)
    options = {
        "reviews": "Industrial_and_Scientific_5.json.gz",
        "meta": "meta_Industrial_and_Scientific.json.gz",
    }
    raw, _ = load("amazon-2018", folder, options)
    items = {r["item_id"]: r for r in raw.items.to_dicts()}
    assert items["B1"]["title"] == "Microscope & Slides"
    assert items["B1"]["brand"] == "Lab Co"
    assert items["B1"]["description"] == "Great tool"
    assert items["B1"]["categories"] == "Industrial & Scientific, Lab"
    assert items["B1"]["image_url"] == "https://img/B1.jpg"
    assert items["B2"]["title"] is None and items["B2"]["image_url"] == "https://img/B2s.jpg"
    assert raw.notes["metadata_lines_repeated"] == 1
    assert raw.interactions.height == 3

    titled, _ = load("amazon-2018", folder, {**options, "require_title": True})
    assert titled.interactions["item_id"].to_list() == ["B1"]
    assert titled.notes["interactions_dropped_no_title"] == 2
    assert titled.items["item_id"].to_list() == ["B1"]


def test_amazon_2018_meta_that_is_not_json_is_a_bad_line(tmp_path):
    folder = tmp_path / "b"
    write(
        folder / "r.json", [json.dumps({"reviewerID": "U1", "asin": "B1", "overall": 5, "unixReviewTime": 1})]
    )
    write(folder / "m.json", ["{'asin': 'B1', 'title': 'python literal, not JSON'}"])
    with pytest.raises(DataError, match=r"m\.json, line 1"):
        load("amazon-2018", folder, {"reviews": "r.json", "meta": "m.json"})


# --------------------------------------------------------------------------------------------- Amazon 2023


def amazon_2023(folder: Path, gz: bool) -> dict:
    suffix = ".jsonl.gz" if gz else ".jsonl"
    reviews = [
        {
            "rating": 5.0,
            "title": "t",
            "text": "x",
            "asin": "C1v",
            "parent_asin": "C1",
            "user_id": "U1",
            "timestamp": 1588615855070,
        },
        {"rating": 4.0, "asin": "C2", "parent_asin": "C2", "user_id": "U1", "timestamp": 1588615856070},
    ]
    meta = [
        {
            "main_category": "All Beauty",
            "title": "Hair Spray",
            "store": "Acme",
            "categories": [],
            "description": ["Nice", "spray"],
            "parent_asin": "C1",
            "images": [
                {"variant": "PT01", "large": "https://img/C1-pt.jpg"},
                {"variant": "MAIN", "large": "https://img/C1.jpg", "thumb": "t"},
            ],
            "details": {"Brand": "Acme"},
        },
        {
            "main_category": "All Beauty",
            "title": "Comb",
            "categories": ["Beauty", "Tools"],
            "parent_asin": "C2",
            "images": [],
        },
    ]
    write(folder / f"All_Beauty{suffix}", [json.dumps(r) for r in reviews], gz=gz)
    write(folder / f"meta_All_Beauty{suffix}", [json.dumps(m) for m in meta], gz=gz)
    return {"reviews": "All_Beauty.jsonl.gz", "meta": "meta_All_Beauty.jsonl.gz"}


@pytest.mark.parametrize("gz", [True, False])
def test_amazon_2023_jsonl(tmp_path, gz):
    options = amazon_2023(tmp_path / "c", gz)
    raw, _ = load("amazon-2023", tmp_path / "c", options)
    assert raw.interactions["item_id"].to_list() == ["C1", "C2"]  # parent_asin, not asin
    assert raw.interactions["timestamp"].to_list() == [1588615855.07, 1588615856.07]  # ms -> s
    items = {r["item_id"]: r for r in raw.items.to_dicts()}
    assert items["C1"]["image_url"] == "https://img/C1.jpg"  # the MAIN image
    assert items["C1"]["brand"] == "Acme" and items["C1"]["categories"] == "All Beauty"
    assert items["C2"]["categories"] == "Beauty, Tools" and items["C2"]["image_url"] is None


def test_amazon_card_applies_5_core_as_declared(tmp_path, cards_dir):
    """A 2018-format folder through a card with `preprocess: {user_core: 5, item_core: 5}`."""
    folder = tmp_path / "five"
    rng = np.random.default_rng(0)
    reviews = []
    for u in range(12):  # 12 users x 6 of 8 core items: every core user/item has >= 5
        for k, i in enumerate(rng.choice(8, size=6, replace=False)):
            reviews.append(
                {"reviewerID": f"U{u}", "asin": f"I{i}", "overall": 5, "unixReviewTime": 100 * u + k}
            )
    reviews += [
        {"reviewerID": "lonely", "asin": "I0", "overall": 5, "unixReviewTime": 1}
    ]  # 1 review: dropped
    reviews += [{"reviewerID": f"U{u}", "asin": "rare", "overall": 5, "unixReviewTime": 9} for u in range(3)]
    write(folder / "r.json.gz", [json.dumps(r) for r in reviews], gz=True)
    write(
        folder / "m.json.gz", [json.dumps({"asin": f"I{i}", "title": f"Item {i}"}) for i in range(8)], gz=True
    )
    write_card(
        cards_dir,
        "tiny-amazon",
        """
title: tiny
domain: test
licence: test
mirrors:
  - format: amazon-2018
    files: {r.json.gz: null, m.json.gz: null}
    options: {reviews: r.json.gz, meta: m.json.gz}
text_template: "{title}"
preprocess: {user_core: 5, item_core: 5, dedup: first}
""",
    )
    data = load_dataset(DatasetSection(name="tiny-amazon", data_dir=str(folder)))
    assert data.num_users == 12 and data.num_items == 8 and data.num_interactions == 72
    assert "lonely" not in data.user_ids and "rare" not in data.item_ids
    assert all(np.all(np.diff(t) >= 0) for t in data.timestamps)  # time order


# --------------------------------------------------------------------------------------------- UniSRec


def unisrec_folder(folder: Path, sequences: dict[str, list[int]], max_len: int = 3, lf: str = "\n") -> Path:
    """Write the six UniSRec files for `sequences` (user index -> item indices), lists truncated to max_len."""
    header = "user_id:token\titem_id_list:token_seq\titem_id:token"
    train, valid, test = [header], [header], [header]
    for user, seq in sequences.items():
        for t in range(len(seq) - 3, 0, -1):  # descending list length, like the real files
            train.append(f"{user}\t{' '.join(map(str, seq[:t][-max_len:]))}\t{seq[t]}")
        valid.append(f"{user}\t{' '.join(map(str, seq[:-2][-max_len:]))}\t{seq[-2]}")
        test.append(f"{user}\t{' '.join(map(str, seq[:-1][-max_len:]))}\t{seq[-1]}")
    n_items = 1 + max(max(s) for s in sequences.values())
    write(folder / "Tiny.train.inter", train, lf)
    write(folder / "Tiny.valid.inter", valid, lf)
    write(folder / "Tiny.test.inter", test, lf)
    write(folder / "Tiny.item2index", [f"ASIN{i:03d}\t{i}" for i in range(n_items)], lf)
    write(folder / "Tiny.user2index", [f"REV{u}\t{u}" for u in sequences], lf)
    write(
        folder / "Tiny.text",
        ["item_id:token\ttext:token_seq"] + [f"ASIN{i:03d}\tItem {i}. Tools. " for i in range(n_items)],
        lf,
    )
    return folder


SEQS = {"0": [0, 1, 2, 3, 4, 5, 6], "1": [7, 3, 8, 9, 0], "2": [5, 4, 3]}  # user 2: no training row


@pytest.mark.parametrize("lf", ["\n", "\r\n"])
def test_unisrec_rebuilds_sequences_and_keeps_the_split(tmp_path, lf):
    folder = unisrec_folder(tmp_path / "u", SEQS, max_len=3, lf=lf)
    raw, _ = load("unisrec", folder, {"prefix": "Tiny", "max_len": 3})
    assert raw.presplit
    got = {}
    for row in raw.interactions.iter_rows(named=True):
        got.setdefault(row["user_id"], []).append(row["item_id"])
    assert got == {f"REV{u}": [f"ASIN{i:03d}" for i in seq] for u, seq in SEQS.items()}
    assert raw.notes["lists_truncated"] > 0  # the chain worked through truncated lists
    data = preprocess(raw, Preprocessing(dedup="none"), "tiny", "fp")
    split = leave_one_out(data)
    for users, targets, offset in (
        (split.valid.users, split.valid.targets, 2),
        (split.test.users, split.test.targets, 1),
    ):
        for u, t in zip(users, targets):
            seq = SEQS[data.user_ids[u][3:]]
            assert data.item_ids[t - 1] == f"ASIN{seq[-offset]:03d}"
    with pytest.raises(DataError, match="fixes its own leave-one-out split"):
        preprocess(raw, Preprocessing(user_core=2, dedup="none"), "tiny", "fp")


def test_unisrec_rows_that_do_not_chain_are_an_error_naming_file_and_line(tmp_path):
    folder = unisrec_folder(tmp_path / "u", SEQS, max_len=3)
    lines = (folder / "Tiny.test.inter").read_text().splitlines()
    lines[2] = "1\t7 3 99\t0"  # user 1's test list does not end its sequence
    write(folder / "Tiny.test.inter", lines)
    with pytest.raises(
        DataError, match=r"Tiny\.test\.inter, line 3: user 1's item list is not the last 3 items"
    ):
        load("unisrec", folder, {"prefix": "Tiny", "max_len": 3})
    with pytest.raises(DataError, match="cannot skip lines"):
        load("unisrec", folder, {"prefix": "Tiny", "max_len": 3}, policy="skip")


# --------------------------------------------------------------------------------------------- NineRec


def ninerec_folder(folder: Path, newline: str = "\r\n") -> Path:
    write(
        folder / "pairs.csv",
        ["user,item,timestamp", "u1,10,3", "u1,11,1", "u2,10,5", "u2,12,6", "u1,12,2"],
        newline,
        encoding="utf-8-sig",
    )
    write(
        folder / "titles.csv",
        ["item,title", '10,"Cats, dogs and more"', "11,Plain title", "12,Unquoted, with a comma"],
        newline,
    )
    (folder / "covers").mkdir()
    (folder / "covers" / "10.jpg").write_bytes(b"\xff\xd8jpeg")
    (folder / "covers" / "12.png").write_bytes(b"\x89PNGpng")
    return folder


NINE_OPTS = {
    "interactions": {
        "file": "pairs.csv",
        "layout": "pairs",
        "sep": "comma",
        "header": True,
        "columns": ["user_id", "item_id", "timestamp"],
    },
    "items": {"file": "titles.csv", "sep": "comma", "header": True, "columns": ["item_id", "title"]},
    "images": {"folder": "covers", "patterns": ["{item_id}.jpg", "{item_id}.png"]},
}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_ninerec_pairs_items_and_covers(tmp_path, newline):
    folder = ninerec_folder(tmp_path / "n", newline)
    raw, _ = load("ninerec", folder, NINE_OPTS)
    assert raw.interactions["user_id"].to_list() == ["u1", "u1", "u2", "u2", "u1"]  # BOM stripped
    assert raw.interactions["timestamp"].to_list() == [3.0, 1.0, 5.0, 6.0, 2.0]
    items = {r["item_id"]: r for r in raw.items.to_dicts()}
    assert items["10"]["title"] == "Cats, dogs and more"  # CSV quoting
    assert items["12"]["title"] == "Unquoted, with a comma"  # the last column takes the rest
    assert items["10"]["image_path"] == str((folder / "covers" / "10.jpg").resolve())
    assert items["12"]["image_path"].endswith("12.png") and items["11"]["image_path"] is None
    data = preprocess(raw, Preprocessing(), "n", "fp")
    assert data.sequences[0].tolist() == [2, 3, 1]  # u1 by time: 11, 12, 10


@pytest.mark.parametrize(
    "sep, line",
    [("tab", "u1\t10 11 12"), ("space", "u1 10 11 12"), ("comma", "u1,10 11 12"), ("auto", "u1\t10 11 12")],
)
def test_ninerec_sequences_any_separator(tmp_path, sep, line):
    folder = tmp_path / "s"
    write(folder / "seq.txt", [line, line.replace("u1", "u2").replace("10 11 12", "12 10")], "\r\n")
    options = {"interactions": {"file": "seq.txt", "layout": "sequences", "sep": sep}}
    raw, _ = load("ninerec", folder, options)
    assert raw.interactions["user_id"].to_list() == ["u1"] * 3 + ["u2"] * 2
    assert raw.interactions["item_id"].to_list() == ["10", "11", "12", "12", "10"]
    assert raw.interactions["timestamp"].null_count() == 5  # file order is time order


def test_ninerec_malformed_lines_error_or_skip_and_count(tmp_path, cards_dir):
    folder = ninerec_folder(tmp_path / "n")
    lines = (folder / "pairs.csv").read_text(encoding="utf-8-sig").splitlines()
    write(folder / "pairs.csv", lines + ["u3,10", "u3,11,notatime", "u3,12,7", "u3,10,8", "u3,11,9"])
    with pytest.raises(DataError, match=r"pairs\.csv, line 7: expected 3 fields"):
        load("ninerec", folder, NINE_OPTS)
    raw, bad = load("ninerec", folder, NINE_OPTS, policy="skip")
    assert bad.skipped == {"pairs.csv": 2} and raw.interactions.height == 8
    # through a card declaring `skip`: the count reaches `recbench data stats`
    write_card(
        cards_dir,
        "tiny-nine",
        f"""
title: tiny
domain: test
licence: test
modalities: [id, text, image]
mirrors:
  - format: ninerec
    files: {{pairs.csv: null, titles.csv: null}}
    options: {json.dumps(NINE_OPTS)}
text_template: "{{title}}"
on_bad_line: skip
preprocess: {{dedup: first}}
""",
    )
    stats = dataset_statistics("tiny-nine", str(folder))
    assert stats["bad_lines_skipped[pairs.csv]"] == 2
    assert stats["users"] == 3 and stats["items"] == 3 and stats["interactions"] == 8
    assert stats["items_with_image"] == 2 and stats["items_with_text"] == 3


def test_ninerec_options_are_checked(tmp_path):
    folder = ninerec_folder(tmp_path / "n")
    with pytest.raises(DataError, match="unknown keys"):
        load("ninerec", folder, {"interactions": {"file": "pairs.csv", "seperator": ","}})
    with pytest.raises(DataError, match="name user_id and item_id"):
        load("ninerec", folder, {"interactions": {"file": "pairs.csv", "columns": ["user", "item"]}})


# --------------------------------------------------------------------------------------------- MovieLens


def ml1m_folder(folder: Path) -> Path:
    write(
        folder / "movies.dat",
        [
            "1::Toy Story (1995)::Animation|Children's|Comedy",
            "2::Jumanji (1995)::Adventure",
            "3::Heat (1995)::Action",
        ],
        encoding="latin-1",
    )
    write(folder / "ratings.dat", ["1::1::5::100", "1::2::3::101", "2::3::4::102"])
    (folder / "posters" / "images").mkdir(parents=True)
    for movie in ("1", "3"):
        (folder / "posters" / "images" / f"{movie}.jpg").write_bytes(b"\xff\xd8")
    part = folder / "ratings-partial-last20pct"
    write(part / "movie_id_mapping.dat", ["movie_id,movie_id_orig", "6041,1", "6042,2", "6043,3"])
    write(part / "ratings_val.dat", ["7::6043::4::975768738", "7::6041::5::975768748"])
    write(part / "ratings_test.dat", ["8::6042::3::978133414", "7::6042::2::978133415"])
    return folder


def test_movielens_posters_give_absolute_image_paths(tmp_path):
    folder = ml1m_folder(tmp_path / "ml")
    raw, _ = load(
        "grouplens-1m", folder, {"images": {"folder": "posters/images", "pattern": "{item_id}.jpg"}}
    )
    paths = dict(zip(raw.items["item_id"], raw.items["image_path"]))
    assert paths["1"] == str((folder / "posters/images/1.jpg").resolve()) and Path(paths["1"]).is_absolute()
    assert paths["2"] is None and paths["3"].endswith("/3.jpg")
    assert (
        raw.items["title"].to_list()[0] == "Toy Story"
        and raw.items["genres"].to_list()[0] == "Animation Children's Comedy"
    )
    content = ItemContent("ml", raw.items, "{title}", missing_image="error")
    with pytest.raises(DataError, match="1 items of ml have no image"):
        content.image_paths()
    # no posters folder: no images, noted (the official zip has none)
    none, _ = load("grouplens-1m", folder, {"images": {"folder": "missing", "required": False}})
    assert none.items["image_path"].null_count() == 3 and "images_folder_missing" in none.notes
    with pytest.raises(DataError, match="is missing"):
        load("grouplens-1m", folder, {"images": {"folder": "missing", "required": True}})
    with pytest.raises(DataError, match="inside the dataset folder"):
        load("grouplens-1m", folder, {"images": "../elsewhere"})


def test_movielens_partial_maps_renumbered_ids_back(tmp_path):
    folder = ml1m_folder(tmp_path / "ml")
    raw, _ = load("grouplens-1m-partial", folder, {"images": "posters/images"})
    assert raw.interactions["item_id"].to_list() == ["3", "1", "2", "2"]
    assert raw.interactions["user_id"].to_list() == ["7", "7", "8", "7"]
    assert raw.items.height == 3 and raw.items["image_path"].null_count() == 1
    write(folder / "ratings-partial-last20pct/ratings_test.dat", ["8::9999::3::978133414"])
    with pytest.raises(
        DataError, match=r"ratings_test\.dat, line 1: movie id 9999 is not in movie_id_mapping\.dat"
    ):
        load("grouplens-1m-partial", folder, {})


# --------------------------------------------------------------------------------------------- readers, content


def test_wrong_encoding_and_truncated_gzip_are_clear_errors(tmp_path):
    folder = tmp_path / "e"
    write(
        folder / "r.json", [json.dumps({"reviewerID": "U1", "asin": "A", "overall": 1, "unixReviewTime": 1})]
    )
    (folder / "m.json").write_bytes(b'{"asin": "A", "title": "caf\xe9"}\n')  # latin-1, not UTF-8
    with pytest.raises(DataError, match=r"m\.json, line 1: not valid utf-8"):
        load("amazon-2018", folder, {"reviews": "r.json", "meta": "m.json"})
    review = json.dumps(
        {"reviewerID": "U1", "asin": "A", "overall": 1, "unixReviewTime": 1, "reviewText": "y" * 50}
    )
    write(folder / "r.json.gz", [review] * 3000, gz=True)
    blob = (folder / "r.json.gz").read_bytes()
    (folder / "r.json.gz").write_bytes(blob[: len(blob) // 2])
    (folder / "r.json").unlink()
    with pytest.raises(DataError, match=r"r\.json\.gz, after line \d+: cannot be read"):
        load("amazon-2018", folder, {"reviews": "r.json.gz", "meta": "m.json"})


def test_tidy_keeps_real_punctuation():
    assert tidy("A. . C") == "A. C"
    assert tidy(". Brand. Cats. ") == "Brand. Cats."
    assert tidy("Wait... U.S.A.  rocks") == "Wait... U.S.A. rocks"
