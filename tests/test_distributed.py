"""One run over two CPU processes (torch.distributed, gloo): the numbers of the single-process run with the
same global batch, rank 0 alone tracking; a selection of several runs is refused."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml
from test_concurrency import RECBENCH, _env
from test_grid import _tiny_recipe
from typer.testing import CliRunner

from recbench.cli import app
from recbench.config import recipe_from_dict
from recbench.runner import run_recipe

# Observed on the tiny recipe below: identical metrics, per-epoch losses within 2e-7. The bounds leave room
# for another machine's float summation order, no more: a sharding or weighting mistake moves the loss
# by 1e-3 or more after one step.
METRIC_TOL = 1e-4
LOSS_TOL = 1e-5


def _one_run(data_dir) -> dict:
    raw = _tiny_recipe(data_dir)
    raw.update(name="ddp", experiment="ddp")
    raw["runs"], raw["grid"] = raw["runs"][:1], {"seed": [0]}
    # no dropout: a shard draws its own dropout masks, which the whole batch would not (see distributed.py)
    raw["backbone"] = {**raw["backbone"], "dropout": 0.0, "attn_dropout": 0.0}
    # 80 windows in batches of 32: the last batch (16) is split 8/8; 3 epochs
    raw["train"] = {**raw["train"], "batch_size": 32, "max_epochs": 3, "patience": 3}
    return raw


def _losses(uri: str, run_id: str) -> list[float]:
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri=uri).get_metric_history(run_id, "train/loss")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.mark.slow
def test_two_processes_give_the_single_process_numbers(tiny_ml_dir, tmp_path, monkeypatch):
    raw = _one_run(tiny_ml_dir)
    (single,) = run_recipe(recipe_from_dict(raw))
    single_uri = os.environ["MLFLOW_TRACKING_URI"]

    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(raw), "utf-8")
    uri = f"sqlite:///{tmp_path / 'ddp.db'}"
    env = {**_env(), "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run(
        [RECBENCH, "run", str(path), "--nproc", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = done.stdout.splitlines()  # rank 0 alone prints
    ddp = json.loads(line)
    for group, values in single.metrics.items():
        for name, value in values.items():
            assert ddp["metrics"][group][name] == pytest.approx(value, abs=METRIC_TOL), (group, name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # rank 0 alone tracks
    assert _losses(uri, runs[0].info.run_id) == pytest.approx(
        _losses(single_uri, single.run_id), rel=LOSS_TOL
    )

    # run again: rank 0 reuses the FINISHED run and tells the other rank there is nothing to train
    again = subprocess.run(
        [RECBENCH, "run", str(path), "--nproc", "2"], env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already FINISHED" in again.stderr
    assert len(client.search_runs([runs[0].info.experiment_id])) == 1


def test_nproc_refuses_a_selection_of_several_runs(tiny_ml_dir, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_tiny_recipe(tiny_ml_dir)), "utf-8")
    result = CliRunner().invoke(app, ["run", str(path), "--nproc", "2"])
    assert result.exit_code == 2
    assert "the selection holds 4 runs: pick one with --only" in result.output
    result = CliRunner().invoke(
        app, ["run", str(path), "--nproc", "2", "--executor", "ray", "--max-runs", "1"]
    )
    assert result.exit_code == 2 and "does not combine with --executor" in result.output
