"""What a run shows a person while it works: a silent reporter for tests and a rich one for the CLI.

The runner calls these hooks; nothing in training or evaluation prints.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class Reporter:
    """No-op hooks (used by tests and --quiet)."""

    def grid_start(self, total: int) -> None: ...
    def run_start(self, index: int, total: int, name: str) -> None: ...
    def run_skipped(self, name: str, run_id: str) -> None: ...
    def stage(self, text: str) -> None: ...
    def epoch_start(self, epoch: int, max_epochs: int, batches: int) -> None: ...
    def batch(self, n: int = 1) -> None: ...
    def epoch_end(
        self, epoch: int, loss: float, valid: dict[str, float], improved: bool, seconds: float
    ) -> None: ...
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


class RichReporter(Reporter):
    """Progress bars on stderr: the grid, the epochs of the current run, its batches and evaluations."""

    def __init__(self, console: Console | None = None, metric: str = "ndcg@10"):
        self.console = console or Console(stderr=True)
        self.metric = metric
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self.grid_task = None
        self.epoch_task = None
        self.batch_task = None
        self.eval_task = None
        self.dl_task = None

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

    def epoch_start(self, epoch: int, max_epochs: int, batches: int) -> None:
        if self.epoch_task is None:
            self.epoch_task = self.progress.add_task("epochs", total=max_epochs, info="")
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
        mark = "*" if improved else " "
        info = f"loss {loss:.4f}  valid {self.metric} {valid.get(self.metric, float('nan')):.4f}{mark}"
        if self.epoch_task is not None:
            self.progress.update(self.epoch_task, completed=epoch, info=info)

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
        test = result.metrics.get("test", {})
        self.console.print(
            f"  [green]done[/] test {self.metric} {test.get(self.metric, float('nan')):.4f} "
            f"({result.cost.epochs} epochs, best {result.cost.best_epoch}, {result.cost.wall_s:.0f} s)"
        )
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
        if getattr(self, "work_task", None) is not None:
            self.progress.advance(self.work_task, n)

    def work_end(self) -> None:
        if getattr(self, "work_task", None) is not None:
            self.progress.remove_task(self.work_task)
            self.work_task = None

    def download(self, done: int, total: int | None) -> None:
        if self.dl_task is None:
            self.dl_task = self.progress.add_task("download", total=total, info="")
        self.progress.update(self.dl_task, completed=done, total=total)


def summary_table(results: list[Any], ks_metric: str = "ndcg@10") -> Table:
    """The table printed after a grid: one row per run, test metrics, warm/cold, cost.

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
        table.add_column(col, no_wrap=col in ("encoder", "split"))
    metric_cols = (f"HR@{k}", f"NDCG@{k}", f"MRR@{k}", f"NDCG@{k} warm", f"NDCG@{k} cold")
    for col in (*metric_cols, "epochs", "s/epoch", "encode s", "wall s"):
        table.add_column(col, justify="right")

    def fmt(group: dict, name: str) -> str:
        return f"{group[name]:.4f}" if name in group else "-"

    for r in results:
        test = r.metrics.get("test", {})
        warm = r.metrics.get("test/warm", {})
        cold = r.metrics.get("test/cold", {})
        sampled = " (sampled)" if r.protocol.get("candidates") == "sampled" else ""
        labels = {c: str(getattr(r, c)) + (sampled if c == "encoder" else "") for c in varying}
        table.add_row(
            *(labels[c] for c in varying),
            fmt(test, f"hr@{k}"),
            fmt(test, f"ndcg@{k}"),
            fmt(test, f"mrr@{k}"),
            fmt(warm, f"ndcg@{k}"),
            fmt(cold, f"ndcg@{k}"),
            str(r.cost.epochs),
            f"{r.cost.s_per_epoch:.2f}",
            f"{r.cost.encode_s:.1f}",
            f"{r.cost.wall_s:.0f}",
        )
    return table
