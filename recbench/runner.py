"""run(recipe) -> RunResults: seed, data, split, build, fit, evaluate, track.

One code path for every encoder x backbone pair: the runner builds modules from recipe sections and hands a
:class:`~recbench.model.Recommender` to the trainer and the evaluator; it never branches on a kind.

A run is reused (not trained again) only when a FINISHED run in the store has the same recipe hash, the same
dataset fingerprint (the content of the loaded data) and the same protocol fingerprint, and its artifacts
can be read back; anything else trains.
"""

from __future__ import annotations

import fnmatch
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

import recbench
from recbench.config import (
    DatasetSection,
    Recipe,
    RecipeError,
    RunSpec,
    baseline_label,
    expand,
    fingerprint,
    mask_tuned,
)
from recbench.data.batches import make_windows
from recbench.data.cards import get_card
from recbench.data.content import ItemContent
from recbench.data.loader import load_dataset
from recbench.data.schema import DataError, SequenceData
from recbench.data.splits import EvalSet, Split, make_split
from recbench.evaluation.protocol import (
    Evaluation,
    Protocol,
    SliceSpec,
    eval_slices,
    evaluate,
    popularity_thresholds,
)
from recbench.model import build_model
from recbench.regimes import Scratch, SourceModel, read_checkpoint_state, regime_for
from recbench.reporting import Reporter
from recbench.resources import peak_rss_mb, reset_peak_rss
from recbench.results import Cost, RunResult, git_commit, machine_description, per_user_frame
from recbench.training import FitConfig, History, LossSpec, fit


@dataclass
class RunOptions:
    data_dir: str | None = None  # overrides dataset.data_dir of every run
    data_dirs: dict[str, str] | None = None  # card name -> folder ("" -> every run); after data_dir
    only: str | None = None  # glob over run names
    max_runs: int | None = None
    skip_finished: bool = True
    track: bool = True
    command: str | None = None  # the command line that started the runs (a run tag; the leaderboard shows it)
    executor: str = "serial"  # where runs train: a name in recbench.executors.EXECUTORS
    address: str | None = None  # the cluster a parallel executor joins (ray: auto, HOST:PORT, ray://...)
    workers: int | None = None  # at most this many runs at once (parallel executors)


def parse_data_dirs(values: list[str] | None) -> dict[str, str]:
    """`--data-dir` values: `DIR` (every dataset) or `CARD=DIR` (one card) -> {card or "": folder}."""
    out: dict[str, str] = {}
    for value in values or []:
        card, sep, folder = value.partition("=")
        if sep and card and not card.startswith((".", "/", "~")):
            try:
                get_card(card)
            except DataError as exc:
                raise RecipeError(f"--data-dir {value}: {exc}") from None
            out[card] = folder
        else:
            out[""] = value
    return out


def select_runs(recipe: Recipe, options: RunOptions) -> list[RunSpec]:
    runs = expand(recipe)
    folders = {"": options.data_dir} if options.data_dir else {}
    folders.update(options.data_dirs or {})

    def located(section: DatasetSection) -> DatasetSection:
        """The section with its folder (and those of the datasets mixed into it) from --data-dir."""
        update: dict = {}
        folder = folders.get(section.name, folders.get(""))
        if folder:
            update["data_dir"] = folder
        if section.mix_with:
            update["mix_with"] = tuple(located(d) for d in section.mix_with)
        return section.model_copy(update=update) if update else section

    if folders:  # every dataset a run reads: its own, mixed-in ones, a regime's sources
        runs = [
            r.model_copy(update={"dataset": located(r.dataset), "regime": r.regime.map_datasets(located)})
            for r in runs
        ]
    if options.only:
        pattern = options.only if any(c in options.only for c in "*?[") else f"*{options.only}*"
        runs = [r for r in runs if fnmatch.fnmatch(r.run_name, pattern)]
    if options.max_runs is not None:
        runs = runs[: options.max_runs]
    return runs


def check_against_cards(runs: list[RunSpec]) -> None:
    """Refuse, before any data is loaded, what the cards already say cannot work (e.g. K >= catalogue)."""
    for spec in runs:
        try:
            card = get_card(spec.dataset.name)
        except DataError as exc:
            raise RecipeError(str(exc)) from None
        if card.expected.items is not None:
            check_catalogue(spec, card.expected.items)
        if card.presplit and spec.split.kind == "temporal":
            raise RecipeError(
                f"{card.name} fixes its own leave-one-out split and has no timestamps: use leave_one_out"
            )


def check_catalogue(spec: RunSpec, num_items: int) -> None:
    k = max(spec.eval.ks)
    if k >= num_items:
        raise RecipeError(
            f"eval.ks contains {k}, but {spec.dataset.name} has only {num_items} items: every K must be "
            "smaller than the catalogue"
        )
    if spec.eval.candidates == "sampled" and spec.eval.sampled_negatives >= num_items:
        raise RecipeError(
            f"eval.sampled_negatives={spec.eval.sampled_negatives} is not below the catalogue size {num_items}"
        )
    if spec.eval.candidates == "sampled" and k > spec.eval.sampled_negatives:
        raise RecipeError(
            f"eval.ks contains {k}, more than the {spec.eval.sampled_negatives} sampled candidates"
        )
    if spec.train.loss == "sampled_ce" and spec.train.negatives >= num_items:
        raise RecipeError(
            f"train.negatives={spec.train.negatives} is not below the catalogue size {num_items}"
        )


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch, and make torch pick deterministic kernels.

    Why the latter: with 2+ threads some CPU kernels (the scatter-add in the backward of an index gather) sum
    in a thread-dependent order, so two runs of one recipe drifted apart after a few steps. The protocol
    promises same recipe + same seed on the same machine = same numbers.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, read at CUDA init
    torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RecipeError("train.device is cuda but no CUDA device is available (use auto or cpu)")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def run_recipe(
    recipe: Recipe, reporter: Reporter | None = None, options: RunOptions | None = None
) -> list[RunResult]:
    """Every run of the recipe's grid, reusing those already FINISHED on the same recipe, data and protocol."""
    from recbench.executors import GridContext, make_executor

    reporter = reporter or Reporter()
    options = options or RunOptions()
    runs = select_runs(recipe, options)
    check_against_cards(runs)
    executor = make_executor(options)  # serial or ray (recbench.executors): the reuse check stays here
    tracker = None
    if options.track:
        from recbench.tracking import Tracker

        tracker = Tracker(recipe.experiment)
    context = GridContext(runs, reporter, tracker, options, baseline_label(recipe), DataMemo())
    reporter.grid_start(len(runs))
    try:
        return executor.run(context)
    finally:
        reporter.grid_end()


def run_spec(
    spec: RunSpec,
    reporter: Reporter | None = None,
    tracker=None,
    baseline: str | None = None,
    command: str | None = None,
    datasets: DataMemo | None = None,
    reuse_finished: bool = False,
) -> RunResult:
    """Train and evaluate one run; tracked in MLflow when a tracker is given (with the recipe's baseline
    label and the command line as tags, for the leaderboard). The tracked run is a claim: it raises
    `tracking.ClaimLost` when another process trains the same run (or, with `reuse_finished`, finished it)."""
    reporter = reporter or Reporter()
    datasets = datasets or DataMemo()
    regime = regime_for(spec)
    regime.before(lambda source: source_stage(source, reporter, tracker, datasets, command))
    if tracker is None:
        return run_stages(spec, reporter, None, datasets, regime)
    params, tags = run_tags(spec, baseline, command, datasets.prepare(spec, reporter))
    with tracker.run(spec.run_name, params, tags, reuse_finished=reuse_finished) as handle:
        return run_stages(spec, reporter, handle, datasets, regime)


def run_in_handle(
    spec: RunSpec, reporter: Reporter, handle, datasets: DataMemo, tracker=None, command: str | None = None
) -> RunResult:
    """What `run_spec` does inside its tracked run, for a run created elsewhere: a Ray task logs into the
    run its driver claimed (`handle`), with a tracker of its own for a transfer regime's source stage."""
    regime = regime_for(spec)
    regime.before(lambda source: source_stage(source, reporter, tracker, datasets, command))
    return run_stages(spec, reporter, handle, datasets, regime)


def source_stage(
    spec: RunSpec, reporter: Reporter, tracker, datasets: DataMemo, command: str | None = None
) -> tuple[SourceModel, bool]:
    """The source stage of a transfer run: a FINISHED source run on the same data is reused (its saved
    weights); otherwise it is trained now, tracked like any run. Returns (weights, reused)."""
    if tracker is not None:
        prepared = datasets.prepare(spec, reporter)
        done = tracker.reusable_result(
            spec.recipe_hash, prepared.data.fingerprint, prepared.protocol_fingerprint
        )
        if done is not None:
            try:
                state = read_checkpoint_state(tracker.client, done.run_id)
            except Exception:  # noqa: BLE001 - a run without a checkpoint (made before them): train again
                state = None
            if state is not None:
                reporter.stage(f"source stage: reusing {spec.run_name} (run {done.run_id[:8]})")
                return SourceModel(state, done.run_id, done.cost.wall_s, spec.run_name), True
    reporter.stage(f"source stage: {spec.run_name}")
    kept: dict = {}

    def keep(model) -> None:
        kept["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    if tracker is None:
        result = _run(spec, reporter, None, datasets, regime_for(spec), on_model=keep, announce=False)
    else:
        params, tags = run_tags(spec, None, command, datasets.prepare(spec, reporter))
        with tracker.run(spec.run_name, params, tags) as handle:
            result = _run(spec, reporter, handle, datasets, regime_for(spec), on_model=keep, announce=False)
    return SourceModel(kept["state"], result.run_id, result.cost.wall_s, spec.run_name), False


def run_tags(
    spec: RunSpec, baseline: str | None, command: str | None, prepared: PreparedData
) -> tuple[dict, dict[str, str]]:
    """MLflow params and tags of a run at creation; the fingerprints are part of its claim key. A tuned run's
    searched settings read `<tuned>` (the values it trained with are tags, recbench.tune.best.*)."""
    params = mask_tuned(spec.model_dump(mode="json"))
    tags = {
        "recbench.recipe_hash": spec.recipe_hash,
        "recbench.version": recbench.__version__,
        "recbench.git_commit": git_commit(),
        "recbench.recipe": spec.name,
        "recbench.machine": machine_description(),
        "recbench.torch": torch.__version__,
        "mlflow.runName": spec.run_name,
        "recbench.dataset_fingerprint": prepared.data.fingerprint,
        "recbench.protocol_fingerprint": prepared.protocol_fingerprint,
    }
    if baseline:
        tags["recbench.baseline"] = baseline
    if command:
        tags["recbench.command"] = command
    return params, tags


# --------------------------------------------------------------------------------------------- stages


@dataclass
class PreparedData:
    """Stage 1 product: the loaded dataset, its item content, its split and the protocol fingerprint."""

    data: SequenceData
    split: Split
    content: Callable[[], ItemContent]  # rendered on demand: only content encoders read it
    protocol_fingerprint: str


class DataMemo:
    """Datasets and splits prepared once per grid: the reuse check and the runs of one dataset share them."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[SequenceData, Callable[[], ItemContent]]] = {}
        self._splits: dict[tuple[str, str], Split] = {}

    def _load(self, section: DatasetSection, reporter: Reporter):
        """(data, content) of a dataset section; a section with `mix_with` is the mixture of all of them."""
        key = fingerprint(section.model_dump(mode="json"))
        if key in self._data:
            return self._data[key]
        if section.mix_with:
            from recbench.data.mixing import mix_datasets

            parts = [section.model_copy(update={"mix_with": ()}), *section.mix_with]
            loaded = [self._load(part, reporter) for part in parts]
            mixed, mixed_content = mix_datasets([(data, content()) for data, content in loaded])
            self._data[key] = (mixed, lambda: mixed_content)
            return self._data[key]
        # fetching says where the data came from, also in a reuse-check load: it happens once
        data = load_dataset(
            section, progress=reporter.download, notify=lambda line: reporter.stage(f"  {line}")
        )
        card = get_card(section.name)

        def content() -> ItemContent:
            template = section.text_template or card.text_template
            return ItemContent.from_data(
                data, template, card.missing_text, card.missing_image, data_dir=section.data_dir
            )

        self._data[key] = (data, content)
        return self._data[key]

    def prepare(self, spec: RunSpec, reporter: Reporter) -> PreparedData:
        data, content = self._load(spec.dataset, reporter)
        check_catalogue(spec, data.num_items)
        dataset_key = fingerprint(spec.dataset.model_dump(mode="json"))
        split_key = (dataset_key, fingerprint(spec.split.model_dump(mode="json")))
        if split_key not in self._splits:
            self._splits[split_key] = make_split(data, spec.split)
        protocol_fp = fingerprint({**spec.protocol(), "dataset_fingerprint": data.fingerprint})
        return PreparedData(data, self._splits[split_key], content, protocol_fp)


def run_stages(
    spec: RunSpec,
    reporter: Reporter,
    handle,
    datasets: DataMemo,
    regime: Scratch | None = None,
    on_model: Callable | None = None,
    announce: bool = True,
) -> RunResult:
    """The stages of one run (:func:`_run`); a run with a `tune` section runs its study first and then the
    stages of its best configuration once (:mod:`recbench.tuning`)."""
    regime = regime or regime_for(spec)
    if spec.tune is not None:
        from recbench.tuning import tune_and_run

        return tune_and_run(spec, reporter, handle, datasets, regime, on_model, announce)
    return _run(spec, reporter, handle, datasets, regime, on_model, announce)


def _run(
    spec: RunSpec,
    reporter: Reporter,
    handle,
    datasets: DataMemo,
    regime: Scratch | None = None,
    on_model: Callable | None = None,
    announce: bool = True,
    amend: Callable[[RunResult], None] | None = None,
) -> RunResult:
    """The stages of one run: prepare data, build the model (as the regime starts it), train, assess,
    record. `on_model` sees the final model (the source stage keeps its weights); `announce` False keeps a
    nested run (a source stage) out of the grid's progress; `amend` completes the result before it is
    recorded (a tuned run adds its study)."""
    regime = regime or regime_for(spec)
    t_start = time.perf_counter()
    per_run_peak = reset_peak_rss()
    set_threads(spec)
    device = pick_device(spec.train.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    generator = seed_everything(spec.seed)

    reporter.stage(f"data: {spec.dataset.name}")
    prepared = datasets.prepare(spec, reporter)
    data, split = prepared.data, prepared.split
    if handle:
        handle.set_tags(
            {
                "recbench.protocol_fingerprint": prepared.protocol_fingerprint,
                "recbench.dataset_fingerprint": data.fingerprint,
                "recbench.device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            }
        )
    reporter.stage(
        f"{data.num_users} users, {data.num_items} items, {data.num_interactions} interactions; "
        f"{len(split.valid)} valid / {len(split.test)} test users ({spec.split.kind}); "
        f"{torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}"
    )

    model, report = build_stage(spec, prepared, reporter)
    regime_notes = regime.adapt(model)
    model = model.to(device)
    protocol = eval_protocol(spec, data.num_items)
    if model.trainable and regime.trains:
        history = train_stage(spec, model, split, protocol, device, generator, reporter, handle)
    else:
        reporter.stage("nothing to train: evaluated as built")
        history = History(stop_reason="not_trained")

    t_eval = time.perf_counter()
    valid_eval = _evaluate(model, split, "valid", protocol, device, reporter, spec, with_slices=True)
    test_eval = _evaluate(model, split, "test", protocol, device, reporter, spec, with_slices=True)
    eval_s = time.perf_counter() - t_eval
    metrics, slice_sizes = metric_groups(valid_eval, test_eval)

    params = list(model.parameters())
    cost = Cost(
        wall_s=time.perf_counter() - t_start,
        train_s=history.train_s,
        s_per_epoch=history.s_per_epoch,
        epochs=len(history.epochs),
        best_epoch=history.best_epoch,
        stop_reason=history.stop_reason,
        encode_s=report.encode_s,
        eval_s=eval_s,
        peak_rss_mb=peak_rss_mb(),
        cuda_peak_mb=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        params_total=sum(p.numel() for p in params) + int(report.extra.get("frozen_params", 0)),
        params_trainable=sum(p.numel() for p in params if p.requires_grad),
        **getattr(model, "cost_facts", dict)(),  # model-specific cost (a generative model's decoding)
        pretrain_s=regime.source.wall_s if regime.source else None,
    )
    result = RunResult(
        name=spec.run_name,
        recipe=spec.name,
        experiment=spec.experiment,
        dataset=spec.dataset.name,
        split=spec.split.kind,
        encoder=spec.encoder.display,
        encoder_kind=spec.encoder.kind,
        backbone=spec.backbone.kind,
        seed=spec.seed,
        recipe_hash=spec.recipe_hash,
        protocol_fingerprint=prepared.protocol_fingerprint,
        dataset_fingerprint=data.fingerprint,
        protocol=spec.protocol(),
        encoder_revision=report.revision,
        git_commit=git_commit(),
        metrics=metrics,
        slice_sizes=slice_sizes,
        cost=cost,
        history=[
            {
                "epoch": e.epoch,
                "loss": e.loss,
                "train_s": e.train_s,
                **{f"valid/{k}": v for k, v in e.valid.items()},
            }
            for e in history.epochs
        ],
        data_stats={k: v for k, v in {**data.stats, **split.stats}.items() if not isinstance(v, dict)},
        notes={
            "targets_in_history_test": test_eval.targets_in_history,
            "stopped_early": history.stopped_early,
            "encoder_cache_hit": report.cache_hit,
            "peak_rss_per_run": per_run_peak,
            "popularity_thresholds": dict(
                zip(
                    ("head_min_count", "tail_max_count"),
                    popularity_thresholds(
                        split.train_item_counts, spec.eval.popularity_head, spec.eval.popularity_tail
                    ),
                )
            ),
            **report.extra,
            **regime_notes,
        },
        run_id=handle.run_id if handle else None,
    )
    if amend:
        amend(result)
    if handle:
        handle.set_tags({"recbench.stop_reason": history.stop_reason})
        handle.log_checkpoint(model, data)
        handle.log_result(result, per_user_results(test_eval), spec.model_dump(mode="json"))
    if on_model:
        on_model(model)
    if announce:
        reporter.run_end(result)
    return result


def set_threads(spec: RunSpec) -> None:
    """torch threads for a run: train.threads, else RECBENCH_THREADS, else 1 (:func:`run_threads`)."""
    from recbench.executors import run_threads

    torch.set_num_threads(run_threads(spec))


def build_stage(spec: RunSpec, prepared: PreparedData, reporter: Reporter | None = None):
    """Stage 2: (model, encoder report) as the run's sections build it, its encoder prepared (content
    encoded or read from the cache); the regime adapts it afterwards."""
    return build_model(
        spec.encoder,
        spec.backbone,
        prepared.content,
        prepared.data.num_items,
        spec.train.max_len,
        prepared.split.train_item_counts,
        reporter,
    )


def eval_protocol(spec: RunSpec, num_items: int) -> Protocol:
    """The evaluator's settings for a run (validation during training, then validation and test)."""
    return Protocol(
        num_items=num_items,
        max_len=spec.train.max_len,
        ks=spec.eval.ks,
        exclude_seen=spec.eval.exclude_seen,
        ties=spec.eval.ties,
        candidates=spec.eval.candidates,
        sampled_negatives=spec.eval.sampled_negatives,
        batch_size=spec.eval.batch_size,
        seed=spec.seed,
    )


def train_stage(
    spec, model, split, protocol, device, generator, reporter, handle, after_epoch: Callable | None = None
) -> History:
    """Stage 3: early-stopped training on the split's training sequences; per-epoch metrics to MLflow.
    `after_epoch(record)` sees each epoch once it is logged (a tuning trial reports it, and may stop the
    trial by raising)."""
    windows = make_windows(
        split.train, spec.train.max_len, spec.train.stride, shift=model.backbone.shifted_windows
    )

    judged = validation_sample(split.valid, spec.train.valid_users, spec.seed)

    def validate() -> dict[str, float]:
        return _evaluate(model, split, "valid", protocol, device, reporter, spec, eval_set=judged).metrics

    n_batches = -(-len(windows) // spec.train.batch_size)

    def on_epoch(record, improved: bool) -> None:
        reporter.epoch_end(record.epoch, record.loss, record.valid, improved, record.train_s)
        if handle:
            values = {"train/loss": record.loss, "train/epoch_s": record.train_s}
            values.update({f"epoch/valid/{k.replace('@', '_at_')}": v for k, v in record.valid.items()})
            handle.log_metrics(values, step=record.epoch)
        if after_epoch:
            after_epoch(record)
        if record.epoch < spec.train.max_epochs:
            reporter.epoch_start(record.epoch + 1, spec.train.max_epochs, n_batches, spec.train.patience)

    reporter.stage(
        f"train: {spec.encoder.display} x {spec.backbone.kind}, {len(windows)} windows, {windows.num_targets} targets"
    )
    reporter.epoch_start(1, spec.train.max_epochs, n_batches, spec.train.patience)
    fit_config = FitConfig(
        loss=LossSpec(spec.train.loss, spec.train.negatives),
        optimizer=spec.train.optimizer,
        lr=spec.train.lr,
        weight_decay=spec.train.weight_decay,
        batch_size=spec.train.batch_size,
        max_epochs=spec.train.max_epochs,
        patience=spec.train.patience,
        valid_metric=spec.train.valid_metric,
        grad_clip=spec.train.grad_clip,
        mask_prob=model.backbone.mask_prob,
        held_out=split.cold_items,
    )
    return fit(
        model,
        windows,
        validate,
        fit_config,
        generator,
        on_epoch=on_epoch,
        on_batch=lambda n: reporter.batch(),
        device=device,
    )


def validation_sample(valid: EvalSet, users: int | None, seed: int) -> EvalSet:
    """The validation users early stopping judges (train.valid_users): all, or the same seeded sample of
    `users` of them every epoch (kept in their order)."""
    if users is None or users >= len(valid):
        return valid
    mask = np.zeros(len(valid), dtype=bool)
    mask[np.random.default_rng(seed).choice(len(valid), size=users, replace=False)] = True
    return valid.subset(mask)


HISTORY_KEPT = "history-kept"  # metric group of the papers' convention (history items stay candidates)
HISTORY_KEPT_SLICES = ("warm", "cold")


def metric_groups(valid_eval: Evaluation, test_eval: Evaluation) -> tuple[dict, dict]:
    """Stage 4 product: metric groups and slice sizes of a run.

    ``valid``, ``test`` and ``<group>/<slice>`` follow the recipe's eval section (history excluded by
    default); ``<group>/history-kept`` and ``<group>/history-kept/warm|cold`` rank the same scores with the
    history kept, as RecBole and most papers do.
    """
    metrics: dict[str, dict[str, float]] = {"valid": valid_eval.metrics, "test": test_eval.metrics}
    slice_sizes: dict[str, int] = {}
    for group, ev in (("valid", valid_eval), ("test", test_eval)):
        for name, values in ev.slices.items():
            metrics[f"{group}/{name}"] = values
            slice_sizes[f"{group}/{name}"] = ev.slice_sizes[name]
        kept = ev.history_kept
        metrics[f"{group}/{HISTORY_KEPT}"] = kept.metrics
        for name in HISTORY_KEPT_SLICES:
            if name in kept.slices:
                metrics[f"{group}/{HISTORY_KEPT}/{name}"] = kept.slices[name]
                slice_sizes[f"{group}/{HISTORY_KEPT}/{name}"] = kept.slice_sizes[name]
    return metrics, slice_sizes


def per_user_results(ev: Evaluation):
    """The per-user parquet: ranks and metrics of both conventions (history kept as `history-kept:` columns)."""
    frame = per_user_frame(ev.users, ev.targets, ev.ranks, ev.per_user, ev.slice_masks)
    kept = ev.history_kept
    return frame.with_columns(
        pl.Series(f"{HISTORY_KEPT}:rank", kept.ranks.astype(np.float64)),
        *(pl.Series(f"{HISTORY_KEPT}:{k}", v.astype(np.float64)) for k, v in kept.per_user.items()),
    )


def _evaluate(
    model,
    split: Split,
    which: str,
    protocol: Protocol,
    device,
    reporter: Reporter,
    spec: RunSpec,
    with_slices: bool = False,
    eval_set: EvalSet | None = None,
) -> Evaluation:
    """Rank the users of `which` split part (or of `eval_set`, a sample of them)."""
    if eval_set is None:
        eval_set = split.valid if which == "valid" else split.test
    slice_spec = SliceSpec(
        cold_threshold=spec.eval.cold_threshold,
        popularity_head=spec.eval.popularity_head,
        popularity_tail=spec.eval.popularity_tail,
        history_bounds=spec.eval.history_bounds,
    )
    slices = eval_slices(eval_set, split.train_item_counts, slice_spec) if with_slices else None
    reporter.eval_start(f"eval {which}", len(eval_set))
    model.eval()
    out = evaluate(
        model.scorer(), eval_set, protocol, device=device, slices=slices, on_batch=reporter.eval_batch
    )
    reporter.eval_end()
    return out
