"""MLflow: the only module that imports mlflow.

The default store is embedded: ``sqlite:///<cwd>/mlflow.db`` with artifacts under ``<cwd>/mlruns``;
``MLFLOW_TRACKING_URI`` points it anywhere else. A run is written as it goes (per-epoch metrics), finished
with its final metrics and artifacts (resolved recipe, per-user ranks as parquet, the run summary JSON), and
ends FINISHED, or FAILED with the reason as a tag (exception, NaN, Ctrl-C, SIGTERM): never left RUNNING.
A RUNNING run is also a claim: it names its owner process (:mod:`recbench.lifecycle`), so another process
skips it while the owner lives, and marks it FAILED (then trains it again) once the owner is gone (SIGKILL).

MLflow metric names cannot contain '@', so ``ndcg@10`` is stored as ``ndcg_at_10``; :func:`metric_key` and
:func:`metric_name` convert both ways.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recbench.lifecycle import HEARTBEAT, owner_state, owner_tags, shield, store_lock
from recbench.results import RunResult

SUMMARY_ARTIFACT = "run_summary.json"
RANKS_ARTIFACT = "per_user_test.parquet"
RECIPE_ARTIFACT = "recipe.json"
TAG_RECIPE_HASH = "recbench.recipe_hash"
TAG_PROTOCOL = "recbench.protocol_fingerprint"
TAG_DATASET = "recbench.dataset_fingerprint"
TAG_FAILURE = "recbench.failure"
TAG_BASELINE = "recbench.baseline"
TAG_RECIPE = "recbench.recipe"
TAG_COMMAND = "recbench.command"
TAG_MACHINE = "recbench.machine"
TAG_TORCH = "recbench.torch"
TAG_DEVICE = "recbench.device"
TAG_VERSION = "recbench.version"
TAG_COMMIT = "recbench.git_commit"
# MLflow 3's UI opens an experiment by its kind: without this tag a new experiment may open in the GenAI
# "Traces" view; recbench runs are model training runs (value from MLflow's UI, `CUSTOM_MODEL_DEVELOPMENT`)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


def _quiet_mlflow() -> None:
    """MLflow draws a progress bar per artifact download (recbench reads many small ones) and logs its
    database migrations at INFO on a new store; recbench draws its own progress, so both are hushed.
    MLflow warnings and errors still show."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def metric_key(group: str, name: str) -> str:
    """('test/warm', 'ndcg@10') -> 'test/warm/ndcg_at_10'."""
    return f"{group}/{name.replace('@', '_at_')}"


def metric_name(key: str) -> tuple[str, str]:
    """'test/warm/ndcg_at_10' -> ('test/warm', 'ndcg@10')."""
    group, _, name = key.rpartition("/")
    return group, name.replace("_at_", "@")


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested recipe -> {'encoder.kind': 'id', ...} with string values (MLflow params)."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(obj) if isinstance(obj, (list, tuple)) else str(obj)
    return out


class ClaimLost(Exception):
    """Another process holds this run (RUNNING, owner alive), or finished it meanwhile (`result` then holds
    its reusable result): this process must not train it."""

    def __init__(self, reason: str, result: RunResult | None = None):
        super().__init__(reason)
        self.result = result


CLAIM_ATTEMPTS = 5  # tries after a simultaneous claim, each after a random pause (then: skipped as busy)


class Tracker:
    """Writes RunResults to MLflow and answers 'is this recipe hash already FINISHED?'."""

    def __init__(self, experiment: str, uri: str | None = None):
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        _quiet_mlflow()
        mlflow.set_tracking_uri(self.uri)
        # the first client to open a fresh sqlite store creates its schema: one process at a time
        with store_lock(self.uri):
            self.client = ShieldedClient(MlflowClient(tracking_uri=self.uri))
            exp = self.client.get_experiment_by_name(experiment)
            kind = {EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}
            try:
                self.experiment_id = (
                    exp.experiment_id if exp else self.client.create_experiment(experiment, tags=kind)
                )
            except MlflowException:  # created by another process in between (a server store)
                exp = self.client.get_experiment_by_name(experiment)
                if exp is None:
                    raise
                self.experiment_id = exp.experiment_id
        if exp and EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older recbench: open it as training runs
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        self.experiment = experiment

    def reusable_result(
        self, recipe_hash: str, dataset_fingerprint: str, protocol_fingerprint: str
    ) -> RunResult | None:
        """A FINISHED run's result, if one was made by the same recipe, on the same data (content
        fingerprint), under the same protocol, and its record can be read back; else None (train again).

        Why all three: the recipe hash leaves out where the data lives, so a rerun on a changed copy of a
        dataset has the same hash; the fingerprints are what the data *was*.
        """
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{TAG_RECIPE_HASH}` = '{recipe_hash}' and attributes.status = 'FINISHED' "
                f"and tags.`{TAG_DATASET}` = '{dataset_fingerprint}' "
                f"and tags.`{TAG_PROTOCOL}` = '{protocol_fingerprint}'"
            ),
            order_by=["attributes.start_time DESC"],
        )
        for run in runs:
            try:
                result = self.load_result(run.info.run_id)
            except Exception:  # noqa: BLE001 - a missing or unreadable artifact: that run cannot be reused
                continue
            if (
                result.dataset_fingerprint == dataset_fingerprint
                and result.protocol_fingerprint == protocol_fingerprint
            ):
                return result
        return None

    def load_result(self, run_id: str) -> RunResult:
        return load_result(self.client, run_id)

    @contextmanager
    def run(
        self, run_name: str, params: dict[str, Any], tags: dict[str, str], reuse_finished: bool = False
    ) -> Iterator[RunHandle]:
        """A claimed run (:meth:`start`) that ends FINISHED, or FAILED with the reason on any exception."""
        handle = self.start(run_name, params, tags, reuse_finished)
        try:
            yield handle
        except BaseException as exc:  # noqa: BLE001 - Ctrl-C and SIGTERM too must mark the run FAILED
            self.fail(handle.run_id, run_name, f"{type(exc).__name__}: {exc}")
            raise
        self.finish(handle.run_id)

    def start(
        self, run_name: str, params: dict[str, Any], tags: dict[str, str], reuse_finished: bool = False
    ) -> RunHandle:
        """Create the run as a claim on its key (recipe hash, and the dataset and protocol fingerprints when
        the tags hold them), or raise :class:`ClaimLost`.

        Create first, then look: of two claims, the later one always sees the earlier, so two processes can
        never both train; two that see each other both withdraw and retry after a random pause. A RUNNING
        run of the key whose owner is gone is marked FAILED on the way (it is then trained again here).
        With `reuse_finished`, a FINISHED run of the key that appeared since the caller's reuse check wins too.
        """
        key = {k: tags[k] for k in (TAG_RECIPE_HASH, TAG_DATASET, TAG_PROTOCOL) if k in tags}
        for attempt in range(CLAIM_ATTEMPTS):
            busy = self._live_claims(key)
            if busy:
                raise ClaimLost(busy[0])
            run_id = self.client.create_run(
                self.experiment_id, run_name=run_name, tags={**tags, **owner_tags()}
            ).info.run_id
            HEARTBEAT.add(run_id, self.client.set_tag)
            others = self._live_claims(key, mine=run_id)
            reused = None
            if not others and reuse_finished and len(key) == 3:
                reused = self.reusable_result(key[TAG_RECIPE_HASH], key[TAG_DATASET], key[TAG_PROTOCOL])
            if not others and reused is None:
                handle = RunHandle(self.client, run_id)
                handle.log_params(flatten(params))
                return handle
            self._withdraw(run_id)
            if reused is not None:
                raise ClaimLost(f"FINISHED meanwhile (run {reused.run_id[:8]})", result=reused)
            time.sleep(random.uniform(0.05, 0.5) * (attempt + 1))
        raise ClaimLost(f"claimed by another process at the same time {CLAIM_ATTEMPTS} times")

    def _live_claims(self, key: dict[str, str], mine: str | None = None) -> list[str]:
        """Why each other RUNNING run of this key is being trained (its owner lives); those whose owner is
        gone are marked FAILED here. Runs that name no owner (older recbench) are left alone."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=" and ".join(
                ["attributes.status = 'RUNNING'", *(f"tags.`{k}` = '{v}'" for k, v in key.items())]
            ),
        )
        live = []
        for run in found:
            if run.info.run_id == mine:
                continue
            state = owner_state(run.data.tags, run.info.run_id)
            if state.alive:
                live.append(f"RUNNING in another process ({state.why}; run {run.info.run_id[:8]})")
            elif state.alive is False:
                self.fail(run.info.run_id, run.info.run_name or "", f"owner lost: {state.why}")
        return live

    def _withdraw(self, run_id: str) -> None:
        """Take back a claim that lost: ended (KILLED, never RUNNING) and moved to MLflow's trash."""
        HEARTBEAT.discard(run_id)
        self.client.set_terminated(run_id, status="KILLED")
        self.client.delete_run(run_id)

    def finish(self, run_id: str) -> None:
        HEARTBEAT.discard(run_id)
        self.client.set_terminated(run_id, status="FINISHED")

    def fail(self, run_id: str, run_name: str, reason: str) -> None:
        """End a run FAILED, saying why in a tag, its name and its description."""
        HEARTBEAT.discard(run_id)
        reason = reason[:5000]
        with shield(deliver=False):  # a SIGTERM now waits until the run is marked
            try:
                self.client.set_tag(run_id, TAG_FAILURE, reason)
                # the status column is easy to miss: the name and description say it too (a FINISHED
                # rerun of the same name is then told apart at a glance in the UI's runs table)
                if not run_name.endswith(" [FAILED]"):
                    self.client.update_run(run_id, name=f"{run_name} [FAILED]")
                self.client.set_tag(run_id, "mlflow.note.content", f"FAILED: {reason}")
            finally:
                self.client.set_terminated(run_id, status="FAILED")


class ShieldedClient:
    """An MlflowClient whose calls are not cut in two by SIGTERM (:func:`recbench.lifecycle.shield`)."""

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with shield():
                return attr(*args, **kwargs)

        return call


class RunHandle:
    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id

    @classmethod
    def attach(cls, uri: str, run_id: str) -> RunHandle:
        """A handle on a run another process created and owns (a Ray task logs into its driver's run)."""
        from mlflow.tracking import MlflowClient

        _quiet_mlflow()
        with store_lock(uri):
            client = ShieldedClient(MlflowClient(tracking_uri=uri))
            client.get_run(run_id)  # fails early, naming the run, if the store or run is not reachable
        return cls(client, run_id)

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in values.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_checkpoint(self, model, data) -> None:
        """The best model (safetensors) and the item index, under the artifact folder `checkpoint/`."""
        from recbench.checkpoints import CHECKPOINT_DIR, write_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            folder = write_checkpoint(model, data, Path(tmp) / CHECKPOINT_DIR)
            self.client.log_artifacts(self.run_id, str(folder), CHECKPOINT_DIR)

    def log_result(self, result: RunResult, per_user: pl.DataFrame | None, recipe: dict) -> None:
        final = {metric_key(g, m): v for g, group in result.metrics.items() for m, v in group.items()}
        final.update(
            {
                f"cost/{k}": v
                for k, v in result.cost.model_dump().items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        )
        self.log_metrics(final)
        with tempfile.TemporaryDirectory() as tmp:
            summary = Path(tmp) / SUMMARY_ARTIFACT
            summary.write_text(result.model_dump_json(indent=2), "utf-8")
            (Path(tmp) / RECIPE_ARTIFACT).write_text(json.dumps(recipe, indent=2), "utf-8")
            self.client.log_artifact(self.run_id, str(summary))
            self.client.log_artifact(self.run_id, str(Path(tmp) / RECIPE_ARTIFACT))
            if per_user is not None:
                ranks = Path(tmp) / RANKS_ARTIFACT
                per_user.write_parquet(ranks)
                self.client.log_artifact(self.run_id, str(ranks))


def load_result(client, run_id: str) -> RunResult:
    """The RunResult of a finished run, read back from its summary artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, SUMMARY_ARTIFACT, tmp)
        result = RunResult.model_validate_json(Path(path).read_text("utf-8"))
    result.run_id = run_id
    return result


def load_per_user(client, run_id: str) -> pl.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, RANKS_ARTIFACT, tmp)
        return pl.read_parquet(path)


# --------------------------------------------------------------------------------------------- reading back


@dataclass
class StoredRun:
    """One recbench run as the store holds it: MLflow attributes, tags, final metrics and its artifacts.

    `problem` says why the run cannot be used (e.g. an artifact is missing); readers skip such runs and say so.
    """

    run_id: str
    run_name: str
    experiment: str
    status: str
    start_time: int
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    result: RunResult | None = None
    spec: dict[str, Any] | None = None  # recipe.json: the resolved RunSpec
    per_user: pl.DataFrame | None = None
    problem: str | None = None


class RunLookupError(LookupError):
    """A run reference that matches no run, or more than one."""


class Store:
    """Read-only access to the recbench runs of an MLflow store (the leaderboard and `compare` read here)."""

    def __init__(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        _quiet_mlflow()
        self.uri = uri or tracking_uri()
        with store_lock(self.uri):  # a client creates a missing sqlite schema: never two at once
            self.client = MlflowClient(tracking_uri=self.uri)

    def experiments(self, names: list[str] | None = None, missing_ok: bool = False) -> dict[str, str]:
        """{experiment id: name}: the named experiments (unknown names are an error, or left out with
        `missing_ok`), or every active experiment that holds at least one recbench run."""
        from mlflow.entities import ViewType

        found, token = [], None
        while True:
            page = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        by_name = {e.name: e.experiment_id for e in found}
        if names:
            missing = [n for n in names if n not in by_name]
            if missing and not missing_ok:
                raise RunLookupError(
                    f"no experiment named {', '.join(map(repr, missing))} in {self.uri}; "
                    f"experiments: {', '.join(sorted(by_name)) or '(none)'}"
                )
            return {by_name[n]: n for n in names if n in by_name}
        return {
            e.experiment_id: e.name
            for e in found
            if self._search([e.experiment_id], f"tags.`{TAG_RECIPE_HASH}` != ''", limit=1)
        }

    def _search(self, experiment_ids: list[str], filter_string: str = "", limit: int | None = None) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                experiment_ids,
                filter_string=filter_string,
                max_results=min(limit or 1000, 1000),
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            runs.extend(r for r in page if TAG_RECIPE_HASH in r.data.tags)
            token = page.token
            if not token or (limit and len(runs) >= limit):
                return runs[:limit] if limit else runs

    def finished_runs(self, experiments: dict[str, str]) -> list[StoredRun]:
        """Every FINISHED recbench run of these experiments, with its artifacts (oldest first); none for none."""
        if not experiments:
            return []
        runs = self._search(list(experiments), "attributes.status = 'FINISHED'")
        return [self._load(run, experiments[run.info.experiment_id]) for run in runs]

    def find_run(self, ref: str) -> StoredRun:
        """A run by id, unique id prefix, or run name (a name shared by several runs must match exactly one
        FINISHED run)."""
        from mlflow.exceptions import MlflowException

        experiments = self.experiments()
        try:
            run = self.client.get_run(ref)
            if run.info.experiment_id not in experiments:
                experiments.update(
                    self.experiments([self.client.get_experiment(run.info.experiment_id).name])
                )
            return self._load(run, experiments[run.info.experiment_id])
        except MlflowException:
            pass
        runs = self._search(list(experiments)) if experiments else []
        matches = [r for r in runs if r.info.run_id.startswith(ref.lower())] if len(ref) >= 4 else []
        if not matches:
            matches = [r for r in runs if r.info.run_name == ref]
            finished = [r for r in matches if r.info.status == "FINISHED"]
            matches = finished if len(finished) == 1 else matches
        if not matches:
            raise RunLookupError(f"no recbench run has the id, id prefix (4+ characters) or name '{ref}'")
        if len(matches) > 1:
            listing = "; ".join(f"{r.info.run_id} {r.info.run_name} ({r.info.status})" for r in matches[:10])
            raise RunLookupError(f"'{ref}' matches {len(matches)} runs: {listing}. Give a longer id prefix.")
        run = matches[0]
        return self._load(run, experiments[run.info.experiment_id])

    def _load(self, run, experiment: str) -> StoredRun:
        stored = StoredRun(
            run_id=run.info.run_id,
            run_name=run.info.run_name or "",
            experiment=experiment,
            status=run.info.status,
            start_time=int(run.info.start_time or 0),
            tags=dict(run.data.tags),
            metrics=dict(run.data.metrics),
        )
        if stored.status != "FINISHED":
            stored.problem = f"status {stored.status}" + (
                f" ({stored.tags[TAG_FAILURE]})" if TAG_FAILURE in stored.tags else ""
            )
            return stored
        try:
            stored.result = load_result(self.client, stored.run_id)
            with tempfile.TemporaryDirectory() as tmp:
                spec_path = self.client.download_artifacts(stored.run_id, RECIPE_ARTIFACT, tmp)
                stored.spec = json.loads(Path(spec_path).read_text("utf-8"))
            stored.per_user = load_per_user(self.client, stored.run_id)
        except Exception as exc:  # noqa: BLE001 - a broken run is reported, never fatal for the others
            stored.problem = f"artifacts unreadable ({type(exc).__name__}: {str(exc)[:200]})"
        return stored
