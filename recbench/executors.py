"""Where the runs of a grid train: one after the other in this process (``serial``), or as Ray tasks.

The driver (:func:`recbench.runner.run_recipe`) keeps what does not depend on where a run trains: the recipe
is validated, FINISHED runs are reused, progress is reported and the summary table printed; an executor only
trains the rest. :data:`EXECUTORS` is the registry: the CLI and the runner look an executor up by name and
never branch on its kind.

Why Ray for the parallel executor: it schedules tasks by declared CPU resources on one machine or a
cluster (``--address``), cancels them, and reports a crashed worker as an error of its task, which is what a
grid of independent runs needs; a process pool would give none of the cluster part, and a hand-written
scheduler is what the project must not grow. DDP is the other axis (one large run over several processes);
see the README's "Scaling out".

With Ray the driver claims every run in the store (``Tracker.start``: the driver's host and pid own it, its
heartbeat keeps it alive), the task logs epochs, metrics and artifacts into that run through the store's URI,
and the driver ends it FINISHED, or FAILED with the task's error: a failed task fails its run only, the
others go on, and the grid ends with :class:`RunsFailed`. Ctrl-C or SIGTERM cancels the tasks still queued
or running and marks their runs FAILED.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recbench.config import RecipeError, RunSpec
from recbench.reporting import Reporter
from recbench.results import RunResult


class RunsFailed(Exception):
    """Some runs of a grid failed while the others finished: `results` holds the finished and reused ones
    (for the summary table), `failures` the run names with their reasons."""

    def __init__(self, results: list[RunResult], failures: list[tuple[str, str]]):
        lines = "; ".join(f"{name}: {why}" for name, why in failures)
        super().__init__(
            f"{len(failures)} of {len(failures) + len(results)} runs failed (marked FAILED in MLflow, redone by "
            f"the next `recbench run`): {lines}"
        )
        self.results = results
        self.failures = failures


@dataclass
class GridContext:
    """What an executor needs from the driver."""

    runs: list[RunSpec]
    reporter: Reporter
    tracker: Any  # recbench.tracking.Tracker, or None when nothing is tracked
    options: Any  # recbench.runner.RunOptions
    baseline: str | None
    datasets: Any  # recbench.runner.DataMemo
    busy: list[str] = field(default_factory=list)  # runs skipped because another process trains them

    def reusable(self, spec: RunSpec) -> RunResult | None:
        """A FINISHED run of the same recipe, data and protocol, when reuse is on."""
        if self.tracker is None or not self.options.skip_finished:
            return None
        prepared = self.datasets.prepare(spec, self.reporter)
        return self.tracker.reusable_result(
            spec.recipe_hash, prepared.data.fingerprint, prepared.protocol_fingerprint
        )

    def skipped_busy(self, spec: RunSpec, why: str) -> None:
        self.busy.append(spec.run_name)
        self.reporter.stage(
            f"skip {spec.run_name}: {why}; not trained here (run again once it ends to reuse its result)"
        )


class SerialExecutor:
    """Every run in this process, in grid order; the first failure stops the grid (it is raised)."""

    name = "serial"

    def __init__(self, options) -> None:
        for flag, value in (("--address", options.address), ("--workers", options.workers)):
            if value is not None:
                raise RecipeError(f"{flag} needs a parallel executor: add --executor ray (or drop {flag})")

    def run(self, ctx: GridContext) -> list[RunResult]:
        from recbench.runner import run_spec
        from recbench.tracking import ClaimLost

        results: list[RunResult] = []
        for i, spec in enumerate(ctx.runs, start=1):
            reused = ctx.reusable(spec)
            if reused is not None:
                ctx.reporter.run_skipped(spec.run_name, reused.run_id)
                results.append(reused)
                continue
            ctx.reporter.run_start(i, len(ctx.runs), spec.run_name)
            try:
                results.append(
                    run_spec(
                        spec,
                        ctx.reporter,
                        ctx.tracker,
                        baseline=ctx.baseline,
                        command=ctx.options.command,
                        datasets=ctx.datasets,
                        reuse_finished=ctx.options.skip_finished,
                    )
                )
            except ClaimLost as lost:
                if lost.result is None:
                    ctx.skipped_busy(spec, str(lost))
                else:
                    ctx.reporter.run_skipped(spec.run_name, lost.result.run_id)
                    results.append(lost.result)
            except BaseException as exc:
                ctx.reporter.run_failed(spec.run_name, exc)
                raise
        return results


# --------------------------------------------------------------------------------------------- Ray


def run_threads(spec: RunSpec) -> int:
    """Threads (and Ray CPUs) of one run, under every executor: train.threads, else RECBENCH_THREADS, else 1.

    Why 1 by default (``benchmarks/threads.py``, SASRec-ID on MovieLens-100K, s/epoch on 2 cores): 1 thread
    4.6 idle, 4.8 with the other core busy, 5.1 with two runs at once; 2 threads 3.2 idle but 28 with the other
    core busy and 32 with two runs at once (torch's OpenMP threads spin-wait for each other at every one of a
    small model's many short parallel regions). One thread never collapses, two one-thread runs at once give the
    best grid throughput, and the same thread count under every executor keeps float sums in the same order, so
    serial and Ray runs of one recipe give the same numbers."""
    env = os.environ.get("RECBENCH_THREADS", "")
    return int(spec.train.threads or (env if env.isdigit() and int(env) > 0 else 1))


_WORKER_DATA = None  # one DataMemo per Ray worker process: its tasks on one dataset load it once


def train_in_worker(
    spec: RunSpec, uri: str | None, run_id: str | None, threads: int, command: str | None = None
) -> RunResult:
    """The body of a Ray task: train and evaluate one run, logging into the driver's run `run_id`.

    The data is prepared before the run seeds its generators, in the serial driver's order (its reuse check
    prepares first), so that the same recipe and seed give the same numbers under either executor even if
    loading ever drew from a global random stream (tests/test_ray_executor.py compares them).
    """
    global _WORKER_DATA
    from recbench import runner
    from recbench.tracking import RunHandle, Tracker

    os.environ["RECBENCH_THREADS"] = str(threads)
    if _WORKER_DATA is None:
        _WORKER_DATA = runner.DataMemo()
    quiet = Reporter()
    _WORKER_DATA.prepare(spec, quiet)
    handle = RunHandle.attach(uri, run_id) if uri and run_id else None
    tracker = Tracker(spec.experiment, uri) if handle else None  # a transfer run's source stage is tracked
    return runner.run_in_handle(spec, quiet, handle, _WORKER_DATA, tracker, command)


@dataclass
class _Task:
    index: int
    spec: RunSpec
    run_id: str | None


class RayExecutor:
    """Every run as a Ray task with `threads` CPUs; `--address` joins a running cluster (``auto``,
    ``HOST:PORT``, ``ray://HOST:PORT``), otherwise a local Ray starts for the grid and stops after it.
    `--workers N` keeps at most N runs in flight (and sizes the local Ray to N runs)."""

    name = "ray"

    def __init__(self, options) -> None:
        if options.workers is not None and options.workers < 1:
            raise RecipeError(f"--workers must be at least 1 (got {options.workers})")
        try:
            import ray  # noqa: F401
        except ImportError:
            raise RecipeError(
                "--executor ray needs Ray, which is not installed: pip install 'recbench[ray]'"
            ) from None
        self.address = options.address
        self.workers = options.workers

    def run(self, ctx: GridContext) -> list[RunResult]:
        results: dict[int, RunResult] = {}
        queue: list[tuple[int, RunSpec]] = []
        for i, spec in enumerate(ctx.runs, start=1):
            reused = ctx.reusable(spec)
            if reused is not None:
                ctx.reporter.run_skipped(spec.run_name, reused.run_id)
                results[i] = reused
            else:
                queue.append((i, spec))
        failures: list[tuple[str, str]] = []
        if queue:
            self._train(queue, ctx, results, failures)
        ordered = [results[i] for i in sorted(results)]
        if failures:
            raise RunsFailed(ordered, failures)
        return ordered

    def _start_ray(self, ctx: GridContext, queue) -> bool:
        """Connect to the cluster or start a local Ray; True when this call started it (and must stop it)."""
        import logging

        import ray

        from recbench.lifecycle import reinstall_sigterm_handler

        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if self.address:
            _check_reachable(self.address)
            kwargs["address"] = self.address
        elif self.workers:
            kwargs["num_cpus"] = self.workers * max(run_threads(spec) for _, spec in queue)
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            hint = (
                "; a ray:// address needs Ray Client: pip install 'ray[client]'"
                if str(self.address).startswith("ray://")
                else ""
            )
            raise RecipeError(
                f"--address {self.address}: cannot join the Ray cluster ({exc}){hint}"
            ) from None
        finally:
            reinstall_sigterm_handler()  # ray.init replaces SIGTERM's handler with a plain sys.exit
        cpus = int(ray.cluster_resources().get("CPU", 0))
        ctx.reporter.stage(
            f"ray: {len(queue)} runs on {'cluster ' + self.address if self.address else 'a local Ray'} "
            f"({cpus} CPUs), {max(run_threads(s) for _, s in queue)} thread(s) per run"
            + (f", at most {self.workers} at once" if self.workers else "")
        )
        return True

    def _train(self, queue, ctx: GridContext, results: dict, failures: list) -> None:
        import ray

        from recbench.runner import run_tags
        from recbench.tracking import ClaimLost

        started = self._start_ray(ctx, queue)
        remote = ray.remote(max_retries=0, retry_exceptions=False)(train_in_worker)
        uri = ctx.tracker.uri if ctx.tracker else None
        inflight: dict[Any, _Task] = {}
        finished = 0
        total = len(ctx.runs)
        try:
            while queue or inflight:
                while queue and (self.workers is None or len(inflight) < self.workers):
                    i, spec = queue.pop(0)
                    run_id = None
                    if ctx.tracker:
                        prepared = ctx.datasets.prepare(spec, ctx.reporter)
                        params, tags = run_tags(spec, ctx.baseline, ctx.options.command, prepared)
                        try:
                            run_id = ctx.tracker.start(
                                spec.run_name, params, tags, reuse_finished=ctx.options.skip_finished
                            ).run_id
                        except ClaimLost as lost:
                            if lost.result is None:
                                ctx.skipped_busy(spec, str(lost))
                            else:
                                ctx.reporter.run_skipped(spec.run_name, lost.result.run_id)
                                results[i] = lost.result
                            continue
                    threads = run_threads(spec)
                    # a GPU is declared only for train.device: cuda; Ray hides the GPUs from other tasks, so
                    # `auto` trains on CPU under Ray
                    gpus = 1 if spec.train.device == "cuda" else 0
                    ref = remote.options(num_cpus=threads, num_gpus=gpus).remote(
                        spec, uri, run_id, threads, ctx.options.command
                    )
                    inflight[ref] = _Task(i, spec, run_id)
                if not inflight:
                    break
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    task = inflight.pop(ref)
                    finished += 1
                    self._collect(ref, task, ctx, results, failures, f"{finished}/{total}")
        except BaseException as exc:  # Ctrl-C, SIGTERM: nothing may stay queued, running or RUNNING
            for ref, task in inflight.items():
                ray.cancel(ref, force=True)
                if ctx.tracker and task.run_id:
                    ctx.tracker.fail(
                        task.run_id,
                        task.spec.run_name,
                        f"{type(exc).__name__}: cancelled ({exc or 'Ctrl-C'})",
                    )
            raise
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _collect(ref, task: _Task, ctx: GridContext, results: dict, failures: list, count: str) -> None:
        """One finished task: its run ends FINISHED with the result, or FAILED with the task's error."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        name = task.spec.run_name
        try:
            result = ray.get(ref)
        except RayError as exc:
            cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
            reason = f"{type(cause).__name__}: {' '.join(str(cause).split())[:1000]}"
            if ctx.tracker and task.run_id:
                ctx.tracker.fail(task.run_id, name, reason)
            failures.append((name, reason))
            ctx.reporter.run_failed(f"{name} ({count})", cause)
            return
        if ctx.tracker and task.run_id:
            ctx.tracker.finish(task.run_id)
        results[task.index] = result
        ctx.reporter.stage(f"finished {count}: {name}")
        ctx.reporter.run_end(result)


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on: ray.init would retry it for minutes, silently."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # `auto`, or a form Ray resolves itself
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise RecipeError(
            f"--address {address}: nothing answers at {host}:{port} ({exc}); start the head with "
            f"`ray start --head --port {port}` there, or use --address auto on a node of the cluster"
        ) from None


EXECUTORS: dict[str, Callable[[Any], Any]] = {"serial": SerialExecutor, "ray": RayExecutor}


def make_executor(options):
    """The executor `options.executor` names, checked against its options (a RecipeError says what is
    wrong: exit status 2 in the CLI)."""
    try:
        cls = EXECUTORS[options.executor]
    except KeyError:
        raise RecipeError(
            f"unknown executor {options.executor!r}; choose one of: {', '.join(EXECUTORS)}"
        ) from None
    return cls(options)
