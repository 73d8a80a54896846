"""SASRec on MovieLens-100K: recbench side by side with RecBole 1.2.1, same data and protocol.

Protocol of the comparison (RecBole's): leave-one-out by time, max length 50, full-softmax CE, full ranking over
all 1,682 items, history items NOT excluded (RecBole does not exclude them for sequential models). recbench's
default protocol excludes them; that number is printed beside, never mixed into the ratio.

    python benchmarks/sasrec_vs_recbole.py                      # recbench runs; RecBole from RESULTS.md
    python benchmarks/sasrec_vs_recbole.py --with-recbole       # also re-run RecBole (~45 min, its own venv)

Each recbench run is a fresh `recbench run` process with its own temporary MLflow store, timed from process
start to exit (imports, data loading, training to early stop, evaluation), like RecBole's whole-process wall.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PEER = SHARED / "peers" / "recbole"

# ../shared/peers/recbole/RESULTS.md, "Convergence run: SASRec (2026-11-22)": best validation epoch 7 of 11,
# test at the best epoch, whole process 2,614 s on this 2-core machine (2 torch threads).
RECBOLE_SASREC = {
    "test": {"hr@10": 0.1209, "ndcg@10": 0.0554, "mrr@10": 0.0362},
    "best_epoch": 7,
    "epochs": 11,
    "s_per_epoch": 214.0,
    "wall_s": 2614.0,
    "peak_rss_mb": 1230.0,
    "source": "shared/peers/recbole/RESULTS.md (convergence run, 2026-11-22)",
}


def run_recbench(recipe: str, data_dir: Path, overrides: list[str], threads: int | None) -> dict:
    """One `recbench run` process; returns its JSON line plus the measured process wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db", RECBENCH_HOME=f"{tmp}/home")
        if threads:
            env["RECBENCH_THREADS"] = str(threads)
        cmd = [sys.executable, "-m", "recbench.cli", "run", recipe, "--json", "--quiet", "--rerun",
               "--data-dir", str(data_dir)]
        for o in overrides:
            cmd += ["--set", o]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"recbench failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][0])
    line["process_wall_s"] = wall
    return line


def run_recbole() -> dict:
    """Re-run RecBole's convergence run with the peer's own script (its own venv under /tmp)."""
    out = Path(tempfile.mkdtemp(prefix="recbole-sasrec-"))
    t0 = time.perf_counter()
    subprocess.run(["bash", str(PEER / "run_long.sh"), "SASRec"], env=dict(os.environ, OUT=str(out)), check=True)
    wall = time.perf_counter() - t0
    record = json.loads((out / "run.json").read_text())
    test = record["test_result"]  # RecBole's keys: hit@10 (= HR@10), ndcg@10, mrr@10
    return {
        "test": {"hr@10": test["hit@10"], "ndcg@10": test["ndcg@10"], "mrr@10": test["mrr@10"]},
        "best_epoch": record["best_epoch"] + 1,  # RecBole counts epochs from 0
        "epochs": record["epochs_run"],
        "s_per_epoch": record["train_epoch_s_median"],
        "wall_s": wall,
        "source": f"re-run now, raw record in {out}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "ml100k_sasrec_id.yaml"))
    ap.add_argument("--data-dir", type=Path, default=SHARED / "data" / "ml-100k")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for recbench (RecBole used 2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--with-recbole", action="store_true", help="re-run RecBole instead of quoting RESULTS.md")
    args = ap.parse_args()

    recbole = run_recbole() if args.with_recbole else RECBOLE_SASREC
    rows = []
    for seed in args.seeds:
        same = run_recbench(args.recipe, args.data_dir, ["eval.exclude_seen=false", f"seed={seed}"], args.threads)
        default = run_recbench(args.recipe, args.data_dir, [f"seed={seed}"], args.threads)
        rows.append((seed, same, default))

    print(f"\nSASRec on MovieLens-100K, leave-one-out, max_len 50, full-softmax CE, full ranking ({os.cpu_count()} cores)")
    print(f"RecBole 1.2.1: {recbole['source']}")
    header = f"{'side':34} {'HR@10':>7} {'NDCG@10':>8} {'MRR@10':>7} {'best/ep':>8} {'s/epoch':>8} {'wall s':>8}"
    print(header)
    print("-" * len(header))
    t = recbole["test"]
    print(f"{'RecBole SASRec (history kept)':34} {t['hr@10']:7.4f} {t['ndcg@10']:8.4f} {t['mrr@10']:7.4f} "
          f"{recbole['best_epoch']:>3}/{recbole['epochs']:<4} {recbole.get('s_per_epoch', float('nan')):8.1f} {recbole['wall_s']:8.0f}")
    for seed, same, default in rows:
        for label, line in ((f"recbench seed {seed} (history kept)", same), (f"recbench seed {seed} (history excluded)", default)):
            m, c = line["metrics"]["test"], line["cost"]
            print(f"{label:34} {m['hr@10']:7.4f} {m['ndcg@10']:8.4f} {m['mrr@10']:7.4f} "
                  f"{c['best_epoch']:>3}/{c['epochs']:<4} {c['s_per_epoch']:8.2f} {line['process_wall_s']:8.1f}")
    print()
    for seed, same, _ in rows:
        ratio = same["process_wall_s"] / recbole["wall_s"]
        delta = same["metrics"]["test"]["ndcg@10"] - recbole["test"]["ndcg@10"]
        verdict = "PASS" if ratio <= 0.1 and delta >= 0 else "FAIL"
        print(f"seed {seed}: wall ratio recbench/RecBole = {ratio:.3f} (target <= 0.100); "
              f"test NDCG@10 difference (same protocol) = {delta:+.4f} (target >= 0)  -> {verdict}")


if __name__ == "__main__":
    main()
