"""Several processes on one store: a fresh store created at once, runs claimed by one process at a time,
SIGTERM ending a run FAILED, and a SIGKILLed run recognised and redone by the next invocation.

The process tests start the real `recbench run` (subprocesses, as a user would) on the tiny successor data.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_grid import _tiny_recipe

import recbench.runner as runner_mod
from recbench.config import recipe_from_dict
from recbench.lifecycle import (
    TAG_HEARTBEAT,
    TAG_HOST,
    TAG_PID,
    TAG_PID_START,
    owner_state,
    owner_tags,
)
from recbench.runner import run_recipe
from recbench.tracking import TAG_FAILURE, TAG_RECIPE_HASH, ClaimLost, Tracker

RECBENCH = str(Path(sys.executable).parent / "recbench")


def _env() -> dict[str, str]:
    # the conftest fixture already points MLFLOW_TRACKING_URI and RECBENCH_HOME at this test's folder
    return {**os.environ, "OMP_NUM_THREADS": "1", "RECBENCH_THREADS": "1"}


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])  # this test's store, set by conftest


def _all_runs(experiment: str):
    from mlflow.entities import ViewType

    client = _client()
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY) if exp else []


def _slow_recipe(data_dir, tmp_path: Path) -> tuple[dict, Path]:
    """One run that would train for minutes (400 epochs, no early stop): it is stopped from outside."""
    raw = _tiny_recipe(data_dir)
    raw.update(name="slow", experiment="slow")
    raw["runs"], raw["grid"] = raw["runs"][:1], {"seed": [0]}
    raw["train"] = {**raw["train"], "max_epochs": 400, "patience": 400}
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(raw), "utf-8")
    return raw, path


def _start_and_wait_for_training(
    path: Path, experiment: str, timeout_s: float = 120.0, extra: list[str] | None = None
):
    """`recbench run` in a subprocess, returned once its run has logged an epoch (it is training).

    The store is created first: this test's own polling client would otherwise create the schema too,
    outside recbench's lock (any MLflow client on a missing sqlite file does)."""
    Tracker(experiment)
    proc = subprocess.Popen(
        [RECBENCH, "run", str(path), *(extra or [])],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"recbench run ended early ({proc.returncode}): {proc.stderr.read()}")
        try:
            runs = _all_runs(experiment)
        except Exception:  # noqa: BLE001 - the store is still being created by the subprocess
            runs = []
        if runs and "train/loss" in runs[0].data.metrics:
            return proc, runs[0]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"no epoch logged within {timeout_s} s: {proc.stderr.read()}")


# --------------------------------------------------------------------------------------------- store creation


def test_processes_creating_a_fresh_store_at_once_all_succeed(tmp_path):
    """MLflow creates a fresh sqlite schema without a lock: unguarded, one of two processes crashed every
    time (`table experiments already exists`)."""
    code = "from recbench.tracking import Tracker; print(Tracker('fresh').experiment_id)"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()[-2000:]
    assert len({out.strip() for out, _ in outs}) == 1  # one experiment, found or created once
    assert Tracker("fresh").experiment_id == outs[0][0].decode().strip()


# --------------------------------------------------------------------------------------------- claims


def test_two_processes_on_a_fresh_store_never_train_the_same_run(tiny_ml_dir, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_tiny_recipe(tiny_ml_dir)), "utf-8")
    procs = [
        subprocess.Popen(
            [RECBENCH, "run", str(path)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    errs = [p.communicate(timeout=300)[1].decode() for p in procs]
    for p, err in zip(procs, errs):
        assert p.returncode == 0, err[-3000:]
    runs = _all_runs("tiny-grid")
    by_hash: dict[str, list] = {}
    for run in runs:
        by_hash.setdefault(run.data.tags[TAG_RECIPE_HASH], []).append(run)
    assert len(by_hash) == 4  # every run of the grid exists ...
    for group in by_hash.values():  # ... exactly once, FINISHED: nobody trained it twice
        assert [r.info.status for r in group] == ["FINISHED"]
    trained = sum(e.count("  done test") for e in errs)
    assert trained == 4, errs  # the two processes split the work; each run trained by one of them


def test_a_run_this_process_holds_cannot_be_claimed_again(tmp_path):
    tracker = Tracker("claims")
    tags = {TAG_RECIPE_HASH: "h1", "mlflow.runName": "r"}
    with tracker.run("r", {"a": 1}, tags) as handle:
        with pytest.raises(ClaimLost, match="RUNNING in another process"):
            tracker.start("r", {"a": 1}, tags)
        held = handle.run_id
    # once it ended, the key is free again, and the refused claim left no run behind
    with tracker.run("r", {"a": 1}, tags) as again:
        assert again.run_id != held
    assert sorted(r.info.status for r in _all_runs("claims")) == ["FINISHED", "FINISHED"]


def _dead_pid() -> tuple[int, str]:
    """The pid and start time of a process that has exited."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import os; print(open(f'/proc/{os.getpid()}/stat').read())"],
        stdout=subprocess.PIPE,
        text=True,
    )
    stat = proc.communicate()[0]
    return proc.pid, stat.rsplit(")", 1)[1].split()[19]


def test_a_running_run_whose_owner_is_gone_is_marked_failed_and_claimed(tmp_path):
    tracker = Tracker("stale")
    pid, started = _dead_pid()
    tags = {TAG_RECIPE_HASH: "h2"}
    orphan = tracker.client.create_run(
        tracker.experiment_id,
        run_name="r",
        tags={**tags, TAG_HOST: socket.gethostname(), TAG_PID: str(pid), TAG_PID_START: started},
    ).info.run_id
    with tracker.run("r", {}, tags) as handle:
        assert handle.run_id != orphan
    old = tracker.client.get_run(orphan)
    assert old.info.status == "FAILED"
    assert f"process {pid} on {socket.gethostname()} is gone" in old.data.tags[TAG_FAILURE]
    assert old.info.run_name == "r [FAILED]"


def test_owner_liveness():
    me = owner_tags()
    host = socket.gethostname()
    parent = {TAG_HOST: host, TAG_PID: str(os.getppid()), TAG_PID_START: ""}
    assert owner_state(parent).alive is True
    dead, started = _dead_pid()
    assert owner_state({TAG_HOST: host, TAG_PID: str(dead), TAG_PID_START: started}).alive is False
    # a recycled pid: the number exists, but started at another time
    recycled = {**parent, TAG_PID_START: "1"}
    assert owner_state(recycled).alive is False and "another process" in owner_state(recycled).why
    # this process: alive only for the runs it holds
    assert owner_state(me, run_id="not-held").alive is False
    # another host: judged by the heartbeat alone
    now = time.time()
    remote = {TAG_HOST: "elsewhere.example", TAG_PID: "1", TAG_HEARTBEAT: f"{now - 30:.0f}"}
    assert owner_state(remote, now=now).alive is True
    stale = {**remote, TAG_HEARTBEAT: f"{now - 10_000:.0f}"}
    assert owner_state(stale, now=now).alive is False and "no heartbeat" in owner_state(stale, now=now).why
    assert owner_state({}).alive is None  # an older recbench recorded no owner: left alone


# --------------------------------------------------------------------------------------------- signals


def test_sigterm_waits_for_the_store_call_in_progress(monkeypatch):
    """A SIGTERM inside a store call is delivered when the call returns: raised inside a sqlite write it
    left this process's own lock held, and marking the run FAILED then timed out ('database is locked')."""
    from recbench import lifecycle

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(lifecycle, "_pending", False)  # restored afterwards, like the handler below
    monkeypatch.setattr(lifecycle, "_sigterm_installed", False)
    try:
        lifecycle.install_sigterm_handler()
        done = []
        with pytest.raises(lifecycle.Terminated, match="SIGTERM received"):
            with lifecycle.shield():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler has run by now; the call goes on
                done.append("call finished")
        assert done == ["call finished"]

        lifecycle.install_sigterm_handler()
        with lifecycle.shield(deliver=False):  # the FAILED bookkeeping: not interrupted, signal kept
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert lifecycle._pending is True
        with pytest.raises(lifecycle.Terminated):
            with lifecycle.shield():  # ... and delivered at the next store call
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_ends_the_run_failed_with_the_reason(tiny_ml_dir, tmp_path):
    _, path = _slow_recipe(tiny_ml_dir, tmp_path)
    proc, run = _start_and_wait_for_training(path, "slow")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM)" in err
    stored = _client().get_run(run.info.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags[TAG_FAILURE].startswith("Terminated: SIGTERM received")
    assert stored.info.run_name.endswith("[FAILED]")


def test_a_sigkilled_run_is_marked_failed_and_redone_by_the_next_invocation(
    tiny_ml_dir, tmp_path, monkeypatch
):
    raw, path = _slow_recipe(tiny_ml_dir, tmp_path)
    proc, run = _start_and_wait_for_training(path, "slow")
    proc.kill()
    proc.communicate(timeout=60)
    assert _client().get_run(run.info.run_id).info.status == "RUNNING"  # SIGKILL cannot be caught

    # the next invocation: the same recipe (same hash); its training cut to 2 epochs to keep the test short
    real_fit = runner_mod.fit

    def short_fit(model, windows, validate, config, *args, **kwargs):
        config.max_epochs = 2
        return real_fit(model, windows, validate, config, *args, **kwargs)

    monkeypatch.setattr(runner_mod, "fit", short_fit)
    (redone,) = run_recipe(recipe_from_dict(raw))
    killed = _client().get_run(run.info.run_id)
    assert killed.info.status == "FAILED"
    assert (
        f"process {proc.pid}" in killed.data.tags[TAG_FAILURE] and "is gone" in killed.data.tags[TAG_FAILURE]
    )
    assert redone.run_id != run.info.run_id
    assert _client().get_run(redone.run_id).info.status == "FINISHED"
