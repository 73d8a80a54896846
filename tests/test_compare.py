"""`recbench compare`: run lookup, paired statistics, and refusal of runs with different protocols."""

import pytest
from fake_runs import fake_store
from typer.testing import CliRunner

from recbench.cli import app
from recbench.compare import IncomparableRuns, compare, protocol_differences
from recbench.evaluation import stats
from recbench.tracking import RunLookupError, Store

runner = CliRunner()


@pytest.fixture
def store(tmp_path, tmp_path_factory, monkeypatch):
    ids = fake_store(tmp_path_factory, tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    return ids


def test_compare_prints_metrics_difference_ci_and_p_values(store):
    a_id, b_id = store["text-sasrec-0"], store["id-sasrec-0"]
    result = runner.invoke(app, ["compare", a_id[:10], b_id])
    assert result.exit_code == 0, result.output
    s = Store()
    a, b = s.find_run(a_id), s.find_run(b_id)
    va = a.per_user.sort("user")["ndcg@10"].to_numpy()
    vb = b.per_user.sort("user")["ndcg@10"].to_numpy()
    delta = stats.paired_bootstrap_ci(va, vb)
    out = result.output
    assert a_id in out and b_id in out and "full ranking" in out and "60 test users paired" in out
    assert f"A - B = {delta.estimate:+.4f}, 95% CI [{delta.low:+.4f}, {delta.high:+.4f}]" in out
    assert f"p = {stats.wilcoxon_signed_rank(va, vb).p_value:.3g}" in out
    assert f"p = {stats.paired_t_test(va, vb).p_value:.3g}" in out
    for name in ("hr@5", "ndcg@10", "mrr@10"):
        assert name in out


def test_compare_refuses_different_protocols_and_says_which_fields(store):
    result = runner.invoke(app, ["compare", store["id-sasrec-0"], store["id-sampled"]])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "different protocols" in out
    assert "candidates: full vs sampled" in out and "sampled_negatives: None vs 20" in out
    s = Store()
    diffs = protocol_differences(s.find_run(store["id-sasrec-0"]), s.find_run(store["id-sampled"]))
    assert [d.split(":")[0] for d in diffs] == ["candidates", "sampled_negatives"]


def test_same_protocol_has_no_differences_and_compare_is_antisymmetric(store):
    s = Store()
    a, b = s.find_run(store["clip-sasrec-0"]), s.find_run(store["id-sasrec-1"])
    assert protocol_differences(a, b) == []
    ab, ba = compare(a, b), compare(b, a)
    assert ab.delta.estimate == pytest.approx(-ba.delta.estimate)
    assert ab.wilcoxon.p_value == pytest.approx(ba.wilcoxon.p_value)
    assert ab.t_test.p_value == pytest.approx(ba.t_test.p_value)
    with pytest.raises(IncomparableRuns, match="not a metric"):
        compare(a, b, "auc@10")


def test_run_lookup_by_prefix_and_name_and_refusals(store):
    s = Store()
    text_gru = s.find_run("movielens-100k/leave_one_out/text-minilm-frozen/gru4rec/seed0")
    assert text_gru.run_id == store["text-gru4rec-0"]
    with pytest.raises(RunLookupError, match="matches 2 runs"):  # the full and the sampled id run share it
        s.find_run("movielens-100k/leave_one_out/id/sasrec/seed0")
    with pytest.raises(RunLookupError, match="no recbench run"):
        s.find_run("nothing-like-this")
    result = runner.invoke(app, ["compare", store["failed"], store["id-sasrec-0"]])
    assert result.exit_code == 2 and "FAILED" in result.output and "KeyboardInterrupt" in result.output
    result = runner.invoke(
        app, ["compare", "movielens-100k/leave_one_out/id/sasrec/seed0", store["id-sasrec-0"]]
    )
    assert result.exit_code == 2 and "Give a longer id prefix" in " ".join(result.output.split())
