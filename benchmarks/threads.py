"""Seconds per epoch for 1 and 2 torch threads, on an idle machine and with the other cores busy.

Why: the default thread count decides whether a new user's first run takes minutes or hours. torch's default
(one thread per core) collapses when another job holds a core: its threads wait for each other at every
parallel region, and a small model's step is nothing but short parallel regions. This script measures the
choice instead of guessing it, on a main-recipe row (SASRec and GRU4Rec with ID items on MovieLens-100K,
full-softmax CE, the recipe's sizes), as the user would run it: one fresh `recbench run` process per cell with
`RECBENCH_THREADS=N`, reading `cost.s_per_epoch` from `--json`.

Cells:
- idle: nothing else runs;
- busy: one spinning process per "other" core (cores - 1 of them), as another job would be;
- two runs at once: two recbench processes started together, each with N threads (what a grid executor
  with 2 workers does); the figure is the mean of their s/epoch.

    .venv/bin/python benchmarks/threads.py --data-dir ../shared/data/ml-100k [--epochs 3]

Check `uptime` first: the idle cells mean nothing if the machine is not idle.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = """
name: threads-bench
experiment: threads-bench
dataset: {{name: movielens-100k}}
train: {{loss: ce, max_len: 50, batch_size: 128, lr: 0.002, max_epochs: {epochs}, patience: {epochs}}}
encoder: {{kind: id}}
backbone: {backbone}
"""
BACKBONES = {
    "sasrec": "{kind: sasrec, dim: 64, layers: 2, heads: 2, inner: 256, dropout: 0.2, attn_dropout: 0.2}",
    "gru4rec": "{kind: gru4rec, dim: 64, hidden: 64, layers: 1, dropout: 0.2}",
}


def spin() -> None:
    while True:
        pass


def start_run(
    recipe: Path,
    threads: int,
    data_dir: str | None,
    work: Path,
    store: str = "mlflow",
    wait: str | None = None,
) -> subprocess.Popen:
    """One `recbench run` process; runs started together get their own stores (one store would let only
    one of them train the run and the other wait for it). `wait` sets OMP_WAIT_POLICY (ACTIVE threads spin
    between parallel regions, PASSIVE ones sleep)."""
    env = dict(os.environ, RECBENCH_THREADS=str(threads), MLFLOW_TRACKING_URI=f"sqlite:///{work}/{store}.db")
    if wait:
        env["OMP_WAIT_POLICY"] = wait
    env["RECBENCH_HOME"] = str(work / "home")
    cmd = [str(Path(sys.executable).parent / "recbench"), "run", str(recipe), "--json", "--rerun"]
    if data_dir:
        cmd += ["--data-dir", f"movielens-100k={data_dir}"]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=work, text=True
    )


def s_per_epoch(proc: subprocess.Popen) -> float:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"recbench run failed (exit {proc.returncode})")
    return float(json.loads(out)["cost"]["s_per_epoch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="folder of the movielens-100k card (else the card's download/cache)"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument(
        "--cells",
        nargs="+",
        default=["1", "2"],
        help="thread settings to measure: N, or N:passive / N:active for OMP_WAIT_POLICY (default: 1 2)",
    )
    args = parser.parse_args()
    if args.data_dir:
        args.data_dir = str(Path(args.data_dir).resolve())  # the runs start in a temporary folder
    args.cells = [(int(c.split(":")[0]), c.split(":")[1].upper() if ":" in c else None) for c in args.cells]
    cores = os.cpu_count() or 1
    print(
        f"cores: {cores}; load before: {os.getloadavg()[0]:.2f}; epochs per cell: {args.epochs}", flush=True
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for backbone in args.backbones:
            recipe = work / f"{backbone}.yaml"
            recipe.write_text(RECIPE.format(epochs=args.epochs, backbone=BACKBONES[backbone]))
            # warm the data cache once so no cell pays for preparing the dataset
            s_per_epoch(start_run(recipe, 1, args.data_dir, work))
            for threads, wait in args.cells:
                idle = s_per_epoch(start_run(recipe, threads, args.data_dir, work, wait=wait))
                spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(cores - 1)]
                for p in spinners:
                    p.start()
                time.sleep(0.5)
                try:
                    busy = s_per_epoch(start_run(recipe, threads, args.data_dir, work, wait=wait))
                finally:
                    for p in spinners:
                        p.terminate()
                pair = [start_run(recipe, threads, args.data_dir, work, f"pair{i}", wait) for i in range(2)]
                together = sum(s_per_epoch(p) for p in pair) / 2
                label = f"{threads}" + (f" ({wait.lower()} wait)" if wait else "")
                rows.append((backbone, label, idle, busy, together))
                print(
                    f"  {backbone} threads={label}: idle {idle:.2f}  busy {busy:.2f}  two at once {together:.2f}",
                    flush=True,
                )
    print()
    print("| backbone | threads | idle s/epoch | other cores busy | two runs at once (each) |")
    print("|---|---|---|---|---|")
    for backbone, threads, idle, busy, together in rows:
        print(f"| {backbone} | {threads} | {idle:.2f} | {busy:.2f} | {together:.2f} |")
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
