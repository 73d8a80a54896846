"""S3-Rec sequence files and the LC-Rec JSON layout: tiny folders written here (the order on a line is the time
order, so leave-one-out holds out exactly the last two items; text joins by item id; malformed input is an
error naming file and line or key, or skipped and counted), the semantic-ID reader, and the shipped cards
checked against the real files in ../shared/data when present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_dataset

from recbench.config import DatasetSection
from recbench.data.adapters import get_adapter
from recbench.data.cards import get_card
from recbench.data.content import ItemContent
from recbench.data.loader import load_dataset
from recbench.data.readers import BadLines
from recbench.data.schema import DataError
from recbench.data.semantic_ids import load_semantic_ids, read_semantic_ids, semantic_id_spec
from recbench.data.splits import leave_one_out
from recbench.data.stats import dataset_statistics

S3REC_CARDS = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "toys": "Toys_and_Games"}

# user -> items in time order; item 10 sorts after 9 only numerically; user 3's last item repeats an earlier one
SEQUENCES = {"1": ["3", "1", "2", "10"], "2": ["9", "10", "3"], "3": ["2", "9", "1", "2", "9"]}
PHRASES = {"1": "rose cream", "2": "kids shampoo", "3": "", "9": "nail lacquer", "10": "hair dryer 2000w"}


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def s3rec_folder(folder: Path, extra: list[str] = (), text_extra: list[str] = ()) -> Path:
    write(
        folder / "s3rec" / "Tiny.txt", [" ".join([u, *items]) for u, items in SEQUENCES.items()] + list(extra)
    )
    rows = ["s3rec_item_id\tasin\tidgenrec_text_id"]
    rows += [f"{i}\tASIN{i}\t{p}" for i, p in PHRASES.items()] + list(text_extra)
    write(folder / "text" / "Tiny_text.tsv", rows)
    return folder


S3REC_OPTIONS = {
    "sequences": "s3rec/Tiny.txt",
    "text": {"file": "text/Tiny_text.tsv", "columns": ["item_id", "asin", "title"]},
    "semantic_ids": {"file": "codes.index.json", "id_shift": 1},
}


def s3rec(folder: Path, policy: str = "error", **options):
    bad = BadLines(policy)
    return get_adapter("s3rec")(folder, {**S3REC_OPTIONS, **options}, bad), bad


@pytest.fixture
def cards_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cards"
    folder.mkdir()
    monkeypatch.setenv("RECBENCH_CARDS", str(folder))
    return folder


def write_card(folder: Path, name: str, mirror: dict, template: str, policy: str = "error") -> None:
    front = {
        "name": name,
        "title": name,
        "domain": "test",
        "modalities": ["id", "text"],
        "licence": "test data",
        "mirrors": [mirror],
        "text_template": template,
        "on_bad_line": policy,
        "presplit": True,
        "preprocess": {"dedup": "none"},
    }
    (folder / f"{name}.md").write_text(f"---\n{json.dumps(front)}\n---\n# {name}\n", "utf-8")


# ------------------------------------------------------------------------------------------------ S3-Rec


def test_s3rec_leave_one_out_holds_out_exactly_the_last_two_items_of_each_line(tmp_path, cards_dir):
    folder = s3rec_folder(tmp_path / "d")
    files = {"s3rec/Tiny.txt": None, "text/Tiny_text.tsv": None}
    write_card(
        cards_dir, "tiny-s3rec", {"format": "s3rec", "files": files, "options": S3REC_OPTIONS}, "{title}"
    )
    data = load_dataset(DatasetSection(name="tiny-s3rec", data_dir=str(folder)))
    assert data.user_ids == ["1", "2", "3"] and data.item_ids == ["1", "2", "3", "9", "10"]  # numeric order
    assert data.presplit and data.timestamps is None
    raw = [[data.item_ids[i - 1] for i in seq] for seq in data.sequences]
    assert raw == list(SEQUENCES.values())  # line order kept, the repeat of item 2 and 9 too
    split = leave_one_out(data)
    for evalset, cut in ((split.test, -1), (split.valid, -2)):
        for u, history, target in zip(evalset.users, evalset.histories, evalset.targets):
            line = SEQUENCES[data.user_ids[u]]
            assert data.item_ids[target - 1] == line[cut]
            assert [data.item_ids[i - 1] for i in history] == line[:cut]
    texts = ItemContent.from_data(data, "{title}").texts()
    assert texts == [PHRASES[i] for i in data.item_ids]  # joined by id; item 3's empty phrase stays empty
    assert data.items["asin"].to_list() == [f"ASIN{i}" for i in data.item_ids]
    # a presplit source refuses filtering that could change the held-out items
    with pytest.raises(DataError, match="fixes its own leave-one-out split"):
        load_dataset(DatasetSection(name="tiny-s3rec", data_dir=str(folder), user_core=2))


@pytest.mark.parametrize(
    "line, why",
    [
        ("4 5 x7 8", "item id (position 2) 'x7' is not a non-negative integer"),
        ("u4 5 6 7", "user id 'u4' is not a non-negative integer"),
        ("4 5", "user 4 has 1 item(s), fewer than the adapter option min_items = 2"),
        ("4", "user 4 has 0 item(s)"),
        ("2 5 6 7", "user 2 already has line 2"),
    ],
)
def test_s3rec_bad_line_is_an_error_naming_file_and_line_or_is_skipped_and_counted(tmp_path, line, why):
    folder = s3rec_folder(tmp_path / "d", extra=[line])
    with pytest.raises(DataError) as err:
        s3rec(folder)
    message = str(err.value)
    assert "Tiny.txt, line 4:" in message and why in message and "on_bad_line: skip" in message
    raw, bad = s3rec(folder, policy="skip")
    assert bad.skipped == {"Tiny.txt": 1} and raw.notes["bad_lines_skipped[Tiny.txt]"] == 1
    assert raw.interactions.height == sum(map(len, SEQUENCES.values()))  # every good line kept whole


def test_s3rec_an_empty_line_between_users_is_a_bad_line(tmp_path):
    folder = s3rec_folder(tmp_path / "d")
    path = folder / "s3rec" / "Tiny.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "   ", *lines[1:]]) + "\n\n")  # trailing blank lines are harmless
    with pytest.raises(DataError, match=r"Tiny\.txt, line 2: empty line"):
        s3rec(folder)
    raw, bad = s3rec(folder, policy="skip")
    assert bad.total == 1 and raw.interactions["user_id"].n_unique() == 3


def test_s3rec_min_items_checks_the_5_core_claim(tmp_path):
    folder = s3rec_folder(tmp_path / "d")
    with pytest.raises(
        DataError,
        match=r"Tiny\.txt, line 2: user 2 has 3 item\(s\), fewer than the adapter option min_items = 4",
    ):
        s3rec(folder, min_items=4)
    with pytest.raises(DataError, match="min_items must be a positive integer"):
        s3rec(folder, min_items="5")


def test_s3rec_text_rows_bad_repeated_or_unused(tmp_path):
    folder = s3rec_folder(tmp_path / "d", text_extra=["abc\tASINX\tbad id", "9\tASIN9b\tsecond row"])
    with pytest.raises(DataError, match=r"Tiny_text\.tsv, line 7: item id 'abc' is not"):
        s3rec(folder)
    raw, bad = s3rec(folder, policy="skip")
    assert bad.skipped == {"Tiny_text.tsv": 2}  # the bad id and the repeat of item 9 (the first row is kept)
    assert raw.items.filter(raw.items["item_id"] == "9")["title"].item() == "nail lacquer"

    folder = s3rec_folder(tmp_path / "e", text_extra=["77\tASIN77\tnever bought", "5\tASIN5"])
    raw, _ = s3rec(folder)
    assert raw.notes["text_rows_without_interactions"] == 2
    assert (
        raw.items.filter(raw.items["item_id"] == "5")["title"].item() is None
    )  # missing last column: no text


def test_s3rec_options_are_checked(tmp_path):
    folder = s3rec_folder(tmp_path / "d")
    with pytest.raises(DataError, match=r"unknown keys \['sequence'\]"):
        get_adapter("s3rec")(folder, {"sequence": "s3rec/Tiny.txt"}, BadLines())
    with pytest.raises(DataError, match="needs the option `sequences`"):
        get_adapter("s3rec")(folder, {}, BadLines())
    with pytest.raises(DataError, match="missing file"):
        s3rec(folder, sequences="s3rec/Other.txt")
    with pytest.raises(DataError, match=r"semantic_ids has unknown keys \['shift'\]"):
        s3rec(folder, semantic_ids={"file": "x.json", "shift": 1})
    raw, _ = s3rec(folder, text=None)  # no text table: items are the ids alone
    assert sorted(raw.items["item_id"].to_list(), key=int) == ["1", "2", "3", "9", "10"]


# ------------------------------------------------------------------------------------------------ LC-Rec


INTER = {"10": [4, 0, 7, 2], "11": [7, 4, 3], "2": [0, 3, 7, 7]}
ITEMS = {
    str(i): {"title": f"video {i} #tag", "description": "", "brand": "", "categories": ""}
    for i in (0, 2, 3, 4, 7)
}


def lcrec_folder(folder: Path, inter: dict | str = None, items: dict | str = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in (
        ("inter", INTER if inter is None else inter),
        ("item", ITEMS if items is None else items),
    ):
        text = value if isinstance(value, str) else json.dumps(value)
        (folder / f"Tiny.{name}.json").write_text(text, encoding="utf-8")
    codes = {str(i): [f"<a_{i}>", f"<b_{i % 3}>"] for i in (0, 2, 3, 4, 7, 99)}
    (folder / "Tiny.index.json").write_text(json.dumps(codes), encoding="utf-8")
    return folder


def lcrec(folder: Path, policy: str = "error", **options):
    bad = BadLines(policy)
    return get_adapter("lcrec-json")(folder, {"prefix": "Tiny", **options}, bad), bad


def test_lcrec_loads_lists_in_order_and_splits_leave_one_out(tmp_path, cards_dir):
    folder = lcrec_folder(tmp_path / "d")
    mirror = {
        "format": "lcrec-json",
        "files": {"Tiny.inter.json": None, "Tiny.item.json": None},
        "options": {"prefix": "Tiny", "semantic_ids": {"file": "Tiny.index.json"}},
    }
    write_card(cards_dir, "tiny-lcrec", mirror, "{title}")
    data = load_dataset(DatasetSection(name="tiny-lcrec", data_dir=str(folder)))
    assert data.user_ids == ["2", "10", "11"] and data.item_ids == ["0", "2", "3", "4", "7"]
    assert data.presplit and data.num_interactions == 11
    split = leave_one_out(data)
    for u, target in zip(split.test.users, split.test.targets):
        assert data.item_ids[target - 1] == str(INTER[data.user_ids[u]][-1])
    for u, target in zip(split.valid.users, split.valid.targets):
        assert data.item_ids[target - 1] == str(INTER[data.user_ids[u]][-2])
    texts = ItemContent.from_data(data, get_card("tiny-lcrec").text_template).texts()
    assert texts == [f"video {i} #tag" for i in data.item_ids]
    assert data.items.columns[:5] == ["item_id", "title", "description", "brand", "categories"]
    codes = load_semantic_ids("tiny-lcrec", str(folder), data.item_ids)
    assert list(codes) == data.item_ids and codes["7"] == ["<a_7>", "<b_1>"]  # item 99 (not loaded) ignored


@pytest.mark.parametrize(
    "entry, why",
    [
        ({"5": [1, "x", 2]}, "item id at position 1 'x' is not a non-negative integer"),
        ({"5": [1, 2.5, 3]}, "item id at position 1 2.5 is not an integer"),
        ({"5": []}, "0 item(s), fewer than the adapter option min_items = 2"),
        ({" 10": [1, 2]}, "a second list for this user"),
        ({"5": [3]}, "1 item(s), fewer than the adapter option min_items = 2"),
        ({"5": "3 4"}, "expected a list of item ids, found str"),
    ],
)
def test_lcrec_bad_entry_is_an_error_naming_file_and_user_or_is_skipped_and_counted(tmp_path, entry, why):
    folder = lcrec_folder(tmp_path / "d", inter={**INTER, **entry})
    with pytest.raises(DataError) as err:
        lcrec(folder)
    assert f"Tiny.inter.json, user {next(iter(entry))!r}:" in str(err.value) and why in str(err.value)
    raw, bad = lcrec(folder, policy="skip")
    assert bad.skipped == {"Tiny.inter.json": 1} and raw.notes["bad_lines_skipped[Tiny.inter.json]"] == 1
    assert set(raw.interactions["user_id"].to_list()) == set(INTER)


def test_lcrec_bad_item_entries(tmp_path):
    folder = lcrec_folder(tmp_path / "d", items={**ITEMS, "x1": {"title": "a"}, "8": "just a title"})
    with pytest.raises(DataError, match=r"Tiny\.item\.json, item 'x1': item id 'x1' is not"):
        lcrec(folder)
    raw, bad = lcrec(folder, policy="skip")
    assert bad.skipped == {"Tiny.item.json": 2}
    folder = lcrec_folder(tmp_path / "e", items={**ITEMS, "9": {"title": {"en": "a"}}})
    with pytest.raises(DataError, match=r"item '9': field 'title': dict is not text"):
        lcrec(folder)
    folder = lcrec_folder(tmp_path / "f", items={**ITEMS, "9": {"title": "t", "categories": ["A", "B"]}})
    raw, _ = lcrec(folder)
    assert raw.items.filter(raw.items["item_id"] == "9")["categories"].item() == "A, B"
    assert raw.notes["item_entries_without_interactions"] == 1


def test_lcrec_files_that_are_not_json_objects_are_errors_with_a_place(tmp_path):
    folder = lcrec_folder(tmp_path / "d", inter='{"1": [1, 2],\n "2": [3, 4')
    with pytest.raises(DataError, match=r"Tiny\.inter\.json, line 2, column \d+: not valid JSON"):
        lcrec(folder, policy="skip")  # not a bad entry: the whole file is unreadable
    folder = lcrec_folder(tmp_path / "e", inter='{"1": [1, 2, 3], "1": [4, 5, 6]}')
    with pytest.raises(DataError, match=r"the key '1' appears twice"):
        lcrec(folder, policy="skip")
    folder = lcrec_folder(tmp_path / "f", inter="[[1, 2, 3]]")
    with pytest.raises(DataError, match="expected a JSON object at the top level, found list"):
        lcrec(folder)
    with pytest.raises(DataError, match=r"unknown keys \['prefx'\]"):
        get_adapter("lcrec-json")(folder, {"prefx": "Tiny"}, BadLines())


# ------------------------------------------------------------------------------------------ semantic IDs


def test_semantic_ids_map_shifted_keys_onto_the_loaded_items(tmp_path):
    path = tmp_path / "codes.index.json"
    path.write_text(json.dumps({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "<b_3>"], "8": ["<a_4>", "<b_4>"]}))
    assert read_semantic_ids(path, ["9", "1"], id_shift=1) == {
        "9": ["<a_4>", "<b_4>"],
        "1": ["<a_1>", "<b_2>"],
    }
    with pytest.raises(DataError, match=r"1 of 2 loaded items have no codes \(e\.g\. items 3, .*id_shift"):
        read_semantic_ids(path, ["1", "3"], id_shift=1)
    path.write_text(json.dumps({"0": ["<a_1>", ""]}))
    with pytest.raises(DataError, match=r"codes\.index\.json, key '0': expected a non-empty list of code"):
        read_semantic_ids(path, ["1"], id_shift=1)
    path.write_text(json.dumps({"a0": ["<a_1>"]}))
    with pytest.raises(DataError, match=r"key 'a0': key 'a0' is not a non-negative integer"):
        read_semantic_ids(path, ["1"])
    with pytest.raises(DataError, match="missing semantic-ID file"):
        read_semantic_ids(tmp_path / "absent.json", ["1"])


def test_semantic_id_spec_declarations():
    assert semantic_id_spec({}) is None
    assert semantic_id_spec({"semantic_ids": "x.json"}).id_shift == 0
    assert semantic_id_spec({"semantic_ids": {"file": "x.json", "id_shift": 1}}).id_shift == 1
    for bad in ({"id_shift": 1}, {"file": "x.json", "id_shift": "1"}, ["x.json"]):
        with pytest.raises(DataError, match="semantic_ids"):
            semantic_id_spec({"semantic_ids": bad})


def test_a_card_without_semantic_ids_says_so(tmp_path, cards_dir):
    folder = s3rec_folder(tmp_path / "d")
    options = {k: v for k, v in S3REC_OPTIONS.items() if k != "semantic_ids"}
    write_card(
        cards_dir,
        "tiny-s3rec",
        {"format": "s3rec", "files": {"s3rec/Tiny.txt": None}, "options": options},
        "{title}",
    )
    with pytest.raises(DataError, match="declares no semantic IDs"):
        load_semantic_ids("tiny-s3rec", str(folder), ["1"])


# ------------------------------------------------------------------------------------------ shipped cards


def test_the_three_s3rec_cards_are_one_family():
    """Same adapter and settings; the options differ only by the category's file names."""
    cards = {slug: get_card(f"amazon-2014-s3rec-{slug}") for slug in S3REC_CARDS}
    shapes = set()
    for slug, card in cards.items():
        (mirror,) = card.mirrors
        assert mirror.format == "s3rec" and card.presplit and card.preprocess == {"dedup": "none"}
        options = {k: v for k, v in mirror.options.items() if k != "semantic_ids"}
        shapes.add(json.dumps(options, sort_keys=True).replace(S3REC_CARDS[slug], "CAT"))
        assert set(mirror.files) == {options["sequences"], options["text"]["file"]}
    assert len(shapes) == 1
    assert (
        semantic_id_spec(cards["beauty"].mirrors[0].options).file == "semantic-ids/Beauty.letter.index.json"
    )
    assert (
        semantic_id_spec(get_card("microlens-lcrec-subset").mirrors[0].options).file == "Microlens.index.json"
    )


@pytest.mark.parametrize(
    "card_name, folder",
    [(f"amazon-2014-s3rec-{slug}", "amazon-2014-beauty-sports-toys") for slug in S3REC_CARDS]
    + [("microlens-lcrec-subset", "microlens-lcrec-subset")],
)
def test_card_statistics_on_the_shared_data(card_name, folder):
    path = shared_dataset(folder)
    stats = dataset_statistics(card_name, str(path))
    expected = get_card(card_name).expected.model_dump(exclude_none=True)
    assert {"users", "items", "interactions"} <= set(expected)
    assert {k: stats[k] for k in expected} == expected and stats["matches_card"]
    assert "local_files_differing_from_card" not in stats  # the shared copies are the ones pinned


def test_s3rec_beauty_on_the_shared_data_keeps_the_file_order_and_its_codes():
    folder = shared_dataset("amazon-2014-beauty-sports-toys")
    data = load_dataset(DatasetSection(name="amazon-2014-s3rec-beauty", data_dir=str(folder)))
    lines = [line.split() for line in (folder / "s3rec" / "Beauty.txt").read_text().splitlines()]
    split = leave_one_out(data)
    assert len(split.test) == len(lines) == 22363
    position = {u: k for k, u in enumerate(data.user_ids)}
    for line in lines[::97]:  # a spread of users: the held-out items are the line's last two
        u = position[line[0]]
        assert data.item_ids[split.test.targets[u] - 1] == line[-1]
        assert data.item_ids[split.valid.targets[u] - 1] == line[-2]
    texts = ItemContent.from_data(data, get_card("amazon-2014-s3rec-beauty").text_template).texts()
    assert texts[data.item_ids.index("1")] == "nail lacquer simmer and shimmer"
    codes = load_semantic_ids("amazon-2014-s3rec-beauty", str(folder), data.item_ids)
    assert len(codes) == 12101 and codes["1"] == ["<a_183>", "<b_70>", "<c_232>", "<d_6>"]  # key "0"
    assert len({tuple(c) for c in codes.values()}) == 12088  # LETTER's 13 collisions, as SOURCE.md says


def test_microlens_lcrec_on_the_shared_data_keeps_the_list_order_and_its_codes():
    folder = shared_dataset("microlens-lcrec-subset")
    data = load_dataset(DatasetSection(name="microlens-lcrec-subset", data_dir=str(folder)))
    inter = json.loads((folder / "Microlens.inter.json").read_text())
    split = leave_one_out(data)
    assert len(split.test) == len(inter) == 13210
    for u, target in zip(split.test.users, split.test.targets):
        assert data.item_ids[target - 1] == str(inter[data.user_ids[u]][-1])
    codes = load_semantic_ids("microlens-lcrec-subset", str(folder), data.item_ids)
    assert len(codes) == 5312 and codes["0"] == ["<a_189>", "<b_211>", "<c_45>", "<d_169>"]
