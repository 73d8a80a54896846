"""One grid, two executors: wall time of `recbench run RECIPE` serially vs `--executor ray --workers N`.

Why: the Ray executor is worth its dependency only if a grid finishes sooner on the same machine and gives
the same numbers. Both sides are fresh `recbench run ... --json --rerun` processes on the same recipe and
overrides, each with its own temporary MLflow store, sharing one warmed `RECBENCH_HOME` (the prepared
dataset and the frozen text encodings are cached before either side is timed, so neither pays for them).
Each side runs with the thread setting it gets by default (RECBENCH_THREADS unset: one thread per run, see
the README's "Threads"), unless `--serial-threads` adds serial runs with more threads per run. The script
prints wall seconds side by side, the ratio, and whether every run's metrics are identical between sides.

    .venv/bin/python benchmarks/ray_vs_serial.py --data-dir movielens-100k=../shared/data/ml-100k \\
        --set 'grid.seed=[0]'

Check `uptime` first: the machine must be quiet (the ray side uses every core).
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

import yaml

REPO = Path(__file__).resolve().parents[1]


def recbench_run(
    recipe: str,
    work: Path,
    store: str,
    extra: list[str],
    threads: int | None = None,
) -> tuple[float, dict[str, dict]]:
    """(wall seconds, {run name: --json line}) of one `recbench run` process."""
    env = dict(
        os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{work}/{store}.db", RECBENCH_HOME=str(work / "home")
    )
    env.pop("RECBENCH_THREADS", None)
    if threads:
        env["RECBENCH_THREADS"] = str(threads)
    cmd = [str(Path(sys.executable).parent / "recbench"), "run", recipe, "--json", "--rerun", *extra]
    log = work / f"{store}.log"
    t0 = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=err, cwd=work, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    runs = {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        runs[row["name"]] = row
    return wall, runs


def one_epoch_copy(recipe: str, work: Path) -> str:
    """The recipe with every train section (top level and per row) capped at one epoch."""
    data = yaml.safe_load(Path(recipe).read_text())

    def cap(node):
        if isinstance(node, dict):
            if isinstance(node.get("train"), dict):
                node["train"] = {**node["train"], "max_epochs": 1, "patience": 1}
            for value in node.values():
                cap(value)
        elif isinstance(node, list):
            for value in node:
                cap(value)

    cap(data)
    data.setdefault("train", {}).update(max_epochs=1, patience=1)
    out = work / "warm.yaml"
    out.write_text(yaml.safe_dump(data))
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "morec_vs_idrec.yaml"))
    parser.add_argument("--data-dir", action="append", default=[], help="CARD=PATH, passed to recbench run")
    parser.add_argument("--set", action="append", default=[], help="recipe override, passed to both sides")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--serial-threads",
        type=int,
        nargs="*",
        default=[],
        help="extra serial sides with RECBENCH_THREADS=N (the default side runs with no override)",
    )
    args = parser.parse_args()
    # the runs start in a temporary folder: paths are made absolute here
    args.data_dir = [
        f"{d.split('=', 1)[0]}={Path(d.split('=', 1)[1]).resolve()}" if "=" in d else str(Path(d).resolve())
        for d in args.data_dir
    ]
    args.recipe = str(Path(args.recipe).resolve())
    extra = [w for d in args.data_dir for w in ("--data-dir", d)] + [
        w for s in args.set for w in ("--set", s)
    ]
    print(f"cores: {os.cpu_count()}; load before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # warm the caches: one epoch of every run prepares the data and encodes the frozen text (and the
        # top_k rows' lower layers) once
        t0 = time.perf_counter()
        recbench_run(one_epoch_copy(args.recipe, work), work, "warm", extra)
        print(f"caches warmed in {time.perf_counter() - t0:.0f} s", flush=True)
        sides = [("serial", [], None)]
        sides += [(f"serial, {n} threads", [], n) for n in args.serial_threads]
        sides.append(
            (f"ray, {args.workers} workers", ["--executor", "ray", "--workers", str(args.workers)], None)
        )
        measured = {}
        for i, (label, flags, threads) in enumerate(sides):
            wall, runs = recbench_run(args.recipe, work, f"side{i}", [*extra, *flags], threads)
            measured[label] = (wall, runs)
            print(f"  {label}: {wall:.0f} s for {len(runs)} runs", flush=True)
        ray_label = sides[-1][0]
        ray_wall, ray_runs = measured[ray_label]
        print()
        print("| executor | wall s | serial / this | runs | metrics identical to serial |")
        print("|---|---|---|---|---|")
        serial_wall, serial_runs = measured["serial"]
        for label, (wall, runs) in measured.items():
            same = [
                name
                for name in serial_runs
                if runs.get(name, {}).get("metrics") == serial_runs[name]["metrics"]
            ]
            print(
                f"| {label} | {wall:.0f} | {serial_wall / wall:.2f}x | {len(runs)} | "
                f"{len(same)}/{len(serial_runs)} |"
            )
        differ = [n for n in serial_runs if ray_runs.get(n, {}).get("metrics") != serial_runs[n]["metrics"]]
        for name in differ:
            print(
                f"  differs: {name}: serial {serial_runs[name]['metrics'].get('test')} vs ray "
                f"{ray_runs.get(name, {}).get('metrics', {}).get('test')}"
            )
        longest = max(serial_runs.values(), key=lambda r: r["cost"].get("train_s") or 0)
        print(
            f"\nlongest run (serial): {longest['name']}, train {longest['cost'].get('train_s', 0):.0f} s "
            f"(a bound on the ray side's wall)"
        )
        verdict = "PASS" if serial_wall / ray_wall >= 1.5 and not differ else "FAIL"
        print(f"target ray >= 1.5x faster with identical metrics: {verdict} ({serial_wall / ray_wall:.2f}x)")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
