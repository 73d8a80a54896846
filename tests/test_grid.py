"""Grids and explicit run lists; slices; skip-if-done and resumption after a run killed mid-way."""

import re

import numpy as np
import pytest
import torch

import recbench.runner as runner_mod
from recbench.config import RecipeError, baseline_label, expand, recipe_from_dict
from recbench.data.splits import EvalSet
from recbench.evaluation.protocol import (
    SliceSpec,
    eval_slices,
    history_slices,
    popularity_slices,
    popularity_thresholds,
)
from recbench.reporting import Reporter
from recbench.runner import RunOptions, run_recipe
from recbench.tracking import metric_key

BASE = {
    "name": "t",
    "dataset": {"name": "movielens-100k"},
    "encoder": {"kind": "id"},
    "backbone": {"kind": "sasrec", "dim": 32},
}


# --------------------------------------------------------------------------------------------- runs: lists


def test_runs_entries_merge_into_the_shared_sections():
    recipe = recipe_from_dict(
        {
            **BASE,
            "train": {"lr": 0.002, "max_len": 30},
            "runs": [
                {"backbone": {"layers": 1}},  # same kind: merged key by key
                {"encoder": {"kind": "text", "label": "txt"}, "backbone": {"kind": "gru4rec"}},  # other kind
                {"train": {"lr": 0.01}, "seed": 3},
            ],
        }
    )
    a, b, c = expand(recipe)
    assert a.backbone.kind == "sasrec" and a.backbone.dim == 32 and a.backbone.layers == 1
    assert b.encoder.kind == "text" and b.backbone.kind == "gru4rec" and b.backbone.dim == 64  # replaced
    assert c.train.lr == 0.01 and c.train.max_len == 30 and c.seed == 3  # merged onto the shared train
    assert a.train.lr == b.train.lr == 0.002
    assert len({a.recipe_hash, b.recipe_hash, c.recipe_hash}) == 3
    assert baseline_label(recipe) == "id"


def test_runs_times_grid_axes():
    recipe = recipe_from_dict(
        {
            **BASE,
            "runs": [
                {"encoder": {"kind": "id"}},
                {"encoder": {"kind": "id", "label": "id2", "init_std": 0.1}},
            ],
            "grid": {"seed": [0, 1, 2]},
        }
    )
    runs = expand(recipe)
    assert [(r.encoder.display, r.seed) for r in runs] == [(e, s) for e in ("id", "id2") for s in (0, 1, 2)]


def test_runs_can_supply_every_section():
    raw = {"name": "t", "runs": [{**{k: v for k, v in BASE.items() if k != "name"}}]}
    assert len(expand(recipe_from_dict(raw))) == 1
    with pytest.raises(RecipeError, match="`backbone` is missing"):
        recipe_from_dict({"name": "t", "dataset": BASE["dataset"], "runs": [{"encoder": {"kind": "id"}}]})


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"runs": []}, "`runs` is empty"),
        ({"runs": [{"seed": 1}], "grid": {"seed": [1, 2]}}, "also a grid axis"),
        ({"runs": [{"encoder": {"kind": "id"}}], "grid": {"encoder": [{"kind": "id"}]}}, "also a grid axis"),
        ({"runs": [{"seed": 1}, {"seed": 1}]}, "identical"),
        ({"grid": {"seed": [4, 4]}}, "identical"),
        ({"runs": [{"encoder": {"kind": "id", "dimm": 3}}]}, "runs.0.encoder.dimm"),
        ({"runs": [{"bogus": 1}]}, "runs.0.bogus"),
        ({"runs": [{"train": {"valid_metric": "ndcg@7"}}]}, "needs its K"),
        ({"baseline": "nope"}, "baseline 'nope'"),
    ],
)
def test_bad_run_lists_are_errors_that_say_why(extra, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        recipe_from_dict({**BASE, **extra}, "x.yaml")


def test_misspelt_key_in_a_run_entry_suggests_the_nearest():
    with pytest.raises(RecipeError, match="did you mean 'layers'"):
        recipe_from_dict({**BASE, "runs": [{"backbone": {"kind": "sasrec", "layerz": 1}}]}, "x.yaml")


# --------------------------------------------------------------------------------------------- slices


def test_slice_thresholds_are_validated_and_in_the_protocol():
    with pytest.raises(RecipeError, match="popularity_head"):
        recipe_from_dict({**BASE, "eval": {"popularity_head": 0.6, "popularity_tail": 0.5}})
    with pytest.raises(RecipeError):
        recipe_from_dict({**BASE, "eval": {"history_bounds": [-1, 3]}})
    spec = expand(recipe_from_dict({**BASE, "eval": {"history_bounds": [20, 5, 5]}}))[0]
    assert spec.eval.history_bounds == (5, 20)
    base = expand(recipe_from_dict(BASE))[0].protocol()
    for change in ({"popularity_head": 0.1}, {"popularity_tail": 0.3}, {"history_bounds": [3]}):
        assert expand(recipe_from_dict({**BASE, "eval": change}))[0].protocol() != base


def test_popularity_thresholds_by_hand():
    # items 1..10 with training counts; index 0 is padding
    counts = np.array([0, 9, 7, 7, 5, 3, 2, 2, 1, 0, 0])
    # head 0.2 -> the 2nd most-trained item has count 7 -> head = count >= 7 (3 items, ties join the head)
    # tail 0.5 -> the 5th least-trained item has count 2 -> tail = count <= 2 (5 items)
    assert popularity_thresholds(counts, 0.2, 0.5) == (7, 2)
    s = popularity_slices(np.array([1, 3, 4, 5, 6, 9]), counts, 0.2, 0.5)
    assert s["pop-head"].tolist() == [True, True, False, False, False, False]
    assert s["pop-torso"].tolist() == [False, False, True, True, False, False]
    assert s["pop-tail"].tolist() == [False, False, False, False, True, True]
    # an untrained item is never head, even when most of the catalogue is untrained
    assert popularity_thresholds(np.array([0, 0, 0, 0, 0, 1]), 0.5, 0.2)[0] == 1


def test_history_slices_by_hand():
    lengths = np.array([0, 5, 6, 20, 21, 100])
    s = history_slices(lengths, (5, 20))
    assert list(s) == ["hist-le5", "hist-6-20", "hist-gt20"]
    assert s["hist-le5"].tolist() == [True, True, False, False, False, False]
    assert s["hist-6-20"].tolist() == [False, False, True, True, False, False]
    assert s["hist-gt20"].tolist() == [False, False, False, False, True, True]
    assert list(history_slices(lengths, (5, 6))) == ["hist-le5", "hist-6", "hist-gt6"]
    assert history_slices(lengths, ()) == {}


def test_every_slice_partitions_the_users_and_names_are_valid_mlflow_keys():
    from mlflow.utils.validation import _validate_metric_name

    histories = [np.arange(1, n + 1) for n in (1, 4, 7, 12, 30, 60)]
    eval_set = EvalSet(np.arange(6), histories, np.array([1, 2, 3, 4, 5, 6]))
    counts = np.array([0, 10, 8, 0, 3, 1, 1])
    slices = eval_slices(eval_set, counts, SliceSpec(cold_threshold=0, history_bounds=(5, 10, 20, 50)))
    for family in (("warm", "cold"), ("pop-head", "pop-torso", "pop-tail")):
        assert sum(slices[name].astype(int) for name in family).tolist() == [1] * 6
    hist = [n for n in slices if n.startswith("hist-")]
    assert sum(slices[n].astype(int) for n in hist).tolist() == [1] * 6
    for name in slices:
        _validate_metric_name(metric_key(f"test/{name}", "ndcg@10"))
        assert re.fullmatch(r"[a-z0-9-]+", name)  # portable: no ':' (refused by MLflow on Windows)


# --------------------------------------------------------------------------------------------- runner


def _tiny_recipe(data_dir) -> dict:
    return {
        "name": "tiny-grid",
        "experiment": "tiny-grid",
        "dataset": {"name": "movielens-100k", "data_dir": str(data_dir), "max_users": 40},
        "backbone": {"kind": "sasrec", "dim": 16, "layers": 1, "heads": 1, "inner": 16},
        "train": {"max_len": 8, "batch_size": 64, "max_epochs": 2, "patience": 2, "threads": 1},
        "eval": {"ks": [5, 10]},
        "runs": [
            {"encoder": {"kind": "id"}},
            {"encoder": {"kind": "id", "label": "id-wide", "init_std": 0.2}},
        ],
        "grid": {"seed": [0, 1]},
    }


class CountingFit:
    def __init__(self, monkeypatch):
        self.calls = 0
        real = runner_mod.fit

        def fit(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(runner_mod, "fit", fit)


def _runs(experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id])


def test_a_grid_run_twice_trains_nothing_the_second_time(tiny_ml_dir, monkeypatch):
    fit = CountingFit(monkeypatch)
    recipe = recipe_from_dict(_tiny_recipe(tiny_ml_dir))
    first = run_recipe(recipe)
    assert fit.calls == 4 and len(first) == 4
    assert len({r.run_id for r in first}) == 4

    class Skips(Reporter):
        skipped: list[str] = []

        def run_skipped(self, name, run_id):
            self.skipped.append(run_id)

    reporter = Skips()
    second = run_recipe(recipe, reporter)
    assert fit.calls == 4  # nothing trained
    assert reporter.skipped == [r.run_id for r in first]
    assert [r.metrics for r in second] == [r.metrics for r in first]
    runs = _runs("tiny-grid")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}

    # every slice is a metric group of the run in MLflow; the per-user artifact says who is in each slice
    (one,) = [r for r in runs if r.info.run_id == first[0].run_id]
    keys = set(one.data.metrics)
    for group in ("test", "test/warm", "test/cold", "test/pop-head", "test/pop-tail", "test/hist-le5"):
        if first[0].slice_sizes.get(group, 1):
            assert metric_key(group, "ndcg@10") in keys, group
    assert one.data.tags["recbench.baseline"] == "id"
    assert "logical CPUs" in one.data.tags["recbench.machine"]


def test_the_same_recipe_on_changed_data_trains_again(tiny_ml_dir, tmp_path, monkeypatch):
    """The reuse key is recipe hash AND dataset fingerprint AND protocol fingerprint: `--data-dir` on a copy
    with interactions removed must not return the real folder's numbers (or the other way round)."""
    from conftest import successor_sequences, write_atomic

    fit = CountingFit(monkeypatch)
    raw = _tiny_recipe(tiny_ml_dir)
    raw["runs"] = raw["runs"][:1]
    raw["grid"] = {"seed": [0]}
    recipe = recipe_from_dict(raw)
    smaller = {u: items[:-2] for u, items in successor_sequences().items()}  # 2 of 12 per user removed
    copy = write_atomic(tmp_path / "copy", "ml-100k", smaller)

    (on_copy,) = run_recipe(recipe, options=RunOptions(data_dir=str(copy)))
    (on_real,) = run_recipe(recipe, options=RunOptions(data_dir=str(tiny_ml_dir)))
    assert fit.calls == 2  # the second invocation trained: same recipe hash, different data
    assert on_copy.recipe_hash == on_real.recipe_hash
    assert on_copy.dataset_fingerprint != on_real.dataset_fingerprint
    assert on_copy.run_id != on_real.run_id
    assert on_copy.data_stats["interactions"] != on_real.data_stats["interactions"]
    # each folder now has its own FINISHED run, and each is reused for its own data only
    (again,) = run_recipe(recipe, options=RunOptions(data_dir=str(copy)))
    assert fit.calls == 2 and again.run_id == on_copy.run_id and again.metrics == on_copy.metrics


def test_both_ranking_conventions_and_the_popularity_floor_are_recorded(tiny_ml_dir, monkeypatch):
    fit = CountingFit(monkeypatch)
    raw = _tiny_recipe(tiny_ml_dir)
    raw["runs"] = [{"encoder": {"kind": "id"}}, {"encoder": {"kind": "none"}, "backbone": {"kind": "pop"}}]
    raw["grid"] = {"seed": [0]}
    ident, pop = run_recipe(recipe_from_dict(raw))
    assert fit.calls == 1  # pop trains nothing
    assert pop.cost.stop_reason == "not_trained" and pop.cost.epochs == 0 and pop.cost.params_trainable == 0
    assert ident.cost.stop_reason in ("early_stopping", "max_epochs")
    for r in (ident, pop):
        for group in ("valid", "test"):
            kept, declared = r.metrics[f"{group}/history-kept"], r.metrics[group]
            assert set(kept) == set(declared)
            assert all(kept[m] <= declared[m] + 1e-12 for m in kept)  # keeping history can only lower ranks
        assert "test/history-kept/warm" in r.metrics
    runs = {r.info.run_id: r for r in _runs("tiny-grid")}
    stored = runs[pop.run_id]
    assert metric_key("test/history-kept", "ndcg@10") in stored.data.metrics
    assert stored.data.tags["recbench.stop_reason"] == "not_trained"
    from mlflow.tracking import MlflowClient

    from recbench.tracking import load_per_user

    frame = load_per_user(MlflowClient(), ident.run_id)
    assert {"history-kept:rank", "history-kept:ndcg@10"} <= set(frame.columns)
    assert (frame["history-kept:rank"] >= frame["rank"]).all()


def test_pop_scores_rank_items_by_training_count_then_index():
    from recbench.popularity import PopularityModel

    counts = np.array([0, 3, 7, 3, 0, 9])  # index 0 is padding
    scores = PopularityModel(counts).scorer()(torch.zeros(2, 4, dtype=torch.long))
    assert scores.shape == (2, 6)
    order = torch.argsort(scores[0, 1:], descending=True) + 1
    assert order.tolist() == [5, 2, 1, 3, 4]  # 9, 7, then the tied 3s by index, then the untrained item
    assert len(set(scores[0, 1:].tolist())) == 5  # no ties


def test_pop_goes_only_with_no_encoder():
    raw = {**BASE, "backbone": {"kind": "pop"}}
    with pytest.raises(RecipeError, match="most-popular"):
        recipe_from_dict(raw)
    with pytest.raises(RecipeError, match="most-popular"):
        recipe_from_dict({**BASE, "encoder": {"kind": "none"}})


def test_a_finished_run_whose_artifacts_are_gone_is_redone(tiny_ml_dir, monkeypatch):
    import shutil

    from mlflow.tracking import MlflowClient

    fit = CountingFit(monkeypatch)
    raw = _tiny_recipe(tiny_ml_dir)
    raw["runs"] = raw["runs"][:1]
    raw["grid"] = {"seed": [0]}
    recipe = recipe_from_dict(raw)
    (first,) = run_recipe(recipe)
    artifacts = MlflowClient().get_run(first.run_id).info.artifact_uri.removeprefix("file://")
    shutil.rmtree(artifacts)
    (second,) = run_recipe(recipe)  # no MlflowException: the unreadable run is not reused
    assert fit.calls == 2 and second.run_id != first.run_id
    assert second.metrics == first.metrics  # same recipe, data and seed: the same numbers


def test_a_run_killed_mid_way_is_failed_and_redone_next_time(tiny_ml_dir, monkeypatch):
    fit = CountingFit(monkeypatch)
    recipe = recipe_from_dict(_tiny_recipe(tiny_ml_dir))

    class KillSecondRun(Reporter):
        runs = 0

        def run_start(self, index, total, name):
            self.runs += 1

        def epoch_end(self, epoch, loss, valid, improved, seconds):
            if self.runs == 2:
                raise KeyboardInterrupt("Ctrl-C during training")

    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, KillSecondRun())
    runs = _runs("tiny-grid")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]
    (failed,) = [r for r in runs if r.info.status == "FAILED"]
    assert failed.data.tags["recbench.failure"] == "KeyboardInterrupt: Ctrl-C during training"
    assert fit.calls == 2

    results = run_recipe(recipe, Reporter(), RunOptions())
    assert fit.calls == 2 + 3  # the finished run is skipped; the killed one and the two never started train
    names = [r.name for r in results]
    assert (
        failed.info.run_name.endswith(" [FAILED]") and failed.info.run_name.removesuffix(" [FAILED]") in names
    )
    runs = _runs("tiny-grid")
    assert sorted(r.info.status for r in runs) == ["FAILED"] + ["FINISHED"] * 4
