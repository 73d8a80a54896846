"""Tuning on validation (recbench.tuning): the `tune:` section, the study's trials as MLflow child runs, the
best configuration trained and tested once, resumption, reuse, and tuned rows in the leaderboard."""

from __future__ import annotations

import json

import optuna
import pytest
from mlflow.tracking import MlflowClient

import recbench.runner as runner_mod
import recbench.tuning as tuning
from recbench.config import TUNED, RecipeError, expand, load_recipe, recipe_from_dict
from recbench.reporting import Reporter
from recbench.runner import RunOptions, run_recipe
from recbench.tracking import Store, load_result, tracking_uri
from recbench.training import EpochRecord, History, NonFiniteLossError

BASE = {
    "name": "t",
    "dataset": {"name": "movielens-100k"},
    "encoder": {"kind": "id"},
    "backbone": {"kind": "sasrec", "dim": 32},
    "eval": {"ks": [5, 10]},
}
SPACE = {"train.lr": "loguniform(1e-3, 1e-1)", "backbone.dropout": [0.0, 0.3]}


def _tiny(data_dir, **tune) -> dict:
    """The tiny recipe of test_grid: one id x SASRec run on the 40-user successor data, tuned."""
    return {
        "name": "tiny-tune",
        "experiment": "tiny-tune",
        "dataset": {"name": "movielens-100k", "data_dir": str(data_dir), "max_users": 40},
        "encoder": {"kind": "id"},
        "backbone": {"kind": "sasrec", "dim": 16, "layers": 1, "heads": 1, "inner": 16},
        "train": {"max_len": 8, "batch_size": 64, "max_epochs": 3, "patience": 2, "threads": 1},
        "eval": {"ks": [5, 10]},
        "tune": {"trials": 3, "space": SPACE, "startup_trials": 1, **tune},
    }


def _client() -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri())


def _runs(experiment: str) -> list:
    client = _client()
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _children(runs, parent_id: str) -> list:
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]


class Counting:
    """Counts calls of a function of a module, passing them through."""

    def __init__(self, monkeypatch, module, name: str, fail_on: int | None = None, exc=KeyboardInterrupt):
        self.calls: list = []
        self.monkeypatch, self.module, self.name = monkeypatch, module, name
        real = self.real = getattr(module, name)

        def wrapped(*args, **kwargs):
            self.calls.append((args, kwargs))
            if fail_on is not None and len(self.calls) == fail_on:
                raise exc("stopped by the test")
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    def restore(self) -> None:
        self.monkeypatch.setattr(self.module, self.name, self.real)


# --------------------------------------------------------------------------------------------- the recipe


def test_a_tuned_run_hashes_its_space_not_the_values_the_study_picks():
    (plain,) = expand(recipe_from_dict(BASE))
    (tuned,) = expand(recipe_from_dict({**BASE, "tune": {"trials": 3, "space": SPACE}}))
    assert tuned.recipe_hash != plain.recipe_hash and tuned.config_hash != plain.config_hash
    assert tuned.protocol() == plain.protocol()  # the same rows of the same tables
    assert tuned.run_name.endswith("/sasrec/tuned/seed0") and plain.run_name.endswith("/sasrec/seed0")
    assert tuned.tune.space["train.lr"] == "loguniform(0.001, 0.1)"  # canonical form
    best = tuning.apply_values(tuned, {"train.lr": 0.0123, "backbone.dropout": 0.3}, keep_tune=True)
    assert best.train.lr == 0.0123 and best.backbone.dropout == 0.3 and best.tune == tuned.tune
    assert (best.recipe_hash, best.config_hash) == (tuned.recipe_hash, tuned.config_hash)
    # the base value of a searched key is no part of the run; the budget is
    (other_base,) = expand(
        recipe_from_dict({**BASE, "train": {"lr": 0.5}, "tune": {"trials": 3, "space": SPACE}})
    )
    assert other_base.recipe_hash == tuned.recipe_hash
    (more,) = expand(recipe_from_dict({**BASE, "tune": {"trials": 4, "space": SPACE}}))
    assert more.recipe_hash != tuned.recipe_hash
    trial = tuning.apply_values(tuned, {"train.lr": 0.0123, "backbone.dropout": 0.3})
    assert trial.tune is None and trial.train.lr == 0.0123


@pytest.mark.parametrize(
    "space, message",
    [
        ({"train.lrr": "uniform(0.1, 0.2)"}, "'train.lrr' is not a setting of run .*did you mean 'train.lr'"),
        ({"backbone.dropot": [0.1]}, "did you mean 'backbone.dropout'"),
        ({"encoder.lr": "loguniform(1e-5, 1e-3)"}, "'encoder.lr' is not a setting .*keys of encoder"),
        ({"train.max_len": [10, 20]}, "train.max_len is part of the evaluation protocol"),
        ({"train.batch_size": "uniform(16, 64)"}, "integer setting .* int\\(lo, hi\\)"),
        ({"backbone.dropout": "uniform(0.1, 1.5)"}, "the value 1.5 is not valid .*less than 1"),
        ({"dataset.max_users": [10, 20]}, "only settings under encoder, backbone, train, regime"),
        ({"backbone.kind": ["sasrec", "gru4rec"]}, "`kind` cannot be tuned"),
        ({"train": "uniform(0, 1)"}, "is a whole section"),
        ({"train.lr": "loguniform(0, 0.1)"}, "log-scaled, so its lower bound must be > 0"),
        ({"train.lr": "normal(0, 1)"}, "is not a search dimension; write loguniform"),
        ({"train.lr": "uniform(0.2, 0.1)"}, "lo < hi"),
        ({"train.batch_size": "int(16.5, 64)"}, "must be integers"),
        ({"backbone.dropout": [0.1, 0.1]}, "lists a value twice"),
        ({"backbone.dropout": []}, "list of choices is empty"),
        ({}, "tune.space is empty"),
    ],
)
def test_a_search_the_run_cannot_take_is_refused_naming_the_key(space, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict({**BASE, "tune": {"trials": 3, "space": space}})


def test_a_tune_section_needs_a_budget_and_a_validated_metric():
    with pytest.raises(RecipeError, match="needs a budget: set `trials`, `wall_s` or both"):
        recipe_from_dict({**BASE, "tune": {"space": SPACE}})
    with pytest.raises(RecipeError, match="tune.metric ndcg@20 needs its K in eval.ks"):
        recipe_from_dict({**BASE, "tune": {"trials": 3, "space": SPACE, "metric": "ndcg@20"}})
    with pytest.raises(RecipeError, match="unknown key 'tune.trails'.*did you mean 'trials'"):
        recipe_from_dict({**BASE, "tune": {"trails": 3, "space": SPACE}})


def test_a_run_entry_merges_into_the_shared_tune_section():
    raw = {
        **BASE,
        "tune": {"trials": 5, "space": SPACE},
        "runs": [
            {},
            {"tune": {"space": {"backbone.dropout": None, "train.weight_decay": [0.0, 1e-4]}}},
            {
                "encoder": {"kind": "text", "mode": "top_k", "top_k": 1},
                "tune": {"space": {"encoder.lr": [1e-4]}},
            },
        ],
    }
    shared, merged, text = expand(recipe_from_dict(raw))
    assert shared.tune.space == {"train.lr": "loguniform(0.001, 0.1)", "backbone.dropout": [0.0, 0.3]}
    assert merged.tune.trials == 5
    assert merged.tune.space == {"train.lr": "loguniform(0.001, 0.1)", "train.weight_decay": [0.0, 0.0001]}
    assert set(text.tune.space) == {"train.lr", "backbone.dropout", "encoder.lr"}


def test_the_shipped_tuned_recipe_has_the_main_rows_each_tuned_alike():
    main = expand(load_recipe(_recipe("morec_vs_idrec")))
    tuned = expand(load_recipe(_recipe("morec_vs_idrec_tuned")))

    def rows(specs):
        return sorted((s.split.kind, s.encoder.display, s.backbone.kind, s.seed) for s in specs)

    assert rows(tuned) == rows(main)
    for spec in tuned:
        twin = next(m for m in main if m.run_name == spec.run_name.replace("/tuned/", "/"))
        assert spec.protocol() == twin.protocol()  # ranked in the same tables
        if spec.backbone.kind == "pop":
            assert spec.tune is None  # the floor trains nothing
        else:
            assert spec.tune.trials == 10 and spec.tune.wall_s is None and spec.tune.metric == "ndcg@10"
            assert spec.tune.space["train.lr"].startswith("loguniform(")


def _recipe(name: str):
    from recbench.shipped import shipped_recipes

    return shipped_recipes()[name]


# --------------------------------------------------------------------------------------------- the study


def test_a_tiny_study_writes_its_trials_as_child_runs_and_the_best_on_the_parent(tiny_ml_dir, monkeypatch):
    evaluated = Counting(monkeypatch, runner_mod, "_evaluate")
    (result,) = run_recipe(recipe_from_dict(_tiny(tiny_ml_dir)))
    runs = _runs("tiny-tune")
    (parent,) = [r for r in runs if "recbench.recipe_hash" in r.data.tags]
    children = _children(runs, parent.info.run_id)
    assert len(runs) == 4 and len(children) == 3
    assert parent.info.status == "FINISHED" and result.run_id == parent.info.run_id
    assert sorted(int(c.data.tags["recbench.tune.trial"]) for c in children) == [0, 1, 2]
    states = {
        int(c.data.tags["recbench.tune.trial"]): c.data.tags["recbench.tune.trial_state"] for c in children
    }
    assert set(states.values()) <= {"COMPLETE", "PRUNED"} and states[0] == "COMPLETE"
    for child in children:
        assert child.info.status == "FINISHED"
        assert "recbench.recipe_hash" not in child.data.tags  # never reused, never a leaderboard row
        assert (
            states[int(child.data.tags["recbench.tune.trial"])] == "PRUNED"
        ) == child.info.run_name.endswith("[pruned]")

    # the best trial: the highest validation value among the complete trials; the parent records its values
    values = {
        int(c.data.tags["recbench.tune.trial"]): c.data.metrics["tune/valid/ndcg_at_10"]
        for c in children
        if states[int(c.data.tags["recbench.tune.trial"])] == "COMPLETE"
    }
    best_number = max(values, key=lambda n: (values[n], -n))
    (best_child,) = [c for c in children if c.data.tags["recbench.tune.trial"] == str(best_number)]
    notes = result.notes["tune"]
    assert notes["best_trial"] == best_number and notes["best_value"] == values[best_number]
    assert notes["trials"] == 3 and notes["complete"] + notes["pruned"] == 3 and notes["failed"] == 0
    assert notes["complete"] == len(values) and notes["budget"] == {"trials": 3, "wall_s": None}
    for key, value in notes["best"].items():
        assert json.loads(best_child.data.params[key]) == value
        assert json.loads(parent.data.tags[f"recbench.tune.best.{key}"]) == value
    assert parent.data.tags["recbench.tune.trials"] == "3"
    assert parent.data.params["train.lr"] == TUNED and parent.data.params["backbone.dropout"] == TUNED

    # the parent trained the best configuration: recipe.json holds it, and with the same seed it reproduces
    # the best trial's validation value exactly
    stored = Store().find_run(parent.info.run_id)
    assert stored.spec["train"]["lr"] == notes["best"]["train.lr"]
    assert stored.spec["backbone"]["dropout"] == notes["best"]["backbone.dropout"]
    assert stored.spec["tune"]["trials"] == 3
    assert result.metrics["valid"]["ndcg@10"] == notes["best_value"] == notes["retrain_value"]
    assert result.recipe_hash == expand(recipe_from_dict(_tiny(tiny_ml_dir)))[0].recipe_hash
    assert result.name.endswith("/tuned/seed0") and result.encoder == "id"
    assert (
        0 < result.cost.tune_s < result.cost.wall_s
        and parent.data.metrics["cost/tune_s"] == result.cost.tune_s
    )

    # its checkpoint rebuilds from recipe.json (the best values) and gives the recorded test metrics
    from recbench.checkpoints import load_run
    from recbench.evaluation.protocol import evaluate
    from recbench.runner import DataMemo, eval_protocol

    loaded = load_run(result.run_id)
    prepared = DataMemo().prepare(loaded.spec, Reporter())
    protocol = eval_protocol(loaded.spec, prepared.data.num_items)
    metrics = evaluate(loaded.model.scorer(), prepared.split.test, protocol).metrics
    assert metrics == result.metrics["test"]

    # test was evaluated once, by the parent; the trials only ever saw validation
    which = [args[2] for args, _ in evaluated.calls]
    assert which.count("test") == 1 and which[-1] == "test"
    assert which.count("valid") > 3  # every trial's epochs, then the parent's


def test_test_metrics_are_computed_once_for_the_best_trial_only(tiny_ml_dir, monkeypatch):
    """Untracked: an in-memory study; the model tested is the best trial's configuration."""
    tested = []
    real = runner_mod._evaluate

    def evaluate(model, split, which, protocol, device, reporter, spec, **kwargs):
        if which == "test":
            tested.append((spec.train.lr, spec.backbone.dropout))
        return real(model, split, which, protocol, device, reporter, spec, **kwargs)

    monkeypatch.setattr(runner_mod, "_evaluate", evaluate)
    (result,) = run_recipe(recipe_from_dict(_tiny(tiny_ml_dir)), options=RunOptions(track=False))
    best = result.notes["tune"]["best"]
    assert tested == [(best["train.lr"], best["backbone.dropout"])]
    assert result.notes["tune"]["storage"] == "in-memory" and result.run_id is None


def test_an_interrupted_study_resumes_and_a_finished_row_is_reused(tiny_ml_dir, monkeypatch):
    recipe = recipe_from_dict(_tiny(tiny_ml_dir, trials=4))
    interrupt = Counting(monkeypatch, tuning, "train_trial", fail_on=3)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe)
    first = _runs("tiny-tune")
    (failed_parent,) = [r for r in first if "recbench.recipe_hash" in r.data.tags]
    assert failed_parent.info.status == "FAILED"
    cut = [c for c in _children(first, failed_parent.info.run_id) if c.info.status == "FAILED"]
    assert len(cut) == 1 and cut[0].data.tags["recbench.tune.trial"] == "2"
    assert "interrupted" in cut[0].data.tags["recbench.failure"]
    assert len(interrupt.calls) == 3

    # a process killed during a trial leaves it RUNNING in the study: it must not count either
    (study_file,) = (tuning.study_storage("x").parent).glob("*.db")
    study = optuna.load_study(study_name=study_file.stem, storage=f"sqlite:///{study_file}")
    study.ask()
    states = [t.state.name for t in study.trials]
    assert set(states[:2]) <= {"COMPLETE", "PRUNED"} and states[2:] == ["FAIL", "RUNNING"]

    interrupt.restore()
    resumed = Counting(monkeypatch, tuning, "train_trial")
    (result,) = run_recipe(recipe)
    assert len(resumed.calls) == 2  # 4 trials budget, 2 counted before the interruption
    notes = result.notes["tune"]
    assert notes["trials"] == 4 and notes["resumed"] == 2 and notes["cut_short"] == 2  # Ctrl-C'd, killed
    runs = _runs("tiny-tune")
    parents = [r for r in runs if "recbench.recipe_hash" in r.data.tags]
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED"]
    (parent,) = [r for r in parents if r.info.status == "FINISHED"]
    children = _children(runs, parent.info.run_id)
    # the two counted trials of the interrupted session moved under the row's new run, beside the two new ones
    assert sorted(int(c.data.tags["recbench.tune.trial"]) for c in children) == [0, 1, 4, 5]
    assert {c.info.status for c in children} == {"FINISHED"}
    assert load_result(_client(), parent.info.run_id).notes["tune"]["trials"] == 4

    # the row's study is complete and its run FINISHED: reused like any run, nothing trains
    fits = Counting(monkeypatch, runner_mod, "fit")

    class Skips(Reporter):
        skipped: list[str] = []

        def run_skipped(self, name, run_id):
            self.skipped.append(run_id)

    reporter = Skips()
    (again,) = run_recipe(recipe, reporter)
    assert not fits.calls and len(resumed.calls) == 2 and reporter.skipped == [parent.info.run_id]
    assert again.metrics == result.metrics


def _fake_trials(monkeypatch, outcomes: dict[int, object]):
    """train_trial replaced: trial n reports the values outcomes[n] per epoch (or raises it), no training."""
    calls = []

    def train_trial(spec, reporter, handle, datasets, regime, after_epoch):
        n = len(calls)
        calls.append(spec)
        outcome = outcomes[n]
        if isinstance(outcome, BaseException):
            raise outcome
        history = History()
        for epoch, value in enumerate(outcome, start=1):
            record = EpochRecord(epoch, 1.0, 0.0, {"ndcg@10": value, "ndcg@5": value}, 0.0)
            history.epochs.append(record)
            if value > history.best_value:
                history.best_value, history.best_epoch = value, epoch
            after_epoch(record)
        return history

    monkeypatch.setattr(tuning, "train_trial", train_trial)
    return calls


def test_a_trial_below_the_median_is_pruned_and_a_diverged_trial_fails_without_stopping_the_study(
    tiny_ml_dir, monkeypatch
):
    outcomes = {
        0: [0.5, 0.6, 0.7],
        1: [0.1, 0.2, 0.3],  # below trial 0 from the first epoch: pruned at epoch 1 (no warm-up)
        2: NonFiniteLossError("loss is nan at epoch 1, batch 1"),
        3: [0.6, 0.7, 0.9],  # above the median: runs to the end, the best
    }
    calls = _fake_trials(monkeypatch, outcomes)
    raw = _tiny(tiny_ml_dir, trials=4, warmup_epochs=0)
    (result,) = run_recipe(recipe_from_dict(raw))
    assert len(calls) == 4
    notes = result.notes["tune"]
    assert (notes["trials"], notes["complete"], notes["pruned"], notes["failed"]) == (4, 2, 1, 1)
    assert notes["best_trial"] == 3 and notes["best_value"] == 0.9
    children = {
        int(c.data.tags["recbench.tune.trial"]): c for c in _children(_runs("tiny-tune"), result.run_id)
    }
    assert (
        children[1].data.tags["recbench.tune.trial_state"] == "PRUNED"
        and children[1].info.status == "FINISHED"
    )
    assert children[1].info.run_name.endswith("[pruned]")
    assert children[2].info.status == "FAILED" and "loss is nan" in children[2].data.tags["recbench.failure"]
    assert children[3].data.tags["recbench.tune.trial_state"] == "COMPLETE"
    assert children[3].data.metrics["tune/valid/ndcg_at_10"] == 0.9


def test_a_study_where_no_trial_finishes_is_refused_with_what_to_change(tiny_ml_dir, monkeypatch):
    diverged = {n: NonFiniteLossError(f"loss is nan at epoch 1 (trial {n})") for n in range(3)}
    _fake_trials(monkeypatch, diverged)
    with pytest.raises(tuning.TuningError, match="no trial of run .* finished .*3 failed.*narrow tune.space"):
        run_recipe(recipe_from_dict(_tiny(tiny_ml_dir)))
    (parent,) = [r for r in _runs("tiny-tune") if "recbench.recipe_hash" in r.data.tags]
    assert parent.info.status == "FAILED"


# --------------------------------------------------------------------------------------------- leaderboard


def test_the_leaderboard_marks_tuned_rows_and_pairs_them_only_with_a_baseline_tuned_alike():
    from fake_runs import log_run

    from recbench import leaderboard as lb
    from recbench.tracking import Tracker

    def spec(encoder: dict, tuned: bool):
        raw = {
            **BASE,
            "name": "fixture",
            "experiment": "fixture",
            "encoder": encoder,
            "train": {"max_len": 20},
        }
        raw["eval"] = {"ks": [5, 10], "history_bounds": [10, 20]}
        if tuned:
            raw["tune"] = {"trials": 7, "space": SPACE}
        return expand(recipe_from_dict(raw))[0]

    tracker = Tracker("fixture")
    text = {"kind": "text", "label": "text"}
    log_run(tracker, spec({"kind": "id"}, False), 0.5, rank_seed=1)
    log_run(tracker, spec(text, False), 0.6, rank_seed=2)
    log_run(tracker, spec({"kind": "id"}, True), 0.55, rank_seed=3)
    log_run(tracker, spec(text, True), 0.65, rank_seed=4)
    store = Store()
    experiments = store.experiments(["fixture"])
    board = lb.build(store.finished_runs(experiments), ["fixture"], "2000-01-01", "x", "p")
    (table,) = board.tables
    rows = {row.label: row for row in table.rows}
    assert set(rows) == {"id", "text", "id (tuned)", "text (tuned)"}
    assert rows["text (tuned)"].baseline is rows["id (tuned)"] and rows["text (tuned)"].paired
    assert rows["text"].baseline is rows["id"] and rows["text"].paired
    assert rows["id (tuned)"].tuning == "7 trials" and rows["id"].tuning is None
    assert "| tuned on validation |" in board.markdown
    line = next(ln for ln in board.markdown.splitlines() if ln.startswith("| text (tuned) | sasrec"))
    assert "(budget 7 trials)" in line and "†" not in line and "vs id (tuned)" in line

    # with only an untuned baseline, a tuned row gets no Δ, and says why
    tuned_id = rows["id (tuned)"].runs[0].run_id
    only = [r for r in store.finished_runs(experiments) if r.run_id != tuned_id]
    board = lb.build(only, ["fixture"], "2000-01-01", "x", "p")
    row = next(r for r in board.tables[0].rows if r.label == "text (tuned)")
    assert row.baseline.label == "id" and not row.paired
    assert row.delta_refused == "tuned (7 trials) vs a baseline not tuned"
    line = next(ln for ln in board.markdown.splitlines() if ln.startswith("| text (tuned) | sasrec"))
    assert "(budget 7 trials) †" in line and "– (tuned (7 trials) vs a baseline not tuned)" in line


def test_bad_tuning_input_is_a_message_with_exit_status_2_never_a_traceback(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from recbench import distributed
    from recbench.cli import app

    path = tmp_path / "tuned.yaml"
    path.write_text(
        yaml.safe_dump({**BASE, "tune": {"trials": 2, "space": {"train.lrr": "uniform(0.1, 0.2)"}}})
    )
    out = CliRunner().invoke(app, ["validate", str(path)])
    assert out.exit_code == 2 and "did you mean 'train.lr'" in out.output and "Traceback" not in out.output
    (tuned,) = expand(recipe_from_dict({**BASE, "tune": {"trials": 2, "space": SPACE}}))
    with pytest.raises(RecipeError, match="has a tune section .*run it without --nproc"):
        distributed.check([tuned], 2, "serial")


def test_a_wall_clock_budget_is_checked_before_each_trial(tiny_ml_dir, monkeypatch):
    calls = _fake_trials(monkeypatch, {n: [0.1 * (n + 1)] for n in range(5)})
    raw = _tiny(tiny_ml_dir)
    raw["tune"] = {"wall_s": 1e-6, "space": SPACE}  # spent by the first trial, which it never interrupts
    (result,) = run_recipe(recipe_from_dict(raw), options=RunOptions(track=False))
    assert len(calls) == 1
    assert result.notes["tune"]["trials"] == 1 and result.notes["tune"]["budget"] == {
        "trials": None,
        "wall_s": 1e-6,
    }
