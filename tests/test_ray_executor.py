"""The Ray executor: the same numbers as the serial executor, a failed task fails its run only, Ctrl-C
cancels the tasks and marks their runs FAILED, and a grid tracked on a shared MLflow server.

The in-process tests share one local Ray (2 CPUs, no dashboard) started once for the module; the executor
then joins it instead of starting its own. The tests that start `recbench run` or `mlflow server` as
processes are marked slow (each starts its own Ray or server: 20 s and more on 2 busy cores).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_concurrency import RECBENCH, _env, _slow_recipe, _start_and_wait_for_training
from test_grid import CountingFit, _tiny_recipe

from recbench.config import RecipeError, recipe_from_dict
from recbench.executors import EXECUTORS, RunsFailed, make_executor
from recbench.runner import RunOptions, run_recipe
from recbench.tracking import TAG_FAILURE, Store

ray = pytest.importorskip("ray", reason="the Ray executor's tests need ray (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One local Ray for the module. Its workers inherit the environment and folder of this moment, so
    both point at a temporary folder: nothing is written to the real RECBENCH_HOME."""
    folder = tmp_path_factory.mktemp("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECBENCH_HOME", str(folder / "home"))
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.chdir(folder)
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def _runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_the_registry_refuses_unknown_executors_and_misplaced_flags():
    assert set(EXECUTORS) == {"serial", "ray"}
    with pytest.raises(RecipeError, match="unknown executor 'dask'; choose one of: serial, ray"):
        make_executor(RunOptions(executor="dask"))
    with pytest.raises(RecipeError, match="--workers needs a parallel executor: add --executor ray"):
        make_executor(RunOptions(workers=2))
    with pytest.raises(RecipeError, match="--address needs a parallel executor"):
        make_executor(RunOptions(address="auto"))


def test_the_cli_says_what_is_wrong_with_executor_flags(tmp_path):
    from typer.testing import CliRunner

    from recbench.cli import app

    result = CliRunner().invoke(app, ["run", "smoke", "--workers", "2"])
    assert result.exit_code == 2 and "--workers needs a parallel executor" in result.output
    result = CliRunner().invoke(app, ["run", "smoke", "--executor", "threads"])
    assert result.exit_code == 2 and "unknown executor 'threads'" in result.output


def test_an_address_where_nobody_listens_is_refused_at_once(tiny_ml_dir):
    """ray.init would retry a dead address for minutes without a word (measured: still waiting at 400 s)."""
    raw = _tiny_recipe(tiny_ml_dir)
    address = f"127.0.0.1:{_free_port()}"
    options = RunOptions(executor="ray", address=address, track=False)
    with pytest.raises(RecipeError, match=f"--address {address}: nothing answers at {address}"):
        run_recipe(recipe_from_dict(raw), options=options)


def test_ray_gives_the_serial_numbers_and_a_failed_task_fails_only_its_run(
    local_ray, tiny_ml_dir, tmp_path, monkeypatch
):
    raw = _tiny_recipe(tiny_ml_dir)
    raw["grid"] = {"seed": [0]}  # two runs: id and id-wide
    serial = run_recipe(recipe_from_dict(raw))

    uri = f"sqlite:///{tmp_path / 'ray.db'}"  # a store of its own: nothing to reuse from the serial runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    broken = {"encoder": {"kind": "text", "label": "broken", "model": "/nonexistent/model"}}
    raw_ray = {**raw, "runs": [*raw["runs"], broken]}  # its model cannot load: fails inside its task
    with pytest.raises(RunsFailed) as failed:
        run_recipe(recipe_from_dict(raw_ray), options=RunOptions(executor="ray", workers=2))

    results = failed.value.results
    assert [r.name for r in results] == [r.name for r in serial], failed.value.failures
    assert [r.metrics for r in results] == [r.metrics for r in serial]  # to the last digit
    assert [r.cost.epochs for r in results] == [r.cost.epochs for r in serial]
    ((name, reason),) = failed.value.failures
    assert "broken" in name and "/nonexistent/model" in reason
    stored = {r.info.run_name: r for r in _runs(uri, "tiny-grid")}
    assert len(stored) == 3
    bad = next(r for n, r in stored.items() if "broken" in n)
    assert bad.info.status == "FAILED" and "/nonexistent/model" in bad.data.tags[TAG_FAILURE]
    good = [stored[r.name] for r in results]
    assert {r.info.status for r in good} == {"FINISHED"}
    assert all("train/loss" in r.data.metrics for r in good)  # epochs were logged from the workers
    assert {r.data.tags["recbench.owner.pid"] for r in good} == {str(os.getpid())}  # the driver owns them

    # the workers' artifacts are readable: the next invocation (serial) reuses both runs, trains nothing
    fit = CountingFit(monkeypatch)
    again = run_recipe(recipe_from_dict(raw))
    assert fit.calls == 0 and [r.run_id for r in again] == [r.run_id for r in results]


@pytest.mark.slow
def test_ctrl_c_cancels_the_ray_tasks_and_fails_their_runs(tiny_ml_dir, tmp_path):
    _, path = _slow_recipe(tiny_ml_dir, tmp_path)
    proc, run = _start_and_wait_for_training(path, "slow", extra=["--executor", "ray"])
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    from mlflow.tracking import MlflowClient

    stored = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).get_run(run.info.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags[TAG_FAILURE].startswith("KeyboardInterrupt: cancelled")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_ray_grid_on_a_shared_mlflow_server(tiny_ml_dir, tmp_path):
    port = _free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    server = subprocess.Popen(
        [
            mlflow_bin,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-2000:]
                assert time.monotonic() < deadline, "mlflow server did not start within 120 s"
                time.sleep(0.5)
        path = tmp_path / "tiny.yaml"
        raw = _tiny_recipe(tiny_ml_dir)
        path.write_text(yaml.safe_dump(raw), "utf-8")
        env = {**_env(), "MLFLOW_TRACKING_URI": uri}
        done = subprocess.run(
            [RECBENCH, "run", str(path), "--executor", "ray", "--workers", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stderr.count("  done test") == 4

        store = Store(uri)  # read back through the server, as the leaderboard would
        runs = store.finished_runs(store.experiments(["tiny-grid"]))
        assert len(runs) == 4 and all(r.problem is None for r in runs)
        assert all(r.per_user is not None and len(r.per_user) == 40 for r in runs)
        assert not (tmp_path / "mlruns").exists()  # the artifacts went through the server, to its folder
        assert any((tmp_path / "artifacts").rglob("run_summary.json"))
    finally:
        server.terminate()
        server.wait(timeout=30)
