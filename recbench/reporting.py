"""What a run shows a person while it works: a silent reporter for tests, live bars on a terminal, and plain
flushed lines when stderr is a file (a cluster job, nohup, CI), where a live display shows nothing until the
run ends.

The runner calls these hooks; nothing in training or evaluation prints. `make_reporter` picks the right one.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

HEARTBEAT_S = 60.0
"""Plain mode: the longest silence inside an epoch, an evaluation, an encode or a download (while it advances)."""


class Reporter:
    """No-op hooks (used by tests and --quiet)."""

    def grid_start(self, total: int) -> None: ...
    def run_start(self, index: int, total: int, name: str) -> None: ...
    def run_skipped(self, name: str, run_id: str) -> None: ...
    def stage(self, text: str) -> None: ...
    def epoch_start(self, epoch: int, max_epochs: int, batches: int, patience: int | None = None) -> None:
        """Epoch `epoch` of at most `max_epochs` begins, `batches` batches long.

        `patience` (the recipe's train.patience) lets the reporter say when early stopping would end the run;
        without it no total time estimate is shown, since extrapolating to `max_epochs` misleads.
        """

    def batch(self, n: int = 1) -> None: ...
    def epoch_end(
        self, epoch: int, loss: float, valid: dict[str, float], improved: bool, seconds: float
    ) -> None:
        """`seconds` is the epoch's training time; `improved` is the trainer's verdict on the valid metric."""

    def eval_start(self, what: str, users: int) -> None: ...
    def eval_batch(self, n: int) -> None: ...
    def eval_end(self) -> None: ...
    def run_end(self, result: Any) -> None: ...
    def run_failed(self, name: str, error: BaseException) -> None: ...
    def grid_end(self) -> None: ...
    def download(self, done: int, total: int | None) -> None: ...
    def work_start(self, what: str, total: int | None) -> None:
        """A long one-off job (e.g. encoding the catalogue): a bar of `total` steps."""

    def work_advance(self, n: int = 1) -> None: ...
    def work_end(self) -> None: ...


def make_reporter(metric: str = "ndcg@10", quiet: bool = False, console: Console | None = None) -> Reporter:
    """Live bars when stderr is a terminal, plain lines when it is not, nothing when quiet.

    rich decides what a terminal is, so FORCE_COLOR / TTY_COMPATIBLE force the bars where that is wanted.
    """
    if quiet:
        return Reporter()
    console = console or Console(stderr=True)
    if console.is_terminal:
        return RichReporter(console, metric=metric)
    return PlainReporter(console.file, metric=metric)


def _hms(seconds: float) -> str:
    """0:42, 12:05, 1:02:03: short enough for a log line, unambiguous as a duration."""
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _eta(seconds: float) -> str:
    """An estimate: tenths of a second below a minute (small runs), h:mm:ss above."""
    return f"{seconds:.1f} s" if seconds < 60 else _hms(seconds)


class _EpochWatch:
    """The epochs of one run as both reporters need them: the best so far and when early stopping would end it.

    The trainer stops after `patience` epochs without improvement, so with no further gain the run ends at
    epoch min(best_epoch + patience, max_epochs); that, times the measured wall time per epoch (training and
    validation), is the only honest total estimate: extrapolating to max_epochs said 0:38:43 left a minute
    before a run stopped. A new improvement pushes the stop back, which is why it is shown as "if no gain".
    """

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.max_epochs = 0
        self.patience: int | None = None
        self.done = 0
        self.best_value = math.nan
        self.best_epoch = 0
        self.t_first: float | None = None
        self.t_last_end: float | None = None

    def start(self, epoch: int, max_epochs: int, patience: int | None) -> None:
        if epoch <= self.done or epoch == 1:  # a new run
            self.reset()
        self.max_epochs = max_epochs
        if patience is not None:
            self.patience = patience
        if self.t_first is None:
            self.t_first = self.clock()

    def end(self, epoch: int, value: float, improved: bool) -> None:
        self.done = epoch
        if improved:
            self.best_value, self.best_epoch = value, epoch
        self.t_last_end = self.clock()

    def stop_epoch(self) -> int | None:
        """The epoch early stopping ends the run at if the metric does not improve again (None: unknown)."""
        if self.patience is None or not self.done:
            return None
        return min(self.best_epoch + self.patience, self.max_epochs)

    def eta_s(self) -> float | None:
        stop = self.stop_epoch()
        if stop is None or self.t_first is None or self.t_last_end is None:
            return None
        per_epoch = (self.t_last_end - self.t_first) / self.done
        return max(0, stop - self.done) * per_epoch

    def eta_label(self) -> str:
        """'if no gain: stops ep 14 in ~7.2 s', or '' when patience is unknown (no ETA rather than a wrong one)."""
        stop, eta = self.stop_epoch(), self.eta_s()
        if stop is None or eta is None:
            return ""
        if self.done >= self.max_epochs:
            return "last epoch (max_epochs)"
        if stop <= self.done:
            return f"early stop: no gain in {self.patience} epochs"
        if self.best_epoch + (self.patience or 0) >= self.max_epochs:
            return f"max_epochs: ends ep {stop} in ~{_eta(eta)}"
        return f"if no gain: stops ep {stop} in ~{_eta(eta)}"


class _RemainingColumn(TimeRemainingColumn):
    """Time remaining, unless the task carries its own labelled estimate in the `eta` field (the epochs)."""

    def render(self, task: Task) -> Text:
        if "eta" in task.fields:
            return Text(task.fields["eta"], style="progress.remaining")
        return super().render(task)


class RichReporter(Reporter):
    """Progress bars on stderr: the grid, the epochs of the current run, its batches and evaluations.

    The epochs bar shows no extrapolation to max_epochs but when early stopping would end the run (`_EpochWatch`).
    """

    def __init__(
        self,
        console: Console | None = None,
        metric: str = "ndcg@10",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.console = console or Console(stderr=True)
        self.metric = metric
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            _RemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
            get_time=clock,
        )
        self.watch = _EpochWatch(clock)
        self.grid_task = None
        self.epoch_task = None
        self.batch_task = None
        self.eval_task = None
        self.dl_task = None
        self.work_task = None

    def grid_start(self, total: int) -> None:
        self.progress.start()
        self.grid_task = self.progress.add_task("runs", total=total, info="")

    def run_start(self, index: int, total: int, name: str) -> None:
        self.console.print(f"[bold cyan]run {index}/{total}[/] {name}")

    def run_skipped(self, name: str, run_id: str) -> None:
        self.console.print(f"[dim]skip {name}: already FINISHED in MLflow (run {run_id[:8]})[/]")
        self._advance_grid()

    def stage(self, text: str) -> None:
        self.console.print(f"  {text}", soft_wrap=True)

    def epoch_start(self, epoch: int, max_epochs: int, batches: int, patience: int | None = None) -> None:
        self.watch.start(epoch, max_epochs, patience)
        if self.epoch_task is None:
            self.epoch_task = self.progress.add_task("epochs", total=max_epochs, info="", eta="")
        if self.batch_task is None:
            self.batch_task = self.progress.add_task("batches", total=batches, info="")
        self.progress.reset(self.batch_task, total=batches)
        self.progress.update(self.batch_task, description=f"epoch {epoch}")

    def batch(self, n: int = 1) -> None:
        if self.batch_task is not None:
            self.progress.advance(self.batch_task, n)

    def epoch_end(
        self, epoch: int, loss: float, valid: dict[str, float], improved: bool, seconds: float
    ) -> None:
        value = valid.get(self.metric, float("nan"))
        self.watch.end(epoch, value, improved)
        mark = "*" if improved else " "
        info = f"loss {loss:.4f}  valid {self.metric} {value:.4f}{mark}"
        if self.epoch_task is not None:
            self.progress.update(self.epoch_task, completed=epoch, info=info, eta=self.watch.eta_label())

    def eval_start(self, what: str, users: int) -> None:
        if self.eval_task is None:
            self.eval_task = self.progress.add_task(what, total=users, info="")
        self.progress.reset(self.eval_task, total=users)
        self.progress.update(self.eval_task, description=what, visible=True)

    def eval_batch(self, n: int) -> None:
        if self.eval_task is not None:
            self.progress.advance(self.eval_task, n)

    def eval_end(self) -> None:
        if self.eval_task is not None:
            self.progress.update(self.eval_task, visible=False)

    def _clear_run_tasks(self) -> None:
        for attr in ("epoch_task", "batch_task", "eval_task"):
            task = getattr(self, attr)
            if task is not None:
                self.progress.remove_task(task)
                setattr(self, attr, None)

    def _advance_grid(self) -> None:
        if self.grid_task is not None:
            self.progress.advance(self.grid_task)

    def run_end(self, result: Any) -> None:
        self._clear_run_tasks()
        self.console.print(f"  [green]done[/] {_done_text(result, self.metric)}")
        self._advance_grid()

    def run_failed(self, name: str, error: BaseException) -> None:
        self._clear_run_tasks()
        self.console.print(f"  [red]FAILED[/] {name}: {type(error).__name__}: {error}")
        self._advance_grid()

    def grid_end(self) -> None:
        self.progress.stop()

    def work_start(self, what: str, total: int | None) -> None:
        self.work_task = self.progress.add_task(what, total=total, info="")

    def work_advance(self, n: int = 1) -> None:
        if self.work_task is not None:
            self.progress.advance(self.work_task, n)

    def work_end(self) -> None:
        if self.work_task is not None:
            self.progress.remove_task(self.work_task)
            self.work_task = None

    def download(self, done: int, total: int | None) -> None:
        if self.dl_task is None:
            self.dl_task = self.progress.add_task("download", total=total, info="")
        self.progress.update(self.dl_task, completed=done, total=total)


def _done_text(result: Any, metric: str) -> str:
    test = result.metrics.get("test", {})
    return (
        f"test {metric} {test.get(metric, float('nan')):.4f} "
        f"({result.cost.epochs} epochs, best {result.cost.best_epoch}, {result.cost.wall_s:.0f} s)"
    )


class PlainReporter(Reporter):
    """Plain lines, each flushed as written, for a stream that is not a terminal (a log file, nohup, CI).

    One line per epoch (time, loss, valid metric, best so far, when early stopping would end the run) and, in
    long epochs, evaluations, encodes and downloads, a heartbeat line once `heartbeat_s` have passed since the
    last line: a log shows the run is alive and how far it got, without the thousands of redraws a bar would
    write there. Heartbeats are checked when progress is reported, so a single step longer than `heartbeat_s`
    is silent until it ends. No ANSI codes, no carriage returns.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        metric: str = "ndcg@10",
        clock: Callable[[], float] = time.monotonic,
        heartbeat_s: float = HEARTBEAT_S,
    ):
        self._stream = stream
        self.metric = metric
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.watch = _EpochWatch(clock)
        self._last_line = clock()
        self._epoch = (0, 0)  # (epoch, max_epochs)
        self._batches = (0, 0)  # (done, total)
        self._t_epoch = 0.0
        self._eval: tuple[str, int, int, float] | None = None  # (what, done, total, t0)
        self._work: tuple[str, int, int | None, float] | None = None
        self._t_download: float | None = None

    @property
    def stream(self) -> IO[str]:
        """sys.stderr looked up at each write, so a redirection made after construction is honoured."""
        return self._stream if self._stream is not None else sys.stderr

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_line = self.clock()

    def _due(self) -> bool:
        return self.clock() - self._last_line >= self.heartbeat_s

    def run_start(self, index: int, total: int, name: str) -> None:
        self._line(f"run {index}/{total} {name}")

    def run_skipped(self, name: str, run_id: str) -> None:
        self._line(f"skip {name}: already FINISHED in MLflow (run {run_id[:8]})")

    def stage(self, text: str) -> None:
        self._line(f"  {text}")

    def epoch_start(self, epoch: int, max_epochs: int, batches: int, patience: int | None = None) -> None:
        self.watch.start(epoch, max_epochs, patience)
        self._epoch = (epoch, max_epochs)
        self._batches = (0, batches)
        self._t_epoch = self.clock()

    def batch(self, n: int = 1) -> None:
        done, total = self._batches
        self._batches = (done + n, total)
        if self._due():
            elapsed = self.clock() - self._t_epoch
            left = f"  batches left ~{_eta(elapsed / (done + n) * (total - done - n))}" if total else ""
            epoch, max_epochs = self._epoch
            self._line(
                f"  epoch {epoch}/{max_epochs}  batch {done + n}/{total}  elapsed {_hms(elapsed)}{left}"
            )

    def epoch_end(
        self, epoch: int, loss: float, valid: dict[str, float], improved: bool, seconds: float
    ) -> None:
        value = valid.get(self.metric, float("nan"))
        self.watch.end(epoch, value, improved)
        eta = self.watch.eta_label()
        self._line(
            f"epoch {epoch}/{self.watch.max_epochs}  {seconds:.1f} s  loss {loss:.4f}  "
            f"valid {self.metric} {value:.4f}  best {self.watch.best_value:.4f} (ep {self.watch.best_epoch})"
            + (f"  {eta}" if eta else "")
        )

    def eval_start(self, what: str, users: int) -> None:
        self._eval = (what, 0, users, self.clock())

    def eval_batch(self, n: int) -> None:
        if self._eval is None:
            return
        what, done, total, t0 = self._eval
        self._eval = (what, done + n, total, t0)
        if self._due():
            self._line(f"  {what}  users {done + n}/{total}  elapsed {_hms(self.clock() - t0)}")

    def eval_end(self) -> None:
        self._eval = None

    def work_start(self, what: str, total: int | None) -> None:
        self._work = (what, 0, total, self.clock())
        self._line(f"  {what}: started, {total if total is not None else '?'} to do")

    def work_advance(self, n: int = 1) -> None:
        if self._work is None:
            return
        what, done, total, t0 = self._work
        self._work = (what, done + n, total, t0)
        if self._due():
            self._line(
                f"  {what}  {done + n}/{total if total is not None else '?'}  elapsed {_hms(self.clock() - t0)}"
            )

    def work_end(self) -> None:
        if self._work is not None:
            what, done, _, t0 = self._work
            self._line(f"  {what}: done, {done} in {_hms(self.clock() - t0)}")
        self._work = None

    def download(self, done: int, total: int | None) -> None:
        if self._t_download is None:
            self._t_download = self.clock()
        finished = total is not None and done >= total
        if self._due() or finished:
            size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
            self._line(f"  download {size}  elapsed {_hms(self.clock() - self._t_download)}")
        if finished:
            self._t_download = None

    def run_end(self, result: Any) -> None:
        self._line(f"  done {_done_text(result, self.metric)}")

    def run_failed(self, name: str, error: BaseException) -> None:
        self._line(f"  FAILED {name}: {type(error).__name__}: {error}")


def summary_table(results: list[Any], ks_metric: str = "ndcg@10") -> Table:
    """The table printed after a grid: one row per run, test metrics, warm/cold, cost.

    NDCG@K is given under both ranking conventions: the recipe's (history excluded by default) and with the
    history kept (what papers report). `epochs` carries the stop reason when training did not stop early.
    Columns whose value is the same for every run (dataset, seed) move into the title to keep it narrow.
    """
    k = ks_metric.split("@")[1]
    keys = ("dataset", "split", "encoder", "backbone", "seed")
    varying = [
        c for c in keys if len({str(getattr(r, c)) for r in results}) > 1 or c in ("encoder", "backbone")
    ]
    constant = [f"{c} {getattr(results[0], c)}" for c in keys if c not in varying and results]
    title = "recbench results: test metrics, full ranking unless marked" + (
        f" ({', '.join(constant)})" if constant else ""
    )
    table = Table(title=title, show_lines=False)
    for col in varying:
        table.add_column(col, no_wrap=col in ("encoder", "split"), overflow="fold")  # never an ellipsis
    metric_cols = (
        f"HR@{k}",
        f"NDCG@{k}",
        f"MRR@{k}",
        f"NDCG@{k} warm",
        f"NDCG@{k} cold",
        f"NDCG@{k} hist. kept",
    )
    for col in (*metric_cols, "epochs", "s/epoch", "encode s", "wall s"):
        table.add_column(col, justify="right")

    def fmt(group: dict, name: str) -> str:
        return f"{group[name]:.4f}" if name in group else "-"

    for r in results:
        test = r.metrics.get("test", {})
        warm = r.metrics.get("test/warm", {})
        cold = r.metrics.get("test/cold", {})
        kept = r.metrics.get("test/history-kept", {})
        stop = {"max_epochs": " (cap)", "budget": " (budget)"}.get(r.cost.stop_reason or "", "")
        sampled = " (sampled)" if r.protocol.get("candidates") == "sampled" else ""
        labels = {c: str(getattr(r, c)) + (sampled if c == "encoder" else "") for c in varying}
        table.add_row(
            *(labels[c] for c in varying),
            fmt(test, f"hr@{k}"),
            fmt(test, f"ndcg@{k}"),
            fmt(test, f"mrr@{k}"),
            fmt(warm, f"ndcg@{k}"),
            fmt(cold, f"ndcg@{k}"),
            fmt(kept, f"ndcg@{k}"),
            f"{r.cost.epochs}{stop}",
            f"{r.cost.s_per_epoch:.2f}",
            f"{r.cost.encode_s:.1f}",
            f"{r.cost.wall_s:.0f}",
        )
    return table
