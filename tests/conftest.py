"""Shared fixtures. Tests never touch the network or data outside the repository, except tests marked for
the real data in ../shared/data, which skip with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RECBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))

torch.set_num_threads(1)  # tiny tensors: threads only add overhead and nondeterministic timing


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (it lives in ../shared/data on the project machines)")
    return path


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own RECBENCH_HOME and MLflow store, and runs in a temporary directory."""
    home = tmp_path / "recbench-home"
    monkeypatch.setenv("RECBENCH_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    return home


def write_atomic(
    folder: Path, prefix: str, sequences: dict[str, list[str]], titles: dict[str, str] | None = None
):
    """RecBole atomic files for the given user -> item sequences (timestamps increase along each sequence)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    t = 1_000_000
    for user, items in sequences.items():
        for item in items:
            t += 1
            lines.append(f"{user}\t{item}\t4\t{t}")
    (folder / f"{prefix}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    all_items = sorted({i for seq in sequences.values() for i in seq}, key=int)
    titles = titles or {i: f"Movie {i}" for i in all_items}
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    item_lines += [f"{i}\t{titles.get(i, '')}\t1995\tDrama" for i in all_items]
    (folder / f"{prefix}.item").write_text("\n".join(item_lines) + "\n", encoding="utf-8")
    return folder


def successor_sequences(num_users: int = 80, num_items: int = 40, length: int = 12, seed: int = 0):
    """Each user walks the item ring: item i is always followed by i + 1. Learnable, so a working model must
    rank the true next item near the top; a broken one cannot."""
    rng = np.random.default_rng(seed)
    seqs = {}
    for u in range(1, num_users + 1):
        start = int(rng.integers(0, num_items))
        seqs[str(u)] = [str((start + k) % num_items + 1) for k in range(length)]
    return seqs


@pytest.fixture
def tiny_ml_dir(tmp_path) -> Path:
    """A MovieLens-100K-shaped folder (RecBole atomic files) holding the learnable successor data."""
    return write_atomic(tmp_path / "tiny-ml", "ml-100k", successor_sequences())
