"""The summary table after a grid, and progress with and without a terminal."""

import io
import re

from rich.console import Console

from recbench.reporting import (
    PlainReporter,
    Reporter,
    RichReporter,
    _RemainingColumn,
    make_reporter,
    summary_table,
)
from recbench.results import Cost, RunResult


def _result(encoder: str, ndcg: float, cold: float | None = None) -> RunResult:
    metrics = {"test": {"hr@10": 0.2, "ndcg@10": ndcg, "mrr@10": 0.05}, "test/warm": {"ndcg@10": ndcg}}
    if cold is not None:
        metrics["test/cold"] = {"ndcg@10": cold}
    return RunResult(
        name=f"movielens-100k/leave_one_out/{encoder}/sasrec/seed0",
        recipe="r",
        experiment="e",
        dataset="movielens-100k",
        split="leave_one_out",
        encoder=encoder,
        encoder_kind="id",
        backbone="sasrec",
        seed=0,
        recipe_hash="h",
        protocol_fingerprint="p",
        dataset_fingerprint="d",
        protocol={"candidates": "full"},
        metrics=metrics,
        cost=Cost(epochs=12, s_per_epoch=2.5, encode_s=3.25, wall_s=40),
    )


def test_constant_columns_move_to_the_title_and_every_row_is_shown():
    console = Console(width=200, record=True)
    console.print(summary_table([_result("id", 0.1141), _result("text-minilm-frozen", 0.0839, cold=0.0374)]))
    text = console.export_text()
    assert "dataset movielens-100k" in text and "seed 0" in text
    assert "text-minilm-frozen" in text and "0.1141" in text and "0.0374" in text
    header = text.splitlines()[2]
    assert "dataset" not in header and "split" not in header and "NDCG@10 cold" in text


def test_summary_shows_the_history_kept_ndcg_and_a_capped_run():
    capped = _result("id", 0.1141)
    capped.metrics["test/history-kept"] = {"ndcg@10": 0.0587}
    capped.cost.stop_reason = "max_epochs"
    early = _result("text-minilm-frozen", 0.0839)
    early.cost.stop_reason = "early_stopping"
    console = Console(width=250, record=True)
    console.print(summary_table([capped, early]))
    lines = console.export_text().splitlines()
    assert any("hist. kept" in line for line in lines[:5])
    (id_row,) = [line for line in lines if "│ id " in line]
    assert "0.0587" in id_row and "12 (cap)" in id_row
    (frozen_row,) = [line for line in lines if "frozen" in line]
    assert "(cap)" not in frozen_row and "-" in frozen_row  # no history-kept value recorded: a dash


# --- progress without a terminal (issue 15) -------------------------------------------------------------------


class FakeClock:
    """Seconds that pass only when a test says so: heartbeats are tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LogFile(io.StringIO):
    """A non-TTY stream that records when each line was written and how much of it was flushed."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.stamped: list[tuple[float, str]] = []
        self.flushed = ""

    def write(self, text: str) -> int:
        self.stamped.extend((self.clock.now, line) for line in text.splitlines())
        return super().write(text)

    def flush(self) -> None:
        self.flushed = self.getvalue()

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


EPOCH_LINE = re.compile(
    r"^epoch (\d+)/(\d+)  (\d+\.\d) s  loss (\d+\.\d{4})  valid ndcg@10 (\d\.\d{4})  best (\d\.\d{4}) \(ep (\d+)\)"
)
HEARTBEAT = re.compile(r"elapsed \d+:\d\d")


def _simulate(
    reporter,
    clock: FakeClock,
    values: list[float],
    *,
    batches: int = 20,
    batch_s: float = 0.1,
    users: int = 100,
    user_s: float = 0.01,
    max_epochs: int = 200,
    patience: int | None = 3,
    after_epoch=None,
) -> None:
    """The runner's call sequence for one run: epochs of batches, each followed by its validation."""
    reporter.grid_start(1)
    reporter.run_start(1, 1, "movielens-100k/leave_one_out/id/sasrec/seed0")
    reporter.stage("data: movielens-100k")
    best = -1.0
    reporter.epoch_start(1, max_epochs, batches, patience=patience)
    for epoch, value in enumerate(values, start=1):
        for _ in range(batches):
            clock.advance(batch_s)
            reporter.batch()
        reporter.eval_start("eval valid", users)
        for _ in range(0, users, 10):
            clock.advance(user_s * 10)
            reporter.eval_batch(10)
        reporter.eval_end()
        improved = value > best
        best = max(best, value)
        reporter.epoch_end(epoch, 7.5 - 0.1 * epoch, {"ndcg@10": value}, improved, batches * batch_s)
        if after_epoch:
            after_epoch(epoch)
        if epoch < max_epochs:
            reporter.epoch_start(epoch + 1, max_epochs, batches, patience=patience)


def _heartbeat_times(log: LogFile, marker: str) -> list[float]:
    return [t for t, line in log.stamped if marker in line and HEARTBEAT.search(line)]


def test_plain_lines_one_per_epoch_with_loss_metric_and_best_without_ansi_or_redraws():
    clock = FakeClock()
    log = LogFile(clock)
    reporter = PlainReporter(log, metric="ndcg@10", clock=clock)
    flushed_after_epoch = []
    values = [0.05, 0.07, 0.06, 0.08, 0.075]
    _simulate(
        reporter,
        clock,
        values,
        after_epoch=lambda e: flushed_after_epoch.append(log.flushed == log.getvalue()),
    )

    text = log.getvalue()
    assert "\x1b" not in text and "\r" not in text
    epochs = [m for m in map(EPOCH_LINE.match, log.lines()) if m]
    assert [int(m[1]) for m in epochs] == [1, 2, 3, 4, 5]
    assert all(m[2] == "200" and m[3] == "2.0" for m in epochs)
    assert [float(m[5]) for m in epochs] == values
    # best so far and its epoch: epoch 3 (0.06) did not beat epoch 2 (0.07); epoch 5 did not beat epoch 4
    assert [(float(m[6]), int(m[7])) for m in epochs] == [
        (0.05, 1),
        (0.07, 2),
        (0.07, 2),
        (0.08, 4),
        (0.08, 4),
    ]
    assert float(epochs[0][4]) == 7.4
    # short epochs: no heartbeat at all, and every line is out of the buffer by the time the next epoch starts
    assert not [line for line in log.lines() if HEARTBEAT.search(line)]
    assert flushed_after_epoch == [True] * 5
    assert log.lines()[0] == "run 1/1 movielens-100k/leave_one_out/id/sasrec/seed0"


def test_plain_heartbeats_appear_in_a_long_epoch_and_evaluation_at_most_every_60_s():
    clock = FakeClock()
    log = LogFile(clock)
    reporter = PlainReporter(log, clock=clock)
    # 600 batches of 1.3 s (13 minutes) then 2000 users at 0.05 s each (100 s)
    _simulate(reporter, clock, [0.05, 0.06], batches=600, batch_s=1.3, users=2000, user_s=0.05)

    batch_beats = _heartbeat_times(log, "batch ")
    eval_beats = _heartbeat_times(log, "eval valid")
    assert len(batch_beats) >= 2 * (600 * 1.3 // 61)
    assert len(eval_beats) >= 2
    # a heartbeat comes only once a minute has passed since the previous line, whatever that line was
    gaps = [t - prev for (prev, _), (t, line) in zip(log.stamped, log.stamped[1:]) if HEARTBEAT.search(line)]
    assert len(gaps) == len(batch_beats) + len(eval_beats) and min(gaps) >= 60
    every = [t for t, _ in log.stamped]
    # and the log is never silent for much more than a minute (one step at most beyond it)
    assert max(b - a for a, b in zip(every, every[1:])) <= 60 + 1.3
    beat = next(line for t, line in log.stamped if "batch " in line)
    assert re.fullmatch(r"  epoch 1/200  batch \d+/600  elapsed 1:0\d  batches left ~\d+:\d\d", beat)
    assert re.fullmatch(
        r"  eval valid  users \d+/2000  elapsed \d+:\d\d",
        next(line for _, line in log.stamped if "users" in line),
    )


def test_plain_heartbeats_for_a_long_encode_through_the_work_hooks():
    """The content encoders report through work_start / work_advance / work_end (recbench/encoders/modality.py)."""
    clock = FakeClock()
    log = LogFile(clock)
    reporter = PlainReporter(log, clock=clock)
    reporter.work_start("encode text (frozen)", 5000)
    for _ in range(0, 5000, 32):
        clock.advance(2.0)
        reporter.work_advance(32)
    reporter.work_end()

    lines = log.lines()
    assert lines[0] == "  encode text (frozen): started, 5000 to do"
    beats = _heartbeat_times(log, "encode text (frozen)  ")
    assert len(beats) >= 5 and all(b - a >= 60 for a, b in zip(beats, beats[1:]))
    assert re.fullmatch(r"  encode text \(frozen\)  \d+/5000  elapsed 1:0\d", lines[1])
    assert lines[-1] == "  encode text (frozen): done, 5024 in 5:14"


def test_the_epoch_estimate_is_bounded_by_patience_not_extrapolated_to_max_epochs():
    clock = FakeClock()
    log = LogFile(clock)
    reporter = PlainReporter(log, clock=clock)
    # 2 s of training (20 batches of 0.1 s) + 1 s of validation = 3 s wall per epoch; best at epoch 3, patience 3
    _simulate(reporter, clock, [0.05, 0.06, 0.07, 0.065, 0.066, 0.064], patience=3)
    lines = [line for line in log.lines() if EPOCH_LINE.match(line)]
    assert lines[3].endswith("if no gain: stops ep 6 in ~6.0 s")  # after epoch 4: epochs 5 and 6, 3 s each
    assert lines[5].endswith("early stop: no gain in 3 epochs")
    # extrapolating the 196 epochs left after epoch 4 to max_epochs would say ~9:48
    assert "9:48" not in log.getvalue() and "9:4" not in log.getvalue()


def test_when_max_epochs_comes_before_patience_the_estimate_says_so():
    clock = FakeClock()
    log = LogFile(clock)
    _simulate(
        PlainReporter(log, clock=clock), clock, [0.05, 0.06, 0.07, 0.065, 0.07], max_epochs=5, patience=3
    )
    lines = [line for line in log.lines() if EPOCH_LINE.match(line)]
    assert lines[2].endswith("max_epochs: ends ep 5 in ~6.0 s")  # best at 3 + patience 3 > 5 epochs
    assert lines[4].endswith("last epoch (max_epochs)")


def test_without_patience_no_total_estimate_is_shown():
    clock = FakeClock()
    log = LogFile(clock)
    _simulate(PlainReporter(log, clock=clock), clock, [0.05, 0.06], patience=None)
    assert all(
        line.endswith("(ep 2)") or line.endswith("(ep 1)") for line in log.lines() if EPOCH_LINE.match(line)
    )


def test_rich_epoch_bar_shows_the_labelled_patience_estimate_instead_of_max_epochs():
    clock = FakeClock()
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    reporter = RichReporter(console, clock=clock)
    seen = {}

    def remaining(epoch: int) -> None:
        task = reporter.progress.tasks[reporter.epoch_task]
        seen[epoch] = _RemainingColumn().render(task).plain

    _simulate(reporter, clock, [0.05, 0.06, 0.07, 0.065], patience=5, after_epoch=remaining)
    reporter.grid_end()
    # after epoch 4: best at 3, patience 5 -> stops at epoch 8, 4 epochs of 3 s left; 196 epochs would be 9:48
    assert seen[4] == "if no gain: stops ep 8 in ~12.0 s"
    assert seen[1] == "if no gain: stops ep 6 in ~15.0 s"


def test_make_reporter_picks_plain_lines_off_a_terminal_and_bars_on_one():
    assert isinstance(make_reporter(console=Console(file=io.StringIO())), PlainReporter)
    assert isinstance(make_reporter(console=Console(file=io.StringIO(), force_terminal=True)), RichReporter)
    assert type(make_reporter(quiet=True)) is Reporter
