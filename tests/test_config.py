"""Recipe validation: misspelt keys, bad values, impossible combinations, overrides, shipped recipes."""

from pathlib import Path

import pytest
import yaml

from recbench.config import RecipeError, expand, load_recipe, recipe_from_dict
from recbench.runner import check_against_cards

REPO = Path(__file__).resolve().parents[1]
BASE = {
    "name": "t",
    "dataset": {"name": "movielens-100k"},
    "encoder": {"kind": "id"},
    "backbone": {"kind": "sasrec"},
}


def _write(tmp_path, data) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_misspelt_key_names_the_key_the_file_and_the_nearest_valid_key(tmp_path):
    path = _write(tmp_path, {**BASE, "train": {"learning_rate": 0.1, "batch_sise": 3}})
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    msg = str(exc.value)
    assert "train.batch_sise" in msg and "did you mean 'batch_size'" in msg
    assert str(path) in msg
    assert "train.learning_rate" in msg


def test_misspelt_key_inside_a_tagged_union(tmp_path):
    raw = {**BASE, "backbone": {"kind": "sasrec", "layerz": 3}, "encoder": {"kind": "text", "poolin": "cls"}}
    with pytest.raises(RecipeError) as exc:
        recipe_from_dict(raw, "x.yaml")
    assert "backbone.layerz" in str(exc.value) and "'layers'" in str(exc.value)
    assert "encoder.poolin" in str(exc.value) and "'pooling'" in str(exc.value)


def test_bad_values_are_errors():
    for bad in (
        {"train": {"lr": -1}},
        {"eval": {"ks": [0, 10]}},
        {"eval": {"ties": "optimistic"}},
        {"train": {"valid_metric": "auc@10"}},
        {"train": {"valid_metric": "ndcg@50"}},  # K not in eval.ks
        {"backbone": {"kind": "sasrec", "dim": 10, "heads": 3}},
        {"backbone": {"kind": "bert4rec"}, "train": {"loss": "bce"}},
    ):
        with pytest.raises(RecipeError):
            recipe_from_dict({**BASE, **bad})


def test_k_larger_than_the_catalogue_fails_before_training():
    recipe = recipe_from_dict({**BASE, "eval": {"ks": [10, 5000]}})
    with pytest.raises(RecipeError, match="only 1682 items"):
        check_against_cards(expand(recipe))


def test_unknown_dataset_suggests_the_nearest_card():
    recipe = recipe_from_dict({**BASE, "dataset": {"name": "movielens-100"}})
    with pytest.raises(RecipeError, match="movielens-100k"):
        check_against_cards(expand(recipe))


def test_overrides_revalidate_the_whole_recipe(tmp_path):
    path = _write(tmp_path, BASE)
    recipe = load_recipe(path, ["train.lr=3e-4", "eval.ks=[1, 10]", "backbone.layers=1"])
    assert recipe.train.lr == pytest.approx(3e-4)
    assert recipe.eval.ks == (1, 10)
    assert recipe.backbone.layers == 1
    with pytest.raises(RecipeError, match="train.lrr"):
        load_recipe(path, ["train.lrr=1"])
    with pytest.raises(RecipeError, match="key=value"):
        load_recipe(path, ["train.lr"])


def test_grid_expands_every_combination_with_distinct_hashes():
    raw = {**BASE, "grid": {"seed": [0, 1], "encoder": [{"kind": "id"}, {"kind": "text", "mode": "frozen"}]}}
    runs = expand(recipe_from_dict(raw))
    assert len(runs) == 4
    assert len({r.recipe_hash for r in runs}) == 4
    assert {r.run_name for r in runs} == {
        f"movielens-100k/leave_one_out/{e}/sasrec/seed{s}"
        for e in ("id", "text-minilm-frozen")
        for s in (0, 1)
    }


def test_recipe_hash_is_stable_and_ignores_the_experiment_name():
    a = expand(recipe_from_dict(BASE))[0]
    b = expand(recipe_from_dict({**BASE, "experiment": "other"}))[0]
    c = expand(recipe_from_dict({**BASE, "train": {"lr": 0.002}}))[0]
    assert a.recipe_hash == b.recipe_hash != c.recipe_hash


def test_protocol_fingerprint_inputs_differ_with_the_protocol_not_the_model():
    a = expand(recipe_from_dict(BASE))[0].protocol()
    b = expand(recipe_from_dict({**BASE, "backbone": {"kind": "sasrec", "layers": 4}}))[0].protocol()
    c = expand(recipe_from_dict({**BASE, "eval": {"exclude_seen": False}}))[0].protocol()
    assert a == b and a != c


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    text = path.read_text()
    assert text.startswith("#"), "a recipe opens with a comment: what it compares, the command that runs it"
    assert "recbench run" in text.split("\n\n")[0] or "make " in text.split("\n\n")[0]
    recipe = load_recipe(path)
    check_against_cards(expand(recipe))


def test_recipe_hash_ignores_where_the_data_lives():
    here = expand(recipe_from_dict({**BASE, "dataset": {"name": "movielens-100k", "data_dir": "/a"}}))[0]
    there = expand(recipe_from_dict({**BASE, "dataset": {"name": "movielens-100k", "data_dir": "/b"}}))[0]
    other = expand(recipe_from_dict({**BASE, "dataset": {"name": "movielens-100k", "min_rating": 4}}))[0]
    assert here.recipe_hash == there.recipe_hash != other.recipe_hash
