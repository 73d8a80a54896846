"""How much of the catalogue one training step touches: the bound on what stale negatives can save.

Why: a trainable text tower with full-softmax CE re-encodes the whole catalogue at every step. The usual
cheaper step ("encode with gradient only the items the batch needs, take the other items' vectors from a cache
refreshed every N steps") saves the encoder work of the items a step does *not* touch, and nothing else. This
script measures that share on the shipped recipes' batches (inputs and targets of each step, as
`recbench.model.Recommender.train_states` collects them), so the possible saving is a measured number, not a
hope: per step, the share of catalogue items in the batch; per epoch, the catalogue encodes with gradient
that the exact step pays (one per step) against what the stale-negative step would pay (the touched share per
step, plus its refreshes).

    .venv/bin/python benchmarks/step_coverage.py --data ml-100k=../shared/data/ml-100k \\
        --data amazon-scientific=../shared/data/amazon-scientific
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# (recipe, the top-2 row's batch size there, other batch sizes to compare)
CASES = {
    "ml-100k": ("morec_vs_idrec.yaml", [512, 128]),
    "amazon-scientific": ("morec_vs_idrec_scientific.yaml", [2048, 256]),
}


def coverage(recipe: Path, data_dir: str, batch_sizes: list[int]) -> list[tuple[int, int, float, float]]:
    """[(batch size, steps per epoch, mean share of items touched per step, min share)]."""
    from recbench import runner
    from recbench.config import expand, load_recipe
    from recbench.data.batches import make_windows
    from recbench.reporting import Reporter

    spec = expand(load_recipe(recipe))[0]
    spec = spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"data_dir": data_dir})})
    prepared = runner.DataMemo().prepare(spec, Reporter())
    windows = make_windows(prepared.split.train, spec.train.max_len, spec.train.stride, shift=True)
    out = []
    for batch_size in batch_sizes:
        shares = []
        for inputs, targets in windows.batches(batch_size, torch.Generator().manual_seed(0)):
            items = torch.unique(torch.cat([inputs.flatten(), targets.flatten()]))  # includes padding 0
            shares.append((len(items) - 1) / prepared.data.num_items)
        out.append((batch_size, len(shares), sum(shares) / len(shares), min(shares)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", action="append", required=True, help="CASE=DIR, CASE in " + ", ".join(CASES)
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| data | batch | steps/epoch | items touched per step (mean, min) | exact: catalogue encodes per epoch "
        "| stale negatives: encodes with gradient per epoch (refreshes extra) |"
    )
    print("|---|---|---|---|---|---|")
    for item in args.data:
        case, _, folder = item.partition("=")
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}: one of {', '.join(CASES)}")
        recipe, sizes = CASES[case]
        for batch, steps, mean, low in coverage(
            REPO / "recipes" / recipe, str(Path(folder).resolve()), sizes
        ):
            print(f"| {case} | {batch} | {steps} | {mean:.0%}, {low:.0%} | {steps} | {steps * mean:.1f} |")


if __name__ == "__main__":
    main()
