"""The CLI through typer's runner, and an end-to-end smoke run read back from MLflow."""

import json
from pathlib import Path

import polars as pl
import pytest
import torch
from typer.testing import CliRunner

import recbench
from recbench.cli import app

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "recipes" / "smoke.yaml")
runner = CliRunner()


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and recbench.__version__ in result.output


def test_validate_ok_and_misspelt_key(tmp_path):
    assert runner.invoke(app, ["validate", SMOKE]).exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(SMOKE).read_text().replace("max_epochs", "max_epoch"))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert (
        "train.max_epoch" in result.output and "max_epochs" in result.output and "bad.yaml" in result.output
    )


def test_run_rejects_bad_override_with_status_2():
    result = runner.invoke(app, ["run", SMOKE, "--set", "eval.ks=[10, 99999]"])
    assert result.exit_code == 2 and "catalogue" in result.output


def test_dry_run_lists_runs_without_training():
    result = runner.invoke(app, ["run", SMOKE, "--dry-run", "--json"])
    assert result.exit_code == 0
    lines = _json_lines(result.output)
    assert len(lines) == 1 and lines[0]["name"] == "movielens-100k/leave_one_out/id/sasrec/seed0"


def test_data_list_shows_the_cards():
    result = runner.invoke(app, ["data", "list"])
    assert result.exit_code == 0 and "movielens-100k" in result.output


def test_smoke_run_json_and_mlflow_readback(tiny_ml_dir):
    from mlflow.tracking import MlflowClient

    result = runner.invoke(app, ["run", SMOKE, "--data-dir", str(tiny_ml_dir), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    (line,) = _json_lines(result.stdout)
    assert set(line) >= {"name", "dataset", "encoder", "backbone", "protocol", "metrics", "cost"}
    assert set(line["metrics"]) >= {"valid", "test", "test/warm", "test/cold"}
    assert set(line["metrics"]["test"]) == {f"{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in (5, 10)}
    assert set(line["cost"]) >= {
        "train_s",
        "s_per_epoch",
        "epochs",
        "peak_rss_mb",
        "params_total",
        "params_trainable",
    }
    assert line["cost"]["epochs"] == 2 and line["protocol"]["exclude_seen"] is True

    client = MlflowClient()
    exp = client.get_experiment_by_name("recbench-smoke")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_id == line["run_id"]
    assert run.data.tags["recbench.recipe_hash"] == line["recipe_hash"]
    assert run.data.tags["recbench.protocol_fingerprint"] == line["protocol"]["fingerprint"]
    assert "recbench.dataset_fingerprint" in run.data.tags and "recbench.git_commit" in run.data.tags
    assert run.data.params["encoder.kind"] == "id" and run.data.params["train.max_len"] == "20"
    assert run.data.metrics["test/ndcg_at_10"] == pytest.approx(line["metrics"]["test"]["ndcg@10"])
    history = client.get_metric_history(run.info.run_id, "epoch/valid/ndcg_at_10")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"run_summary.json", "per_user_test.parquet", "recipe.json"} <= artifacts
    ranks = pl.read_parquet(client.download_artifacts(run.info.run_id, "per_user_test.parquet"))
    assert ranks.height == 60 and (ranks["rank"] >= 1).all()
    assert ranks["ndcg@10"].mean() == pytest.approx(line["metrics"]["test"]["ndcg@10"])

    again = runner.invoke(app, ["run", SMOKE, "--data-dir", str(tiny_ml_dir), "--json", "--quiet"])
    assert again.exit_code == 0
    assert _json_lines(again.stdout)[0]["run_id"] == line["run_id"]  # skipped: already FINISHED
    assert len(client.search_runs([exp.experiment_id])) == 1


def test_nan_loss_fails_the_run_and_marks_it_failed(tiny_ml_dir, monkeypatch):
    from mlflow.tracking import MlflowClient

    import recbench.training as training

    monkeypatch.setattr(
        training, "compute_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True)
    )
    result = runner.invoke(app, ["run", SMOKE, "--data-dir", str(tiny_ml_dir), "--quiet"])
    assert result.exit_code == 1
    assert "loss is nan at epoch 1, batch 1" in result.output
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("recbench-smoke").experiment_id])
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags["recbench.failure"]


def test_sasrec_learns_the_successor_pattern_end_to_end(tiny_ml_dir):
    """A real behaviour check of the whole path: data -> windows -> SASRec -> CE -> full-ranking evaluation."""
    result = runner.invoke(
        app,
        [
            "run",
            SMOKE,
            "--data-dir",
            str(tiny_ml_dir),
            "--json",
            "--quiet",
            "--set",
            "dataset.max_users=null",
            "--set",
            "train.max_epochs=40",
            "--set",
            "train.patience=40",
            "--set",
            "train.lr=0.01",
            "--set",
            "backbone.dropout=0.0",
            "--set",
            "backbone.attn_dropout=0.0",
        ],
    )
    assert result.exit_code == 0, result.output
    test = _json_lines(result.stdout)[0]["metrics"]["test"]
    assert test["hr@5"] > 0.8  # random would be ~5/40
