"""The MicroLens-50K card: its pins, and the official file layout (a sequences .tsv and a quoted titles .csv)
loading through it as published, with and without the card's 5-core."""

from __future__ import annotations

import warnings

import pytest
from conftest import shared_dataset

from recbench.config import DatasetSection
from recbench.data.cards import get_card
from recbench.data.loader import load_dataset
from recbench.data.stats import dataset_statistics

PAIRS_SHA = "46be22f478aa891b9c2a4b357c1df2ac2478793a99d58d07336e6277b6bf426d"
TITLES_SHA = "244aad5380cbbe0fb43458cfcda5ebe820f534384602f80a64dbbcd07dd30e49"


def test_the_card_pins_the_official_files_and_their_statistics():
    card = get_card("microlens-50k")
    first = card.mirrors[0]  # the pinned layout is tried first
    assert first.files == {"MicroLens-50k_pairs.tsv": PAIRS_SHA, "MicroLens-50k_titles.csv": TITLES_SHA}
    assert first.options["interactions"]["layout"] == "sequences"
    assert card.expected.model_dump(exclude_none=True) == {
        "users": 46420,
        "items": 14079,
        "interactions": 332730,
        "items_with_text": 14079,
    }
    assert card.preprocess["user_core"] == card.preprocess["item_core"] == 5
    for raw in ("50,000", "19,220", "359,708", "dataset.user_core=0"):  # the papers' setting, in the prose
        assert raw in card.prose


@pytest.fixture
def official_layout(tmp_path):
    """Five users with five clicks each on items 1-5, and a sixth with three clicks (one on item 6, seen
    once): the 5-core drops user 6 and item 6. A pairs .csv with other content sits beside the .tsv."""
    folder = tmp_path / "MicroLens-50k"
    folder.mkdir()
    lines = [f"{u}\t1 2 3 4 5" if u % 2 else f"{u}\t5 4 3 2 1" for u in range(1, 6)] + ["6\t1 2 6"]
    (folder / "MicroLens-50k_pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    titles = (
        ["item,title"] + [f'{i},"video {i}, with a comma # tag"' for i in range(1, 6)] + ["6,plain title"]
    )
    (folder / "MicroLens-50k_titles.csv").write_text("\n".join(titles) + "\n", encoding="utf-8")
    (folder / "MicroLens-50k_pairs.csv").write_text("user,item,timestamp\n1,1,100\n", encoding="utf-8")
    return folder


def _load(folder, **prep):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(
            DatasetSection(name="microlens-50k", data_dir=str(folder), **prep), use_cache=False
        )
    return data, [str(w.message) for w in caught]


def test_the_sequences_file_loads_as_published_without_the_k_core(official_layout):
    data, caught = _load(official_layout, user_core=0, item_core=0)
    assert (data.num_users, data.num_items, data.num_interactions) == (6, 6, 28)  # the .tsv, not the .csv
    assert data.stats["format"] == "ninerec"
    titles = dict(zip(data.items["item_id"].to_list(), data.items["title"].to_list()))
    assert titles["1"] == "video 1, with a comma # tag" and titles["6"] == "plain title"
    assert any("differ from the sha256 the card pins" in m for m in caught)  # not the official bytes


def test_the_cards_5_core_drops_the_short_user_and_the_rare_item(official_layout):
    data, _ = _load(official_layout)
    assert (data.num_users, data.num_items, data.num_interactions) == (5, 5, 25)
    assert "6" not in data.items["item_id"].to_list()


@pytest.mark.slow
def test_the_official_files_reproduce_the_pinned_statistics():
    folder = shared_dataset("microlens-50k")
    stats = dataset_statistics("microlens-50k", str(folder))
    assert stats["matches_card"] and "local_files_differing_from_card" not in stats
    raw, _ = _load(folder, user_core=0, item_core=0)
    assert (raw.num_users, raw.num_items, raw.num_interactions) == (50000, 19220, 359708)
