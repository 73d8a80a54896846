"""Published figures beside recbench's: matching rows, conventions, ratios; recipe validation of the list."""

import pytest

from recbench.anchors import anchor_rows
from recbench.config import PublishedFigure, RecipeError, recipe_from_dict
from recbench.results import RunResult
from recbench.runner import RunOptions, parse_data_dirs, select_runs

BASE = {
    "name": "anchors",
    "dataset": {"name": "movielens-100k"},
    "encoder": {"kind": "id"},
    "backbone": {"kind": "sasrec"},
}


def _result(seed, kept, excluded, loss="ce", dataset="movielens-100k"):
    return RunResult(
        name=f"r{seed}",
        recipe="anchors",
        experiment="e",
        dataset=dataset,
        split="leave_one_out",
        encoder="id",
        encoder_kind="id",
        backbone="sasrec",
        seed=seed,
        recipe_hash="h",
        protocol_fingerprint="p",
        dataset_fingerprint="d",
        protocol={"loss": loss},
        metrics={"test": {"ndcg@10": excluded}, "test/history-kept": {"ndcg@10": kept}},
    )


def test_figure_compared_under_its_own_convention_with_the_seed_mean_and_ratio():
    fig = PublishedFigure(
        source="paper", dataset="movielens-100k", encoder="id", backbone="sasrec", metrics={"ndcg@10": 0.05}
    )
    results = [_result(0, 0.04, 0.08), _result(1, 0.06, 0.10), _result(2, 0.9, 0.9, dataset="other")]
    (row,) = anchor_rows(results, [fig])
    assert row["recbench"] == pytest.approx(0.05) and row["seeds"] == 2
    assert row["ratio"] == pytest.approx(1.0)
    assert row["other_convention"] == pytest.approx(0.09)
    excluded = fig.model_copy(update={"convention": "history-excluded"})
    (row,) = anchor_rows(results, [excluded])
    assert row["recbench"] == pytest.approx(0.09) and row["other_convention"] == pytest.approx(0.05)


def test_loss_selects_the_row_and_a_missing_row_says_not_run():
    fig = PublishedFigure(
        source="p",
        dataset="movielens-100k",
        encoder="id",
        backbone="sasrec",
        loss="bce",
        metrics={"ndcg@10": 0.1},
    )
    (row,) = anchor_rows([_result(0, 0.04, 0.08, loss="ce")], [fig])
    assert row["recbench"] is None and row["ratio"] is None
    (row,) = anchor_rows([_result(0, 0.04, 0.08, loss="bce")], [fig])
    assert row["seeds"] == 1


def test_a_figure_must_name_a_row_of_the_recipe():
    figure = {"source": "p", "dataset": "movielens-100k", "encoder": "id", "backbone": "sasrec"}
    recipe_from_dict({**BASE, "published": [{**figure, "metrics": {"ndcg@10": 0.05}}]})
    with pytest.raises(RecipeError, match="which no run of this recipe is"):
        recipe_from_dict({**BASE, "published": [{**figure, "backbone": "gru4rec", "metrics": {"hr@10": 1}}]})
    with pytest.raises(RecipeError, match="not a metric"):
        recipe_from_dict({**BASE, "published": [{**figure, "metrics": {"recall@10": 0.1}}]})


def test_data_dir_per_card():
    recipe = recipe_from_dict(
        {
            **BASE,
            "dataset": None,
            "runs": [{"dataset": {"name": "movielens-100k"}}, {"dataset": {"name": "unisrec-scientific"}}],
        }
    )
    dirs = parse_data_dirs(["unisrec-scientific=/data/sci", "/data/all"])
    assert dirs == {"unisrec-scientific": "/data/sci", "": "/data/all"}
    ml, sci = select_runs(recipe, RunOptions(data_dirs=dirs))
    assert ml.dataset.data_dir == "/data/all" and sci.dataset.data_dir == "/data/sci"
    ml, sci = select_runs(recipe, RunOptions(data_dirs=parse_data_dirs(["unisrec-scientific=/d"])))
    assert ml.dataset.data_dir is None and sci.dataset.data_dir == "/d"
    assert parse_data_dirs(["./a=b"]) == {"": "./a=b"}  # a path with '=' stays a path
    with pytest.raises(RecipeError, match="no data card named 'nope'"):
        parse_data_dirs(["nope=/x"])
