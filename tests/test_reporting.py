"""The summary table after a grid."""

from rich.console import Console

from recbench.reporting import summary_table
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
