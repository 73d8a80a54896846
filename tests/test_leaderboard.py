"""The leaderboard, read back from a fixture MLflow store: golden markdown, statistics, --check, plots."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from fake_runs import RUN_COMMAND, fake_store, log_run, spec_for
from typer.testing import CliRunner

from recbench import leaderboard as lb
from recbench.cli import app
from recbench.evaluation import stats
from recbench.plots import stored_hash
from recbench.tracking import Store, Tracker

GOLDEN = Path(__file__).parent / "golden" / "leaderboard.md"
runner = CliRunner()


@pytest.fixture
def store(tmp_path, tmp_path_factory, monkeypatch):
    ids = fake_store(tmp_path_factory, tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    return ids


def _board(date: str = "2000-01-01") -> lb.Leaderboard:
    s = Store()
    experiments = s.experiments()
    return lb.build(
        s.finished_runs(experiments),
        list(experiments.values()),
        date=date,
        command="recbench leaderboard",
        plots_dir="leaderboard-plots",
    )


def _normalise(board: lb.Leaderboard, ids: dict[str, str]) -> str:
    """Run ids and protocol fingerprints are random or depend on every recipe field: tokens in the golden."""
    text = board.markdown
    for token, run_id in sorted(ids.items()):
        text = text.replace(run_id[:12], f"<run:{token}>").replace(run_id[:8], f"<run:{token}>")
    for i, table in enumerate(board.tables):
        text = text.replace(table.fingerprint, f"<protocol-{i}>").replace(
            table.fingerprint[:8], f"<protocol-{i}>"
        )
    return text


def test_leaderboard_matches_the_golden_file(store):
    text = _normalise(_board(), store)
    if os.environ.get("RECBENCH_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "the leaderboard changed; if intended, regenerate with RECBENCH_UPDATE_GOLDEN=1 pytest tests/test_leaderboard.py"
    )


def test_tables_never_mix_protocols_and_sampled_is_labelled(store):
    board = _board()
    assert len(board.tables) == 2
    full, sampled = board.tables
    assert not full.sampled and sampled.sampled
    for table in board.tables:
        fps = {run.result.protocol_fingerprint for row in table.rows for run in row.runs}
        assert fps == {table.fingerprint}
    section = board.markdown.split("## ")[2]
    assert section.startswith("movielens-100k · leave_one_out · SAMPLED candidates (target + 20 negatives)")
    assert "NDCG@10 (sampled)" in section and "not comparable with full-ranking tables" in section
    assert "(sampled)" not in board.markdown.split("## ")[1]
    # rows: encoder x backbone, seeds aggregated; 3 encoders x 2 backbones in the full-ranking table
    assert sorted((r.label, r.backbone, tuple(r.seeds)) for r in full.rows) == [
        ("clip-image", "gru4rec", (0,)),
        ("clip-image", "sasrec", (0,)),
        ("id", "gru4rec", (0,)),
        ("id", "sasrec", (0, 1)),
        ("text-minilm-frozen", "gru4rec", (0,)),
        ("text-minilm-frozen", "sasrec", (0, 1)),
    ]


def test_untrustworthy_runs_are_left_out_with_the_reason(store):
    board = _board()
    reasons = {run.run_id: reason for run, reason in board.left_out}
    assert set(reasons) == {store["tampered"], store["superseded"]}  # FAILED runs are not read at all
    assert "per-user ndcg@10 averages" in reasons[store["tampered"]]
    assert f"superseded by the later run {store['clip-gru4rec-0'][:8]}" in reasons[store["superseded"]]
    used = {run.run_id for t in board.tables for row in t.rows for run in row.runs}
    assert store["clip-gru4rec-0"] in used and store["failed"] not in used


def test_delta_and_p_values_are_the_paired_statistics_of_seed_averaged_users(store):
    board = _board()
    full = board.tables[0]
    row = next(r for r in full.rows if r.label == "text-minilm-frozen" and r.backbone == "sasrec")
    base = row.baseline
    assert base.label == "id" and base.backbone == "sasrec" and base.is_baseline

    def averaged(r):
        frames = [run.per_user.sort("user") for run in r.runs]
        return np.mean([f["ndcg@10"].to_numpy() for f in frames], axis=0)

    a, b = averaged(row), averaged(base)
    st = lb.table_stats(full)[id(row)]
    assert st.delta.estimate == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    assert st.delta == stats.paired_bootstrap_ci(a, b)
    assert st.wilcoxon.p_value == stats.wilcoxon_signed_rank(a, b).p_value
    assert st.t_test.p_value == pytest.approx(stats.paired_t_test(a, b).p_value, rel=1e-12)
    seed_means = [run.result.metrics["test"]["ndcg@10"] for run in row.runs]
    assert st.seed_std["ndcg@10"] == pytest.approx(np.std(seed_means, ddof=1))
    line = next(ln for ln in board.markdown.splitlines() if ln.startswith("| text-minilm-frozen | sasrec"))
    assert f"{np.mean(seed_means):.4f} ± {np.std(seed_means, ddof=1):.4f}" in line
    assert f"{st.delta.estimate:+.4f} [{st.delta.low:+.4f}, {st.delta.high:+.4f}] vs id" in line


def test_the_recipe_baseline_tag_chooses_the_baseline(store):
    tracker = Tracker("declared")
    text = {"kind": "text", "label": "text-a"}
    for encoder, quality, seed in (({"kind": "id"}, 0.5, 1), (text, 0.6, 2)):
        log_run(tracker, spec_for(encoder), quality, rank_seed=seed, baseline="text-a")
    s = Store()
    experiments = s.experiments(["declared"])
    board = lb.build(s.finished_runs(experiments), ["declared"], "2000-01-01", "x", "p")
    (table,) = board.tables
    id_row = next(r for r in table.rows if r.label == "id")
    assert id_row.baseline.label == "text-a" and not id_row.is_baseline
    assert "| text-a | sasrec | 0 |" in board.markdown and "baseline |" in board.markdown


def test_cli_writes_and_checks_the_leaderboard(store, tmp_path):
    out = tmp_path / "docs" / "LB.md"
    out.parent.mkdir()
    result = runner.invoke(app, ["leaderboard", "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# recbench leaderboard")
    assert re.search(r"^- Produced: \d{4}-\d\d-\d\d by `recbench leaderboard --output ", text, re.M)
    assert f"Runs made by: `{RUN_COMMAND}`" in text and "Test CPU, 2 logical CPUs" in text
    plots = sorted((tmp_path / "docs" / "lb-plots").glob("*.png"))
    assert len(plots) == 4  # two tables x (ID vs content, warm vs cold)
    for plot in plots:
        assert f"(lb-plots/{plot.name})" in text
        assert f"<!-- plot {plot.name} data {stored_hash(plot)} -->" in text

    check = ["leaderboard", "--output", str(out), "--check"]
    out.write_text(re.sub(r"Produced: \S+", "Produced: 1999-12-31", text))  # only the date is injected
    assert runner.invoke(app, check).exit_code == 0

    out.write_text(
        text.replace("| text-minilm-frozen | sasrec | 0,1 | 0.", "| text-minilm-frozen | sasrec | 0,1 | 9.")
    )
    plots[0].unlink()
    result = runner.invoke(app, check)
    assert result.exit_code == 1
    assert "differs from what the store produces now" in result.output and "is missing" in result.output

    # a new FINISHED run changes what the store produces
    out.write_text(text)
    lb.plots_dir_for(out).joinpath(plots[0].name).write_bytes(b"")  # present, but not the current plot
    log_run(Tracker("fixture"), spec_for({"kind": "id", "label": "id-new"}), 0.9, rank_seed=4242)
    result = runner.invoke(app, check)
    assert result.exit_code == 1 and "id-new" in result.output and "is stale" in result.output


def test_check_without_a_file_and_unknown_experiment(store, tmp_path):
    result = runner.invoke(app, ["leaderboard", "--output", str(tmp_path / "none.md"), "--check"])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["leaderboard", "--experiment", "nope", "--output", str(tmp_path / "x.md")])
    assert result.exit_code == 2 and "no experiment named 'nope'" in result.output


def test_default_experiments_are_those_holding_recbench_runs(store):
    Store().client.create_experiment("unrelated")
    assert set(Store().experiments().values()) == {"fixture"}


def test_an_experiment_without_runs_gives_an_empty_leaderboard(store, tmp_path):
    Store().client.create_experiment("empty")  # (MlflowClient() may follow another test's global URI)
    out = tmp_path / "LEADERBOARD.md"
    result = runner.invoke(app, ["leaderboard", "--experiment", "empty", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "No FINISHED recbench runs" in out.read_text()
    assert "`recbench leaderboard --experiment empty --output" in out.read_text()
