"""Each card whose data is present in ../shared/data, loaded in place and checked against the card's expected
statistics (skipped, with the reason, when the folder is absent). Each load takes about a second."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import shared_dataset
from tiny_encoders import tiny_clip

from recbench.config import DatasetSection, expand, recipe_from_dict
from recbench.data.adapters import get_adapter
from recbench.data.cards import get_card
from recbench.data.content import ItemContent
from recbench.data.loader import load_dataset
from recbench.data.readers import BadLines
from recbench.data.splits import leave_one_out
from recbench.data.stats import dataset_statistics
from recbench.runner import run_spec

# card name -> folder in ../shared/data
PRESENT = {
    "movielens-100k": "ml-100k",
    "unisrec-scientific": "amazon-scientific",
    "movielens-1m-last20pct": "ml-1m",
}


@pytest.mark.parametrize("card_name, folder", sorted(PRESENT.items()))
def test_card_statistics_on_the_shared_data(card_name, folder):
    path = shared_dataset(folder)
    card = get_card(card_name)
    stats = dataset_statistics(card_name, str(path))
    expected = card.expected.model_dump(exclude_none=True)
    assert expected, f"{card_name} pins no statistics"
    assert {k: stats[k] for k in expected} == expected
    assert stats["matches_card"]
    assert "local_files_differing_from_card" not in stats  # the shared copy is the one the card pins


def test_movielens_100k():
    data = load_dataset(DatasetSection(name="movielens-100k", data_dir=str(shared_dataset("ml-100k"))))
    assert (data.num_users, data.num_items, data.num_interactions) == (943, 1682, 100000)
    assert data.stats["timestamp_ties"] == 50561  # as the card's prose says


def test_amazon_scientific_keeps_the_given_split_exactly():
    folder = shared_dataset("amazon-scientific")
    data = load_dataset(DatasetSection(name="unisrec-scientific", data_dir=str(folder)))
    assert (data.num_users, data.num_items, data.num_interactions) == (8442, 4385, 59427)
    assert data.presplit and data.timestamps is None
    texts = ItemContent.from_data(data, "{text}", missing_text="error").texts()
    assert len(texts) == 4385 and all(texts)  # text for every item
    assert texts[data.item_ids.index("B0000223SI")].startswith("PORTER-CABLE 740000801")

    items = dict(line.rstrip("\n").split("\t")[::-1] for line in open(folder / "Scientific.item2index"))
    users = dict(line.rstrip("\n").split("\t")[::-1] for line in open(folder / "Scientific.user2index"))

    def given(part: str) -> dict[str, tuple[str, list[str]]]:
        rows = {}
        with open(folder / f"Scientific.{part}.inter") as fh:
            next(fh)
            for line in fh:
                user, history, target = line.rstrip("\n").split("\t")
                rows[users[user]] = (items[target], [items[i] for i in history.split()])
        return rows

    split = leave_one_out(data)
    for part, evalset in (("valid", split.valid), ("test", split.test)):
        want = given(part)
        assert len(evalset) == len(want) == 8442
        for u, history, target in zip(evalset.users, evalset.histories, evalset.targets):
            user = data.user_ids[u]
            assert data.item_ids[target - 1] == want[user][0]  # the given target, exactly
            assert [data.item_ids[i - 1] for i in history[-50:]] == want[user][1]  # and the given history
    lengths = [len(s) for s in data.sequences]
    assert (min(lengths), max(lengths)) == (5, 80)


def test_ml1m_movies_and_posters():
    folder = shared_dataset("ml-1m")
    raw = get_adapter("grouplens-1m-partial")(
        folder, dict(get_card("movielens-1m-last20pct").mirrors[0].options), BadLines()
    )
    items = raw.items
    assert items.height == 3883  # movies.dat
    with_poster = items.filter(items["image_path"].is_not_null())
    assert with_poster.height == 3256
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in with_poster["image_path"].to_list()[:50])
    assert items.filter(items["item_id"] == "1")["title"].item() == "Toy Story"
    assert raw.interactions.height == 200042
    data = load_dataset(DatasetSection(name="movielens-1m-last20pct", data_dir=str(folder)))
    content = ItemContent.from_data(data, get_card("movielens-1m-last20pct").text_template)
    paths = content.image_paths()
    assert sum(p is not None for p in paths) == 3244 and len(paths) == data.num_items == 3511
    assert (
        content.texts()[data.item_ids.index("1")] == "Toy Story (1995). Genres: Animation Children's Comedy"
    )


def test_the_official_ml1m_card_points_at_the_partial_card_for_this_folder():
    folder = shared_dataset("ml-1m")
    with pytest.raises(Exception, match="movielens-1m-last20pct"):
        load_dataset(DatasetSection(name="movielens-1m", data_dir=str(folder)))


def test_the_official_ml1m_card_counts_match_the_shared_pair_set():
    """ratings.dat itself is absent, but its full (user, movie) pair set is there: the card's counts hold."""
    import polars as pl

    pairs = pl.read_parquet(shared_dataset("ml-1m") / "ratings-pairs-no-time" / "ratings.parquet")
    expected = get_card("movielens-1m").expected
    assert pairs.unique().height == pairs.height == expected.interactions  # no duplicate pairs to remove
    assert pairs["userID"].n_unique() == expected.users
    assert pairs["movieID"].n_unique() == expected.items == expected.items_with_text


@pytest.mark.slow
def test_clip_image_smoke_run_on_ml1m_posters(tmp_path):
    """The CLIP image path on a real image-bearing dataset: ML-1M's movies with their IMDb posters, encoded by
    a tiny random CLIP through the model's own image processor, one epoch of SASRec, metrics out."""
    folder = shared_dataset("ml-1m")
    clip = tiny_clip(tmp_path / "tiny-clip", layers=2)
    recipe = recipe_from_dict(
        {
            "name": "ml1m-posters-clip-smoke",
            "dataset": {"name": "movielens-1m-last20pct", "data_dir": str(folder)},
            "encoder": {"kind": "clip", "model": str(clip), "towers": "image", "mode": "frozen"},
            "backbone": {"kind": "sasrec", "dim": 16, "layers": 1, "heads": 1, "inner": 32},
            "train": {"max_len": 20, "batch_size": 512, "max_epochs": 1, "patience": 1},
        }
    )
    (spec,) = expand(recipe)
    result = run_spec(spec, tracker=None)
    assert result.encoder_kind == "clip" and result.notes["towers"] == "image"
    assert result.notes["encoder_cache_hit"] is False  # every poster went through CLIP's image processor
    assert result.data_stats["items"] == 3511  # the card's catalogue; 3,244 of these items have a poster
    assert result.data_stats["items_with_image_file"] == 3256  # every poster file of movies.dat found
    test = result.metrics["test"]
    assert set(test) >= {"hr@10", "ndcg@10", "mrr@10"} and all(0.0 <= v <= 1.0 for v in test.values())
    assert result.cost.encode_s > 0
