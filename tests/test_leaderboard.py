"""The leaderboard, read back from a fixture MLflow store: golden markdown, statistics, fair Δ only,
refusals, default experiments, --check, plots."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from fake_runs import RUN_COMMAND, fake_store, log_failed, log_run, spec_for
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
        ("none", "pop", (0,)),
        ("text-minilm-frozen", "gru4rec", (0,)),
        ("text-minilm-frozen", "sasrec", (0, 1)),
    ]
    assert full.rows[-1].backbone == "pop"  # the floor row comes last


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
    assert line.startswith("| text-minilm-frozen | sasrec | 2 | early stop |")  # seeds: a count
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
    assert "| text-a | sasrec | 1 | early stop |" in board.markdown and "baseline |" in board.markdown


def test_cli_writes_and_checks_the_leaderboard(store, tmp_path):
    out = tmp_path / "docs" / "LB.md"
    out.parent.mkdir()
    result = runner.invoke(app, ["leaderboard", "--experiment", "fixture", "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# recbench leaderboard")
    assert re.search(
        r"^- Produced: \d{4}-\d\d-\d\d by `recbench leaderboard --experiment fixture --output ", text, re.M
    )
    assert f"Runs made by: `{RUN_COMMAND}`" in text and "Test CPU, 2 logical CPUs" in text
    plots = sorted((tmp_path / "docs" / "lb-plots").glob("*.png"))
    assert len(plots) == 4  # two tables x (ID vs content, warm vs cold)
    for plot in plots:
        assert f"(lb-plots/{plot.name})" in text
        assert f"<!-- plot {plot.name} data {stored_hash(plot)} -->" in text

    check = ["leaderboard", "--experiment", "fixture", "--output", str(out), "--check"]
    out.write_text(re.sub(r"Produced: \S+", "Produced: 1999-12-31", text))  # only the date is injected
    assert runner.invoke(app, check).exit_code == 0

    out.write_text(
        text.replace(
            "| text-minilm-frozen | sasrec | 2 | early stop | 0.",
            "| text-minilm-frozen | sasrec | 2 | early stop | 9.",
        )
    )
    plots[0].unlink()
    result = runner.invoke(app, check)
    assert result.exit_code == 1
    assert "differs from what the store produces now" in result.output and "is missing" in result.output

    # a new FINISHED run changes what the store produces
    out.write_text(text)
    lb.plots_dir_for(out).joinpath(plots[0].name).write_bytes(b"")  # present, but not the current plot
    log_run(Tracker("fixture"), spec_for({"kind": "id", "label": "id-new"}), 0.9, rank_seed=4242)
    assert "id-new" not in text
    result = runner.invoke(app, check)
    assert result.exit_code == 1 and "id-new" in result.output and "is stale" in result.output


def test_check_without_a_file_and_unknown_experiment(store, tmp_path):
    result = runner.invoke(
        app, ["leaderboard", "--experiment", "fixture", "--output", str(tmp_path / "none.md"), "--check"]
    )
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["leaderboard", "--experiment", "nope", "--output", str(tmp_path / "x.md")])
    assert result.exit_code == 2 and "no experiment named 'nope'" in result.output


def test_default_experiments_are_those_holding_recbench_runs(store):
    Store().client.create_experiment("unrelated")
    assert set(Store().experiments().values()) == {"fixture"}


def test_an_experiment_without_finished_runs_is_refused_and_nothing_is_written(store, tmp_path):
    Store().client.create_experiment("empty")  # (MlflowClient() may follow another test's global URI)
    failed_only = Tracker("failed-only")
    log_failed(failed_only, spec_for({"kind": "id"}))
    out = tmp_path / "LEADERBOARD.md"
    out.write_text("the previous board\n")
    for name in ("empty", "failed-only"):
        for extra in ([], ["--check"]):
            result = runner.invoke(app, ["leaderboard", "--experiment", name, "--output", str(out), *extra])
            assert result.exit_code == 2, result.output
            assert "no FINISHED recbench run" in result.output and f"'{name}'" in result.output
            assert "Traceback" not in result.output
    assert out.read_text() == "the previous board\n"
    assert not lb.plots_dir_for(out).exists()


def test_no_store_is_refused_without_creating_one(tmp_path, monkeypatch):
    """In a directory without mlflow.db (no MLFLOW_TRACKING_URI): exit 2, say where it looked, create nothing."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "LEADERBOARD.md"
    out.write_text("kept\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    for extra in ([], ["--check"], ["--experiment", "fixture"]):
        result = runner.invoke(app, ["leaderboard", *extra])
        assert result.exit_code == 2, result.output
        assert "no MLflow store at" in result.output and str(tmp_path / "mlflow.db") in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no mlflow.db, no mlruns, no plots
    assert out.read_text() == "kept\n"
    # the same through an explicit sqlite URI that names a missing file
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}")
    assert runner.invoke(app, ["leaderboard"]).exit_code == 2
    assert not (tmp_path / "elsewhere").exists()


def test_local_store_paths():
    assert lb.local_store_path("sqlite:////abs/m.db") == Path("/abs/m.db")
    assert lb.local_store_path("sqlite:///rel/m.db") == Path("rel/m.db")
    assert lb.local_store_path("file:///abs/mlruns") == Path("/abs/mlruns")
    assert lb.local_store_path("./mlruns") == Path("mlruns")
    assert lb.local_store_path("http://mlflow.example:5000") is None  # a server: opened as is


def _recipe(folder: Path, name: str, experiment: str | None, max_users: int | None = None) -> None:
    folder.mkdir(exist_ok=True)
    text = f"name: {name}\n" + (f"experiment: {experiment}\n" if experiment else "")
    text += "dataset:\n  name: movielens-100k\n" + (f"  max_users: {max_users}\n" if max_users else "")
    (folder / f"{name}.yaml").write_text(text + "encoder: {kind: id}\nbackbone: {kind: sasrec}\n")


def test_default_experiments_are_those_the_recipes_declare(store, tmp_path, monkeypatch):
    recipes = tmp_path / "recipes"
    _recipe(recipes, "main", "fixture")
    _recipe(recipes, "plain", None)  # the Recipe default experiment, `recbench`
    _recipe(recipes, "smoke", "smoke-exp", max_users=60)  # a smoke recipe declares no leaderboard experiment
    assert lb.recipe_experiments(recipes) == {"fixture": ["main.yaml"], "recbench": ["plain.yaml"]}
    log_run(Tracker("smoke-exp"), spec_for({"kind": "id", "label": "id-smoke"}), 0.9, rank_seed=1)
    log_run(Tracker("someone-else"), spec_for({"kind": "id", "label": "id-else"}), 0.9, rank_seed=2)
    chosen, runs = lb.select_runs(None, recipes)
    assert set(chosen.values()) == {"fixture"}
    assert {r.experiment for r in runs} == {"fixture"}
    # the CLI reads the shipped recipes' experiments; pointed at this folder, smoke runs stay out
    monkeypatch.setattr(lb, "recipes_folder", lambda: recipes)
    out = tmp_path / "LEADERBOARD.md"
    result = runner.invoke(app, ["leaderboard", "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "from experiment `fixture`" in text and "id-smoke" not in text and "id-else" not in text
    # --experiment selects others
    other = tmp_path / "OTHER.md"
    result = runner.invoke(app, ["leaderboard", "--experiment", "smoke-exp", "--output", str(other)])
    assert result.exit_code == 0 and "id-smoke" in other.read_text()
    # recipes declaring only experiments without runs: refused, naming what the store holds
    _recipe(recipes, "main", "not-run-yet")
    result = runner.invoke(app, ["leaderboard", "--output", str(out)])
    assert result.exit_code == 2 and "'not-run-yet'" in result.output and "'fixture'" in result.output


def test_the_shipped_recipes_declare_the_benchmark_experiments_but_not_the_smoke_one():
    declared = lb.recipe_experiments()
    assert "morec-vs-idrec" in declared and "recbench-smoke" not in declared


def test_check_ignores_how_the_output_path_was_spelt(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    written = runner.invoke(app, ["leaderboard", "--experiment", "fixture", "--output", "docs/LB.md"])
    assert written.exit_code == 0, written.output
    for spelling in ("./docs/LB.md", str(tmp_path / "docs" / "LB.md"), "docs/../docs/LB.md"):
        result = runner.invoke(
            app, ["leaderboard", "--experiment", "fixture", "--output", spelling, "--check"]
        )
        assert result.exit_code == 0, (spelling, result.output)
    # the command normalisation hides nothing else: another experiment list is a difference
    text = (tmp_path / "docs" / "LB.md").read_text()
    (tmp_path / "docs" / "LB.md").write_text(text.replace("from experiment `fixture`", "from experiment `x`"))
    result = runner.invoke(
        app, ["leaderboard", "--experiment", "fixture", "--output", "docs/LB.md", "--check"]
    )
    assert result.exit_code == 1


def _row_line(board: lb.Leaderboard, label: str, backbone: str, section: int = 1) -> list[str]:
    table = board.markdown.split("## ")[section]
    line = next(ln for ln in table.splitlines() if ln.startswith(f"| {label} | {backbone} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _cell(board: lb.Leaderboard, label: str, backbone: str, column: str, section: int = 1) -> str:
    table = board.markdown.split("## ")[section]
    header = next(ln for ln in table.splitlines() if ln.startswith("| encoder |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    return _row_line(board, label, backbone, section)[names.index(column)]


def test_delta_only_between_early_stopped_rows_on_the_same_seeds(store):
    board = _board()
    full = board.tables[0]
    stats_by_row = lb.table_stats(full)
    rows = {(r.label, r.backbone): r for r in full.rows}
    paired = {key for key, r in rows.items() if stats_by_row[id(r)].delta is not None}
    assert paired == {("text-minilm-frozen", "sasrec")}  # the only early-stopped, same-seeds pair
    delta = "Δ NDCG@10 vs baseline"
    assert _cell(board, "clip-image", "sasrec", "seeds") == "1 †"
    assert _cell(board, "clip-image", "sasrec", delta) == "– (different seeds: 0 vs the baseline's 0, 1)"
    assert _cell(board, "clip-image", "gru4rec", "stopped") == "epoch cap †"
    assert _cell(board, "clip-image", "gru4rec", delta) == "– (trained to a fixed epoch cap)"
    assert _cell(board, "text-minilm-frozen", "gru4rec", "stopped") == "budget †"
    assert _cell(board, "text-minilm-frozen", "gru4rec", delta) == "– (budget-stopped)"
    assert _cell(board, "text-minilm-frozen", "gru4rec", "p Wilcoxon") == "–"
    assert _cell(board, "none", "pop", "stopped") == "not trained"
    assert _cell(board, "none", "pop", delta) == "– (not trained: the popularity floor)"
    assert not any(r.baseline is rows[("none", "pop")] for r in full.rows)  # the floor is nobody's baseline
    # a run recorded before stop reasons existed is unknown, never early-stopped
    assert _cell(board, "text-minilm-frozen", "sasrec", "stopped", section=2) == "unknown †"
    assert _cell(board, "text-minilm-frozen", "sasrec", "Δ NDCG@10 vs baseline (sampled)", section=2) == (
        "– (stop reason not recorded)"
    )
    assert "`epoch cap †` trained to a fixed epoch cap" in board.markdown


def test_no_delta_against_a_baseline_trained_to_an_epoch_cap(store):
    tracker = Tracker("capped")
    log_run(tracker, spec_for({"kind": "id"}), 0.5, rank_seed=1, stop="max_epochs")
    log_run(tracker, spec_for({"kind": "text", "label": "text-a"}), 0.6, rank_seed=2)
    s = Store()
    board = lb.build(s.finished_runs(s.experiments(["capped"])), ["capped"], "2000-01-01", "x", "p")
    (table,) = board.tables
    text_row = next(r for r in table.rows if r.label == "text-a")
    assert text_row.baseline.label == "id" and not text_row.paired
    assert lb.table_stats(table)[id(text_row)].delta is None
    assert _cell(board, "text-a", "sasrec", "Δ NDCG@10 vs baseline") == (
        "– (baseline trained to a fixed epoch cap)"
    )


def test_both_ndcg_columns_and_which_one_papers_use(store):
    board = _board()
    full = board.tables[0]
    row = next(r for r in full.rows if r.label == "text-minilm-frozen" and r.backbone == "sasrec")
    kept = np.mean([run.per_user.sort("user")["history-kept:ndcg@10"].to_numpy() for run in row.runs], axis=0)
    excluded = _cell(board, "text-minilm-frozen", "sasrec", "NDCG@10 history excluded")
    shown = _cell(board, "text-minilm-frozen", "sasrec", "NDCG@10 history kept")
    assert shown.startswith(f"{kept.mean():.4f} ± ")
    assert float(shown.split()[0]) <= float(excluded.split()[0])
    assert "RecBole, UniSRec, VQ-Rec and most papers" in board.markdown.split("## ")[1]
    # a run recorded before history-kept existed says so instead of showing a number
    assert _cell(board, "text-minilm-frozen", "sasrec", "NDCG@10 (sampled) history kept", 2) == (
        "– (not recorded)"
    )


def test_protocol_line_names_the_tie_rules(store):
    section = _board().markdown.split("## ")[1]
    assert "tied scores pessimistic (eval.ties)" in section
    assert "equal timestamps ordered by file order: 7 tied consecutive pairs" in section


def test_history_kept_values_must_reproduce_the_summary(store):
    tracker = Tracker("kept-tampered")
    run_id = log_run(tracker, spec_for({"kind": "id"}), 0.5, rank_seed=1)
    s = Store()
    runs = s.finished_runs(s.experiments(["kept-tampered"]))
    runs[0].per_user = runs[0].per_user.with_columns(runs[0].per_user["history-kept:ndcg@10"] * 0)
    board = lb.build(runs, ["kept-tampered"], "2000-01-01", "x", "p")
    assert not board.tables
    assert (
        "per-user history-kept:ndcg@10 averages" in dict((r.run_id, why) for r, why in board.left_out)[run_id]
    )


@pytest.mark.parametrize("groups", [1, 3, 14])
def test_plot_layout_keeps_labels_legend_and_title_apart(groups):
    """Long labels neither overlap each other nor sit under the legend; the legend is beside the bars."""
    import matplotlib.pyplot as plt

    from recbench.plots import Bar, BarPlot, render

    plot = BarPlot(
        "p.png",
        "movielens-100k (cold_item, SAMPLED candidates (target + 20 negatives)): NDCG@10 on warm and cold "
        "targets, 95% CI",
        "NDCG@10",
        tuple(
            (f"text-minilm-top2-bf16-{i} / gru4rec", (Bar("warm", 0.3, 0.2, 0.4), Bar("cold", 0.1, 0.0, 0.2)))
            for i in range(groups)
        ),
        lines=(("none / pop (floor)", 0.15),),
    )
    fig = render(plot)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        labels = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
        assert all(not a.overlaps(b) for a, b in zip(labels, labels[1:]))
        axes_box = ax.get_window_extent(renderer)
        legend_box = ax.get_legend().get_window_extent(renderer)
        assert legend_box.x0 >= axes_box.x1  # outside, right of the bars
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["none / pop (floor)", "warm", "cold"]
        title_box = ax.title.get_window_extent(renderer)
        assert title_box.width <= fig.get_window_extent(renderer).width  # wrapped, not clipped
    finally:
        plt.close(fig)


def test_experiments_open_as_training_runs_and_failed_runs_say_so_by_name(tmp_path):
    """MLflow UI: the experiment kind selects the classic runs view; a FAILED run's name differs from the
    FINISHED rerun's."""
    from recbench.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND

    Store().client.create_experiment("older")  # made before recbench set the kind
    for name in ("fresh", "older"):
        tracker = Tracker(name)
        assert tracker.client.get_experiment(tracker.experiment_id).tags[EXPERIMENT_KIND_TAG] == (
            MODEL_TRAINING_KIND
        )
    spec = spec_for({"kind": "id"})
    failed = tracker.client.get_run(log_failed(tracker, spec))
    finished = tracker.client.get_run(log_run(tracker, spec, 0.5, rank_seed=1))
    assert failed.info.status == "FAILED" and finished.info.status == "FINISHED"
    assert failed.info.run_name == f"{spec.run_name} [FAILED]" and finished.info.run_name == spec.run_name
    assert failed.data.tags["mlflow.note.content"].startswith("FAILED: KeyboardInterrupt")


def test_transfer_rows_show_their_pretraining_cost():
    from types import SimpleNamespace

    from recbench.leaderboard import _cost_cells
    from recbench.results import Cost

    def row(*pretrain):
        runs = [SimpleNamespace(result=SimpleNamespace(cost=Cost(epochs=3, pretrain_s=p))) for p in pretrain]
        return SimpleNamespace(runs=runs)

    cells = _cost_cells(row(100.0, 200.0), with_pretrain=True)
    assert cells[3] == "150" and len(cells) == len(_cost_cells(row(None), with_pretrain=False)) + 1
    assert _cost_cells(row(None), with_pretrain=True)[3] == "–"  # a scratch row in a table with transfer rows


OTHER_BLOCK = """# recbench leaderboard

<!-- Generated from the MLflow store by `recbench leaderboard`; do not edit by hand. -->

- Produced: 1999-01-02 by `recbench leaderboard --experiment elsewhere --output LB.md` from experiment `elsewhere`
- Runs made by: `recbench run recipes/elsewhere.yaml` (3 runs)

## other-data · leave_one_out · full ranking

| encoder | NDCG@10 |
|---|---:|
| id | 0.1234 |

![NDCG@10](lb-plots/other-data-loo-ndcg.png)
"""


def test_tables_of_experiments_from_another_store_are_kept_as_the_file_has_them(store, tmp_path):
    """A leaderboard written from another store (here: one block of experiment `elsewhere`, as an older
    recbench wrote it, without markers) keeps its tables, date and plots when this store's experiment is
    written into the same file; rewriting is idempotent, --check passes, and the block of this store's
    experiment is replaced, not repeated."""
    out = tmp_path / "LB.md"
    out.write_text(OTHER_BLOCK)
    plots = tmp_path / "lb-plots"
    plots.mkdir()
    (plots / "other-data-loo-ndcg.png").write_bytes(b"kept")
    write = ["leaderboard", "--experiment", "fixture", "--output", str(out)]
    result = runner.invoke(app, write)
    assert result.exit_code == 0, result.output
    assert "kept the tables of elsewhere" in result.output
    text = out.read_text()
    assert text.count("# recbench leaderboard") == 1
    assert "<!-- recbench:block experiments=elsewhere -->" in text
    assert "<!-- recbench:block experiments=fixture -->" in text
    kept_body = OTHER_BLOCK[OTHER_BLOCK.index("- Produced: 1999-01-02") :]
    assert kept_body in text  # verbatim
    assert text.index("experiments=elsewhere") < text.index("experiments=fixture")  # new blocks go last
    assert (plots / "other-data-loo-ndcg.png").read_bytes() == b"kept"
    assert len(list(plots.glob("*.png"))) == 5  # the kept plot and this store's four

    assert runner.invoke(app, [*write, "--check"]).exit_code == 0
    out.write_text(re.sub(r"(experiments=fixture -->\n- Produced: )\S+", r"\g<1>1999-12-31", text))
    assert runner.invoke(app, [*write, "--check"]).exit_code == 0  # the fixture block's own date is injected
    result = runner.invoke(app, write)
    assert result.exit_code == 0
    again = out.read_text()
    assert again.count("experiments=fixture") == 1 and kept_body in again
    assert again.replace(again.split("experiments=fixture -->\n- Produced: ")[1][:10], "D") == text.replace(
        text.split("experiments=fixture -->\n- Produced: ")[1][:10], "D"
    )
    # a tampered kept block is not this store's business: --check still passes
    out.write_text(again.replace("0.1234", "0.9999"))
    assert runner.invoke(app, [*write, "--check"]).exit_code == 0
    # and a changed table of this store's experiment fails it
    out.write_text(
        again.replace(
            "| text-minilm-frozen | sasrec | 2 | early stop | 0.",
            "| text-minilm-frozen | sasrec | 2 | early stop | 9.",
        )
    )
    assert runner.invoke(app, [*write, "--check"]).exit_code == 1


def test_a_kept_table_of_the_same_protocol_is_refused_not_overwritten(store, tmp_path):
    out = tmp_path / "LB.md"
    assert runner.invoke(app, ["leaderboard", "--experiment", "fixture", "--output", str(out)]).exit_code == 0
    first = out.read_text()
    # the same tables, as if written from another store for experiment `copy`
    out.write_text(first.replace("from experiment `fixture`", "from experiment `copy`"))
    before = out.read_text()
    result = runner.invoke(app, ["leaderboard", "--experiment", "fixture", "--output", str(out)])
    assert result.exit_code == 2
    assert "same dataset and protocol" in result.output and "copy" in result.output
    assert out.read_text() == before  # nothing written


def test_blocks_parse_and_merge():
    from recbench import board_blocks as bb

    head, (block,) = bb.parse(OTHER_BLOCK)
    assert head.startswith("# recbench leaderboard") and block.experiments == {"elsewhere"}
    assert block.date == "1999-01-02" and block.plots == {"other-data-loo-ndcg.png"}
    new = (
        OTHER_BLOCK.replace("elsewhere", "here").replace("1999-01-02", "2000-01-01").replace("0.1234", "0.5")
    )
    merged, kept, replaced = bb.merge(new, ["here"], OTHER_BLOCK)
    assert [b.experiments for b in kept] == [{"elsewhere"}] and replaced == []
    _, blocks = bb.parse(merged)
    assert [b.experiments for b in blocks] == [{"elsewhere"}, {"here"}]
    assert (
        bb.block_date(merged, ["here"]) == "2000-01-01"
        and bb.block_date(merged, ["elsewhere"]) == "1999-01-02"
    )
    # writing `elsewhere` again replaces its block in place, keeping `here`
    newer = OTHER_BLOCK.replace("0.1234", "0.2")
    merged2, kept2, replaced2 = bb.merge(newer, ["elsewhere"], merged)
    assert [b.experiments for b in replaced2] == [{"elsewhere"}] and [b.experiments for b in kept2] == [
        {"here"}
    ]
    _, blocks = bb.parse(merged2)
    assert [b.experiments for b in blocks] == [{"elsewhere"}, {"here"}] and "0.2" in blocks[0].body
    # one block left: the file is the one-store leaderboard itself, without markers
    assert bb.merge(new, ["here", "elsewhere"], merged) == (new, [], blocks_of(merged))
    with pytest.raises(ValueError):
        bb.parse("# recbench leaderboard\n\n<!-- recbench:block experiments=a -->\n- Produced: x\n")


def blocks_of(text):
    from recbench import board_blocks as bb

    return bb.parse(text)[1]


def test_several_stores_are_read_as_one(tmp_path, monkeypatch):
    """Runs of one protocol made on two machines (two stores) rank in one table; a row in both is one row."""
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    for db in (first, second):
        db.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{first}")
    text = {"kind": "text", "model": "minilm", "label": "text-minilm-frozen"}
    earlier_id = log_run(Tracker("exp-a"), spec_for({"kind": "id"}), 0.5, rank_seed=1)
    log_run(Tracker("exp-a"), spec_for(text), 0.6, rank_seed=2)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{second}")
    later_id = log_run(Tracker("exp-b"), spec_for({"kind": "id"}), 0.5, rank_seed=3)  # same settings, seed
    log_run(Tracker("exp-b"), spec_for({"kind": "clip", "label": "clip-image"}), 0.35, rank_seed=4)
    monkeypatch.chdir(tmp_path)  # ./mlflow.db does not exist: only the named stores are read
    out = tmp_path / "LB.md"
    both = ["--store", "a/mlflow.db", "--store", f"sqlite:///{second}"]
    write = ["leaderboard", *both, "--experiment", "exp-a", "--experiment", "exp-b", "--output", str(out)]
    result = runner.invoke(app, write)
    assert result.exit_code == 0, result.output
    board = out.read_text()
    tables = [t for t in board.split("\n## ")[1:] if not t.startswith("Runs left out")]
    assert len(tables) == 1
    rows = {
        ln.split("|")[1].strip() for ln in tables[0].splitlines() if ln.startswith("| ") and "sasrec" in ln
    }
    assert rows == {"id", "text-minilm-frozen", "clip-image"}
    left_out = board.split("## Runs left out")[1]
    assert earlier_id[:12] in left_out and "superseded" in left_out and later_id[:12] not in left_out
    assert "from experiments `exp-a`, `exp-b`" in board and "--store a/mlflow.db" in board
    assert runner.invoke(app, [*write, "--check"]).exit_code == 0
    assert not (tmp_path / "mlflow.db").exists()

    # one store alone holds only one of the experiments: the other is named, nothing is written
    elsewhere = tmp_path / "X.md"
    result = runner.invoke(
        app, f"leaderboard --store a/mlflow.db --experiment exp-b --output {elsewhere}".split()
    )
    assert result.exit_code == 2 and "'exp-b'" in result.output and "exp-a" in result.output
    assert not elsewhere.exists()
    # a store that is not there is refused, and not created
    result = runner.invoke(
        app, f"leaderboard --store a/mlflow.db --store c/mlflow.db --output {elsewhere}".split()
    )
    assert result.exit_code == 2 and "no MLflow store at" in result.output and "c/mlflow.db" in result.output
    assert not (tmp_path / "c").exists() and not elsewhere.exists()
    # each store written alone: the second store's table of the same protocol is refused, naming --store
    alone = tmp_path / "ALONE.md"
    for store, experiment, code in (("a/mlflow.db", "exp-a", 0), ("b/mlflow.db", "exp-b", 2)):
        result = runner.invoke(
            app, ["leaderboard", "--store", store, "--experiment", experiment, "--output", str(alone)]
        )
        assert result.exit_code == code, result.output
    assert "--store for each store" in result.output and "exp-a, exp-b" in result.output


def test_a_mixed_dataset_is_named_in_words_not_as_a_settings_dump():
    from types import SimpleNamespace

    source = {"name": "sports", "min_rating": None, "user_core": 5, "mix_with": []}
    dataset = {**source, "mix_with": [{"name": "toys", "min_rating": None, "item_core": 3, "mix_with": []}]}
    assert lb._data_settings(dataset) == "user_core=5, mixed with toys (item_core=3)"
    assert lb._data_settings({"name": "x", "min_rating": None, "mix_with": []}) == ""
    table = SimpleNamespace(dataset="sports", protocol={"dataset": dataset})
    assert lb._dataset_title(table) == "sports + toys"
    assert (
        lb._dataset_title(SimpleNamespace(dataset="beauty", protocol={"dataset": {"name": "beauty"}}))
        == "beauty"
    )
