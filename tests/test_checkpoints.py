"""Checkpoints: a FINISHED run's model rebuilt from the store gives its test metrics exactly; recommend and
export give the fixture's raw ids, never padding, history excluded unless asked; other data is refused."""

import json

import numpy as np
import polars as pl
import pytest
from conftest import successor_sequences, write_atomic
from typer.testing import CliRunner

from recbench.checkpoints import CheckpointError, load_run, recommendations_frame, user_index
from recbench.cli import app
from recbench.config import recipe_from_dict
from recbench.evaluation.protocol import Protocol, evaluate
from recbench.reporting import Reporter
from recbench.runner import DataMemo, RunOptions, run_recipe

cli = CliRunner()


def _recipe(data_dir, backbone=None):
    return recipe_from_dict(
        {
            "name": "ckpt",
            "experiment": "ckpt",
            "dataset": {"name": "movielens-100k", "data_dir": str(data_dir)},
            "encoder": {"kind": "id"},
            "backbone": backbone or {"kind": "sasrec", "dim": 16, "layers": 1, "heads": 1, "inner": 16},
            "train": {"max_len": 8, "batch_size": 64, "max_epochs": 3, "patience": 3, "threads": 1},
            "eval": {"ks": [5, 10]},
        }
    )


@pytest.mark.parametrize(
    "backbone",
    [
        None,
        {"kind": "bert4rec", "dim": 16, "layers": 1, "heads": 1, "inner": 16},
        {"kind": "gru4rec", "dim": 16, "hidden": 16},
    ],
)
def test_a_checkpoint_round_trip_reproduces_the_test_metrics_exactly(tiny_ml_dir, backbone):
    (result,) = run_recipe(_recipe(tiny_ml_dir, backbone))
    loaded = load_run(result.run_id)
    prepared = DataMemo().prepare(loaded.spec, Reporter())
    spec = loaded.spec
    protocol = Protocol(
        num_items=prepared.data.num_items, max_len=spec.train.max_len, ks=spec.eval.ks, seed=spec.seed
    )
    again = evaluate(loaded.model.scorer(), prepared.split.test, protocol)
    assert again.metrics == result.metrics["test"]
    assert again.history_kept.metrics == result.metrics["test/history-kept"]


def test_recommend_and_export_use_raw_ids_and_never_padding(tiny_ml_dir, tmp_path):
    (result,) = run_recipe(_recipe(tiny_ml_dir))
    loaded = load_run(result.run_id)
    raw_items = set(loaded.data.item_ids)
    user = "7"
    idx = user_index(loaded, user)
    history = {loaded.data.item_ids[i - 1] for i in loaded.data.sequences[idx]}
    frame = recommendations_frame(loaded, np.array([idx]), 10)
    assert frame["rank"].to_list() == list(range(1, 11))
    assert set(frame["item_id"]) <= raw_items and not set(frame["item_id"]) & history
    assert frame["score"].to_list() == sorted(frame["score"].to_list(), reverse=True)
    kept = recommendations_frame(loaded, np.array([idx]), loaded.data.num_items, keep_history=True)
    assert kept.height == loaded.data.num_items and set(kept["item_id"]) == raw_items  # padding never listed
    # on the successor ring the next item after the user's last one is learnable: it should rank high
    last = loaded.data.item_ids[loaded.data.sequences[idx][-1] - 1]
    assert str(int(last) % 40 + 1) in kept["item_id"].to_list()[:10]

    out = cli.invoke(app, ["recommend", result.run_id, "--user", user, "--k", "5", "--json"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["item_id"] for r in rows] == frame["item_id"].to_list()[:5]

    path = tmp_path / "out" / "recs.parquet"
    out = cli.invoke(app, ["export", result.run_id[:8], "--output", str(path), "--k", "3"])
    assert out.exit_code == 0, out.output
    recs = pl.read_parquet(path)
    assert recs.height == 3 * loaded.data.num_users
    assert set(recs["user_id"]) == set(loaded.data.user_ids) and set(recs["item_id"]) <= raw_items


def test_unknown_user_and_other_data_are_refused(tiny_ml_dir, tmp_path):
    (result,) = run_recipe(_recipe(tiny_ml_dir))
    out = cli.invoke(app, ["recommend", result.run_id, "--user", "no-such-user"])
    assert out.exit_code == 2 and "not in movielens-100k" in out.output
    other = write_atomic(tmp_path / "other", "ml-100k", successor_sequences(seed=1))
    with pytest.raises(CheckpointError, match="item rows would mean other items"):
        load_run(result.run_id, data_dir=str(other))
    out = cli.invoke(app, ["recommend", "nothing-like-this", "--user", "1"])
    assert out.exit_code == 2


def test_a_run_without_checkpoint_says_how_to_get_one(tiny_ml_dir, monkeypatch):
    from recbench.tracking import RunHandle

    monkeypatch.setattr(RunHandle, "log_checkpoint", lambda self, model, data: None)
    (result,) = run_recipe(_recipe(tiny_ml_dir), options=RunOptions())
    with pytest.raises(CheckpointError, match="no checkpoint artifact"):
        load_run(result.run_id)
