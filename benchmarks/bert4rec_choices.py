"""BERT4Rec's two deviations from RecBole, decided on VALIDATION data only (issue: no design choice is tuned
on a leaderboard dataset's test split).

Variants (everything else as recipes/ml100k_backbones.yaml's BERT4Rec row, ID items, MovieLens-100K):
- chosen:        head LayerNorm on, no last-item-only windows (recbench's default);
- no-head-norm:  the head without its final LayerNorm;
- last-item 0.5: half the training windows mask only their last item (RecBole's extra samples).
Each variant trains `--epochs` epochs (best validation epoch restored) for every seed; the script prints the
validation NDCG@10 of the restored model, per seed and mean +- std, and never computes a test metric
(evaluation of the test split is skipped: only the validation users are ranked).

    python benchmarks/bert4rec_choices.py --data-dir ../shared/data/ml-100k [--seeds 0 1 2] [--epochs 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from recbench.config import expand, recipe_from_dict
from recbench.evaluation.protocol import Protocol, evaluate
from recbench.reporting import Reporter
from recbench.runner import DataMemo, build_stage, seed_everything, train_stage

VARIANTS = {
    "chosen (head norm, no last-item windows)": {},
    "no head LayerNorm": {"head_norm": False},
    "last-item-only windows, share 0.5": {"last_item_share": 0.5},
}


def recipe(seed: int, epochs: int, data_dir: str | None, change: dict) -> dict:
    backbone = {
        "kind": "bert4rec",
        "dim": 64,
        "layers": 2,
        "heads": 2,
        "inner": 256,
        "dropout": 0.2,
        "attn_dropout": 0.2,
        "mask_prob": 0.2,
        **change,
    }
    return {
        "name": "bert4rec-choices",
        "seed": seed,
        "dataset": {"name": "movielens-100k", "data_dir": data_dir},
        "encoder": {"kind": "id"},
        "backbone": backbone,
        "train": {
            "loss": "ce",
            "max_len": 50,
            "batch_size": 64,
            "lr": 0.003,
            "max_epochs": epochs,
            "patience": epochs,
        },
    }


def valid_ndcg(raw: dict) -> tuple[float, float]:
    """Train one run and return (validation NDCG@10 of the restored best epoch, seconds); test never ranked."""
    (spec,) = expand(recipe_from_dict(raw))
    t0 = time.perf_counter()
    generator = seed_everything(spec.seed)
    prepared = DataMemo().prepare(spec, Reporter())
    data, split = prepared.data, prepared.split

    model, _ = build_stage(spec, prepared)
    protocol = Protocol(num_items=data.num_items, max_len=spec.train.max_len, ks=spec.eval.ks, seed=spec.seed)
    train_stage(spec, model, split, protocol, torch.device("cpu"), generator, Reporter(), None)
    model.eval()
    value = evaluate(model.scorer(), split.valid, protocol).metrics["ndcg@10"]
    return value, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    threads = int(os.environ.get("RECBENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    print(
        f"BERT4Rec choices on MovieLens-100K validation (never test): {args.epochs} epochs, seeds {args.seeds}, "
        f"{threads} thread(s), load {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for name, change in VARIANTS.items():
        values = []
        for seed in args.seeds:
            value, seconds = valid_ndcg(recipe(seed, args.epochs, args.data_dir, change))
            values.append(value)
            print(f"  {name:45s} seed {seed}: valid NDCG@10 {value:.4f} ({seconds:.0f} s)", flush=True)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append((name, statistics.mean(values), sd, values))
    print()
    print("| variant | valid NDCG@10 per seed | mean +- std |")
    print("|---|---|---|")
    for name, mean, sd, values in rows:
        print(f"| {name} | {' / '.join(f'{v:.4f}' for v in values)} | {mean:.4f} +- {sd:.4f} |")
    best = max(rows, key=lambda r: r[1])
    print(f"\nhighest mean validation NDCG@10: {best[0]}")


if __name__ == "__main__":
    main()
