"""Tuning a run on validation: an Optuna study per tuned run, then the best configuration trained and tested
once.

A run with a ``tune:`` section (:class:`recbench.config.TuneSection`) declares a search space over its own
recipe keys (``train.lr: loguniform(1e-4, 1e-2)``, ``backbone.dropout: [0.1, 0.2, 0.5]``), a budget (trials
and/or seconds of trial time) and a validation metric. :func:`tune_and_run` then

1. runs the study: each trial is the run's spec with the trial's values applied and validated again, trained
   by the runner's own train stage and judged on **validation only** (the best epoch's value of the metric);
   the test users are never evaluated during tuning. With a tracker, each trial is an MLflow child run of the
   row's run (tag ``mlflow.parentRunId``) holding the trial's values and per-epoch curves;
2. retrains the best configuration with the run's seed (every trial starts from that seed too, so the retrain
   reproduces the best trial, and its validation value is recorded beside the study's) and runs the normal
   assess and record stages once: test is evaluated once, for the best configuration only. The row records
   the best values (tags ``recbench.tune.best.<key>``, ``notes["tune"]``; its ``recipe.json`` is the spec
   it trained), the trial, pruned and failed counts, the budget, and the trial time (``cost.tune_s``).

Why Optuna rather than a search loop of our own: a seeded TPE sampler, median pruning on intermediate values
and a study that lives in a database and resumes are exactly what a tuned row needs, and each is a source of
subtle bugs to write by hand (resuming, counting, pruning against the right step). Its embedded default
storage is a sqlite file (no server): one file per study under ``recbench_home()/tuning``, keyed by the run's
recipe hash, its dataset fingerprint and the MLflow store and experiment its trials are logged to, opened with
``load_if_exists`` so that an interrupted study resumes (finished, pruned and diverged trials count towards
the budget; a trial cut short by the interruption does not). A tuned row whose parent run FINISHED is reused
like any run, before any of this. Untracked runs (``track=False``) tune with an in-memory study.

Reproducibility: a fresh study is deterministic given the seed (TPE is seeded with it). A resumed study seeds
its sampler with the seed and the number of trials already in the study, so it does not repeat the random
start of the interrupted session; it is reproducible given where it stopped, not bit-identical to an
uninterrupted one. A wall-clock budget (`wall_s`) depends on the machine's speed by nature.

The runner calls :func:`tune_and_run` for a tuned spec (``runner.run_stages``); nothing in the trainer or the
evaluator knows about tuning: pruning raises ``optuna.TrialPruned`` from the train stage's per-epoch callback.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbench.config import RecipeError, RunSpec, _check_spec, fingerprint

TUNABLE_SECTIONS = ("encoder", "backbone", "train", "regime")  # what a trial may change: never data or eval
UNTUNABLE_FIELDS = ("kind", "label")  # another kind is another model, a label is a row name
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a trial under its row's run
TAG_STUDY = "recbench.tune.study"
TAG_TRIAL = "recbench.tune.trial"
TAG_TRIAL_STATE = "recbench.tune.trial_state"  # COMPLETE | PRUNED | FAILED on a trial's child run
TAG_FAILURE = "recbench.failure"
BEST_TAG_PREFIX = "recbench.tune.best."


class TuningError(RecipeError):
    """A study that cannot give a best configuration (nothing trains, every trial failed): the message says
    what to change in the recipe's `tune` section."""


class TrialFailed(Exception):
    """A trial whose configuration cannot train (non-finite loss, an invalid combination of values): the trial
    fails and counts towards the budget; the study goes on."""


# --------------------------------------------------------------------------------------------- search space


_RANGE = re.compile(r"^\s*(loguniform|uniform|int|logint)\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)\s*$")
_SCALAR = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Dimension:
    """One searched key: a float or int range (log-scaled or not) or a list of choices."""

    kind: str  # "float" | "int" | "choice"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()

    @property
    def text(self) -> str | list:
        """The canonical recipe form (what the recipe hash and MLflow see)."""
        if self.kind == "choice":
            return list(self.choices)
        name = ("log" if self.log else "") + ("int" if self.kind == "int" else "uniform")
        if self.kind == "int":
            return f"{name}({int(self.low)}, {int(self.high)})"
        return f"{name}({self.low!r}, {self.high!r})"

    def suggest(self, trial, name: str) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def probes(self) -> list:
        """Values checked against the run when the recipe is validated: the ends of a range and a point
        inside it (a float range over an integer setting fails there), or every choice."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        inner = (
            math.exp(math.log(self.low) + 0.377 * (math.log(self.high) - math.log(self.low)))
            if self.log
            else self.low + 0.377 * (self.high - self.low)
        )
        return [self.low, inner, self.high]


def parse_dimension(key: str, value: Any) -> Dimension:
    """`loguniform(lo, hi)`, `uniform(lo, hi)`, `int(lo, hi)`, `logint(lo, hi)` or a list of choices."""
    where = f"tune.space['{key}']"
    forms = "loguniform(lo, hi), uniform(lo, hi), int(lo, hi), logint(lo, hi) or a list of choices"
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{where}: the list of choices is empty; list at least two values")
        if not all(isinstance(v, _SCALAR) for v in value):
            raise ValueError(f"{where}: choices must be plain values (text, numbers, true/false, null)")
        if len({json.dumps(v) for v in value}) != len(value):
            raise ValueError(f"{where}: {list(value)} lists a value twice")
        return Dimension("choice", choices=tuple(value))
    found = _RANGE.match(value) if isinstance(value, str) else None
    if not found:
        raise ValueError(f"{where}: {value!r} is not a search dimension; write {forms}")
    name, low_text, high_text = found.groups()
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        raise ValueError(f"{where}: the bounds of {value!r} must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(f"{where}: {value!r} needs finite bounds with lo < hi")
    log = name.startswith("log")
    if log and low <= 0:
        raise ValueError(f"{where}: {value!r} is log-scaled, so its lower bound must be > 0")
    if name.endswith("int"):
        if low != int(low) or high != int(high):
            raise ValueError(f"{where}: the bounds of {value!r} must be integers")
        return Dimension("int", low, high, log)
    return Dimension("float", low, high, log)


def canonical_space(space: Any) -> dict[str, Any]:
    """A recipe's `tune.space`, each dimension checked and written in its canonical form; null entries (a run
    entry removing a key of the shared section) dropped."""
    if not isinstance(space, dict):
        raise ValueError(
            "tune.space maps dotted recipe keys to search dimensions, e.g. "
            "{train.lr: 'loguniform(1e-4, 1e-2)', backbone.dropout: [0.1, 0.2]}"
        )
    out = {str(k): parse_dimension(str(k), v).text for k, v in space.items() if v is not None}
    if not out:
        raise ValueError("tune.space is empty: name at least one recipe key to search")
    return out


def dimensions(spec: RunSpec) -> dict[str, Dimension]:
    return {key: parse_dimension(key, value) for key, value in spec.tune.space.items()}


def apply_values(spec: RunSpec, values: dict[str, Any], keep_tune: bool = False) -> RunSpec:
    """The run with `values` ({dotted key: value}) applied and validated again as a whole (and checked like
    any run of a recipe). Without `keep_tune` the result is a plain run (a trial); with it, the run as tuned
    (its hashes are those of `spec`: the searched values are masked in them)."""
    try:
        applied = _applied(spec, values)
    except ValueError as exc:
        raise RecipeError(f"run {spec.run_name} with {_describe(values)}: {exc}") from None
    return applied.model_copy(update={"tune": spec.tune}) if keep_tune else applied


def _applied(spec: RunSpec, values: dict[str, Any]) -> RunSpec:
    """`apply_values` without the run's name in the error (a ValueError saying which setting refused what)."""
    from pydantic import ValidationError

    from recbench.config import _user_path

    data = spec.model_dump(mode="json")
    data.pop("tune", None)
    for key, value in values.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    try:
        applied = RunSpec.model_validate(data)
    except ValidationError as exc:
        raise ValueError(
            "; ".join(f"{'.'.join(_user_path(e['loc'])) or 'run'}: {e['msg']}" for e in exc.errors())
        ) from None
    _check_spec(applied)
    return applied


def check_tune(spec: RunSpec) -> None:
    """Refuse, when the recipe is validated, a search the run cannot take: a key that is not a setting of the
    run (naming the nearest), a key outside the tunable sections or of the evaluation protocol, a value the
    setting does not accept, a metric whose K is not evaluated."""
    tune = spec.tune
    k = tune.metric.split("@")[1]
    if k not in {str(x) for x in spec.eval.ks}:
        raise ValueError(f"tune.metric {tune.metric} needs its K in eval.ks {list(spec.eval.ks)}")
    dump = spec.model_dump(mode="json")
    base_protocol = spec.protocol()
    for key, dimension in dimensions(spec).items():
        current = _setting(dump, key, spec.run_name)
        if dimension.kind == "float" and isinstance(current, int) and not isinstance(current, bool):
            raise ValueError(
                f"tune.space['{key}']: {key} is an integer setting (now {current}) but {dimension.text} "
                "draws fractions: search it with int(lo, hi), logint(lo, hi) or a list"
            )
        for value in dimension.probes():
            try:
                applied = _applied(spec, {key: value})
            except ValueError as exc:
                raise ValueError(
                    f"tune.space['{key}']: the value {value!r} is not valid for run {spec.run_name} ({exc}); "
                    "change the range or the choices"
                ) from None
            if applied.protocol() != base_protocol:
                raise ValueError(
                    f"tune.space['{key}']: {key} is part of the evaluation protocol (what must match for "
                    "rows to be ranked against each other), so trials would be measured differently: tune "
                    "only settings outside it (not max_len, loss, negatives)"
                )


def _setting(dump: dict, key: str, run_name: str) -> Any:
    """The current value of a dotted key in a run's dump; a key that names no setting is an error naming the
    nearest valid key."""
    parts = key.split(".")
    if parts[0] not in TUNABLE_SECTIONS:
        raise ValueError(
            f"tune.space['{key}']: only settings under {', '.join(TUNABLE_SECTIONS)} can be tuned (a trial "
            "never changes the data, split, evaluation or seed)"
        )
    if parts[-1] in UNTUNABLE_FIELDS:
        raise ValueError(
            f"tune.space['{key}']: `{parts[-1]}` cannot be tuned (it names the model or the row)"
        )
    node: Any = dump
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            here = ".".join(parts[:depth]) or "(top level)"
            valid = sorted(node) if isinstance(node, dict) else []
            near = difflib.get_close_matches(part, valid, n=1, cutoff=0.5)
            hint = (
                f"did you mean '{'.'.join([*parts[:depth], near[0]])}'?"
                if near
                else f"keys of {here}: {', '.join(valid) or 'none (it is a value)'}"
            )
            raise ValueError(f"tune.space key '{key}' is not a setting of run {run_name}: {hint}")
        node = node[part]
    if isinstance(node, dict):
        raise ValueError(
            f"tune.space['{key}'] is a whole section: name one of its settings, e.g. {key}.<name>"
        )
    return node


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in values.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------------------------- the study


@dataclass
class Outcome:
    """What a finished study says about the run."""

    best: dict[str, Any]
    best_value: float
    best_trial: int
    counts: dict[str, int]  # trials (counted), complete, pruned, failed, resumed, cut_short
    trial_s: float  # trial time over every session of the study
    study: str
    storage: str

    def notes(self, spec: RunSpec) -> dict[str, Any]:
        return {
            "study": self.study,
            "storage": self.storage,
            "metric": f"valid/{spec.tune.metric}",
            "best": self.best,
            "best_value": self.best_value,
            "best_trial": self.best_trial,
            **self.counts,
            "budget": {"trials": spec.tune.trials, "wall_s": spec.tune.wall_s},
            "space": dict(spec.tune.space),
        }


def budget_text(trials: int | None, wall_s: float | None) -> str:
    """'20 trials', '600 s of trials', or both."""
    parts = ([f"{trials} trials"] if trials else []) + ([f"{wall_s:g} s of trials"] if wall_s else [])
    return " or ".join(parts)


def study_name(spec: RunSpec, dataset_fingerprint: str, handle) -> str:
    """The study's key: the run (recipe hash: its tune section included, its searched values not), the data it
    tunes on, and the MLflow store and experiment its trials are child runs in (a study's trials and their
    runs stay together)."""
    where = "untracked"
    if handle is not None:
        where = fingerprint([handle.client.tracking_uri, _experiment_id(handle)])
    return f"recbench-{spec.recipe_hash}-{dataset_fingerprint}-{where[:8]}"


def _experiment_id(handle) -> str:
    return handle.client.get_run(handle.run_id).info.experiment_id


def study_storage(name: str) -> Path:
    from recbench.data.download import recbench_home

    return recbench_home() / "tuning" / f"{name}.db"


def tune_and_run(
    spec: RunSpec,
    reporter,
    handle,
    datasets,
    regime,
    on_model: Callable | None = None,
    announce: bool = True,
) -> Any:
    """The stages of a tuned run: the study (validation only), then the best configuration through the
    runner's stages once (its test evaluated once). Returns the run's RunResult."""
    from recbench import runner

    prepared = datasets.prepare(spec, reporter)
    outcome = run_study(spec, reporter, handle, datasets, regime, prepared.data.fingerprint)
    best_spec = apply_values(spec, outcome.best, keep_tune=True)
    reporter.stage(
        f"tune: best trial #{outcome.best_trial} of {outcome.counts['trials']} "
        f"(valid {spec.tune.metric} {outcome.best_value:.4f}): {_describe(outcome.best)}; training it"
    )
    if handle is not None:
        handle.set_tags(
            {
                TAG_STUDY: outcome.study,
                "recbench.tune.trials": outcome.counts["trials"],
                "recbench.tune.pruned": outcome.counts["pruned"],
                "recbench.tune.failed": outcome.counts["failed"],
                "recbench.tune.budget": budget_text(spec.tune.trials, spec.tune.wall_s),
                "recbench.tune.best_value": repr(outcome.best_value),
                **{f"{BEST_TAG_PREFIX}{k}": json.dumps(v) for k, v in outcome.best.items()},
            }
        )

    def amend(result) -> None:
        """The row is the tuned run (its name and label as declared), its cost includes the trials."""
        result.name = spec.run_name
        result.encoder = spec.encoder.display
        result.cost.tune_s = outcome.trial_s
        result.cost.wall_s += outcome.trial_s
        notes = outcome.notes(spec)
        notes["retrain_value"] = result.metrics["valid"].get(spec.tune.metric)
        result.notes["tune"] = notes

    return runner._run(best_spec, reporter, handle, datasets, regime, on_model, announce, amend=amend)


def run_study(spec: RunSpec, reporter, handle, datasets, regime, dataset_fingerprint: str) -> Outcome:
    """Create or resume the run's study, run the trials its budget still allows, and return the best."""
    import optuna
    from optuna.trial import TrialState

    tune = spec.tune
    name = study_name(spec, dataset_fingerprint, handle)
    storage, where = None, "in-memory"
    if handle is not None:
        path = study_storage(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        storage, where = f"sqlite:///{path}", str(path)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # recbench reports trials itself
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(  # steps are epochs (1, 2, ...); below n_warmup_steps: never
            n_startup_trials=tune.startup_trials, n_warmup_steps=tune.warmup_epochs + 1
        )
        if tune.prune
        else optuna.pruners.NopPruner(),
        load_if_exists=True,
    )
    # the row's MLflow run is the claim on its study (one process at a time): a trial still RUNNING belongs
    # to a process that is gone (killed); it ends FAIL, uncounted, like a trial cut short by Ctrl-C
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
    before = len(study.trials)
    cut_short = sum(1 for t in study.trials if t.state == TrialState.FAIL and "failure" not in t.user_attrs)
    # a resumed study must not replay the random start of the interrupted session
    seed = spec.seed if before == 0 else int(fingerprint([spec.seed, before]), 16) % 2**32
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.startup_trials)
    experiment = _experiment_id(handle) if handle is not None else None
    if handle is not None:
        _adopt_trials(handle, experiment, name, study)

    counted = _counted(study)
    spent = sum(_duration(t) for t in counted)
    left_trials = None if tune.trials is None else tune.trials - len(counted)
    left_s = None if tune.wall_s is None else tune.wall_s - spent
    resumed = len(counted)
    if resumed:
        reporter.stage(
            f"tune: resuming study {name} ({resumed} trials done, {spent:.0f} s; budget "
            f"{budget_text(tune.trials, tune.wall_s)})"
        )
    if (left_trials is None or left_trials > 0) and (left_s is None or left_s > 0):
        dims = dimensions(spec)
        objective = _Objective(spec, dims, reporter, handle, experiment, name, datasets, regime)

        def stop_when_spent(study, trial) -> None:
            """The wall budget is trial time over every session (not Optuna's timeout, which counts from
            this call): checked after each trial, so a trial that starts always finishes."""
            if tune.wall_s is not None and sum(_duration(t) for t in _counted(study)) >= tune.wall_s:
                study.stop()

        study.optimize(objective, n_trials=left_trials, callbacks=[stop_when_spent], catch=(TrialFailed,))

    counted = _counted(study)
    complete = [t for t in counted if t.state == TrialState.COMPLETE]
    failed = [t for t in counted if t.state == TrialState.FAIL]
    if not complete:
        first = failed[0].user_attrs.get("failure", "") if failed else ""
        raise TuningError(
            f"no trial of run {spec.run_name} finished ({len(counted)} trials: "
            f"{len(counted) - len(failed)} pruned, {len(failed)} failed{': ' + first if first else ''}); "
            "narrow tune.space (e.g. lower learning rates), raise the budget, or set tune.prune: false"
        )
    best = max(complete, key=lambda t: (t.value, -t.number))  # ties: the earlier trial
    return Outcome(
        best=dict(best.params),
        best_value=float(best.value),
        best_trial=best.number,
        counts={
            "trials": len(counted),
            "complete": len(complete),
            "pruned": len(counted) - len(complete) - len(failed),
            "failed": len(failed),
            "resumed": resumed,
            "cut_short": cut_short,  # trials of earlier sessions that an interruption or a crash stopped
        },
        trial_s=sum(_duration(t) for t in counted),
        study=name,
        storage=where,
    )


def _counted(study) -> list:
    """Trials that spent budget and are done: finished, pruned, or failed by their own configuration
    (a diverged loss). A trial cut short by an interruption is not counted: it runs again."""
    from optuna.trial import TrialState

    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and "failure" in t.user_attrs)
    ]


def _duration(trial) -> float:
    return trial.duration.total_seconds() if trial.duration is not None else 0.0


class _Objective:
    """One trial: the trial's values applied to the run, trained on validation only, reported per epoch."""

    def __init__(self, spec, dims, reporter, handle, experiment, study, datasets, regime):
        self.spec, self.dims, self.reporter = spec, dims, reporter
        self.handle, self.experiment, self.study = handle, experiment, study
        self.datasets, self.regime = datasets, regime

    def __call__(self, trial) -> float:
        import optuna

        tune = self.spec.tune
        values = {key: dim.suggest(trial, key) for key, dim in self.dims.items()}
        budget = budget_text(tune.trials, tune.wall_s)
        self.reporter.stage(f"tune: trial #{trial.number} (budget {budget}): {_describe(values)}")
        child = _start_child(self.handle, self.experiment, self.study, trial.number, self.spec, values)
        if child is not None:
            trial.set_user_attr("run_id", child.run_id)
        try:
            value = self._train(trial, values, child)
        except optuna.TrialPruned as exc:
            self.reporter.stage(f"tune: trial #{trial.number} {exc}")
            _end_child(child, "PRUNED")
            raise
        except TrialFailed as exc:
            trial.set_user_attr("failure", str(exc)[:2000])
            self.reporter.stage(f"tune: trial #{trial.number} failed: {exc}")
            _end_child(child, "FAILED", str(exc))
            raise
        except BaseException as exc:  # an interruption or an error of recbench: the study stops here
            _end_child(child, "FAILED", f"interrupted: {type(exc).__name__}: {exc}")
            raise
        self.reporter.stage(f"tune: trial #{trial.number} valid {tune.metric} {value:.4f}")
        if child is not None:
            child.log_metrics({f"tune/valid/{tune.metric.replace('@', '_at_')}": value})
        _end_child(child, "COMPLETE")
        return value

    def _train(self, trial, values: dict[str, Any], child) -> float:
        """The trial's value: the metric at its best epoch (the weights training restores)."""
        import optuna

        from recbench.training import NonFiniteLossError

        metric, prune = self.spec.tune.metric, self.spec.tune.prune
        try:
            trial_spec = apply_values(self.spec, values)
        except RecipeError as exc:  # a combination no single value showed (e.g. dim and heads)
            raise TrialFailed(f"invalid combination: {exc}") from None

        def report(record) -> None:
            trial.report(record.valid[metric], record.epoch)
            if prune and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {record.epoch}")

        try:
            history = train_trial(trial_spec, self.reporter, child, self.datasets, self.regime, report)
        except NonFiniteLossError as exc:
            raise TrialFailed(str(exc)) from None
        if history.best_epoch < 1:
            raise RuntimeError(f"trial {trial.number} recorded no epoch (best epoch {history.best_epoch})")
        return history.epochs[history.best_epoch - 1].valid[metric]


def train_trial(spec: RunSpec, reporter, handle, datasets, regime, after_epoch: Callable) -> Any:
    """The runner's first stages for one trial, in the runner's order (so that the best trial's configuration,
    trained again by the runner with the same seed, gives the same model): threads, seed, data, model as the
    regime starts it, then the train stage with `after_epoch` seeing every epoch. Returns the History."""
    from recbench import runner

    runner.set_threads(spec)
    device = runner.pick_device(spec.train.device)
    generator = runner.seed_everything(spec.seed)
    prepared = datasets.prepare(spec, reporter)
    data, split = prepared.data, prepared.split
    model, _ = runner.build_stage(spec, prepared, reporter)
    regime.adapt(model)
    model = model.to(device)
    if not (model.trainable and regime.trains):
        raise TuningError(
            f"run {spec.run_name} trains nothing (the popularity floor, or a zero-shot transfer), so every "
            "trial would give the same model: remove its `tune` section"
        )
    protocol = runner.eval_protocol(spec, data.num_items)
    return runner.train_stage(
        spec, model, split, protocol, device, generator, reporter, handle, after_epoch=after_epoch
    )


# --------------------------------------------------------------------------------------------- child runs


def _start_child(parent, experiment: str | None, study: str, number: int, spec: RunSpec, values: dict):
    """The trial's MLflow run, nested under the row's run. It carries no recipe hash: it is never reused,
    never a row of the leaderboard, only the record of one trial."""
    if parent is None:
        return None
    from recbench.tracking import RunHandle

    run = parent.client.create_run(
        experiment,
        run_name=f"{spec.run_name}/trial{number}",
        tags={
            TAG_PARENT: parent.run_id,
            TAG_STUDY: study,
            TAG_TRIAL: str(number),
            TAG_TRIAL_STATE: "RUNNING",
        },
    )
    child = RunHandle(parent.client, run.info.run_id)
    child.log_params({key: json.dumps(value) for key, value in values.items()})
    return child


def _end_child(child, state: str, reason: str | None = None) -> None:
    """FINISHED for a complete or pruned trial (the state tag and the name tell them apart), FAILED with the
    reason for a failed or interrupted one."""
    if child is None:
        return
    client, run_id = child.client, child.run_id
    client.set_tag(run_id, TAG_TRIAL_STATE, state)
    if state == "PRUNED":
        name = client.get_run(run_id).info.run_name
        client.update_run(run_id, name=f"{name} [pruned]")
    if reason is not None:
        client.set_tag(run_id, TAG_FAILURE, reason[:5000])
        client.set_tag(run_id, "mlflow.note.content", f"FAILED: {reason[:5000]}")
    client.set_terminated(run_id, status="FAILED" if state == "FAILED" else "FINISHED")


def _adopt_trials(parent, experiment: str, study_name_: str, study) -> None:
    """On resuming a study: the child runs of its counted trials move under this run (the row's run that
    failed with the interruption keeps only the interrupted trial), and a child run left RUNNING by a process
    that is gone is marked FAILED."""
    client = parent.client
    stale = client.search_runs(
        [experiment], filter_string=f"tags.`{TAG_STUDY}` = '{study_name_}' and attributes.status = 'RUNNING'"
    )
    for run in stale:
        if run.data.tags.get(TAG_PARENT) == parent.run_id:
            continue
        client.set_tag(run.info.run_id, TAG_TRIAL_STATE, "FAILED")
        client.set_tag(run.info.run_id, TAG_FAILURE, "interrupted: its process ended during the trial")
        client.set_terminated(run.info.run_id, status="FAILED")
    for trial in _counted(study):
        run_id = trial.user_attrs.get("run_id")
        if run_id:
            try:
                client.set_tag(run_id, TAG_PARENT, parent.run_id)
            except Exception:  # noqa: BLE001 - a child run deleted from the store: the trial still counts
                pass
