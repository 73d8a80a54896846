"""Checkpoints of FINISHED runs, and top-K inference from them (`recbench recommend`, `recbench export`).

A run saves, as MLflow artifacts under ``checkpoint/``: its best model as safetensors (``model.safetensors``,
never a pickle), and the item and user index it was trained on (``item_index.json``: the dataset's raw ids in
index order, plus the dataset fingerprint). With the run's validated recipe (``recipe.json``) that is everything
needed to rebuild the model: the recipe builds the modules, the weights fill them, and the index guarantees the
rows mean the same items. A model is only ever loaded onto the dataset it was trained on (same fingerprint);
anything else is refused with the two fingerprints, since an ID row would silently mean another item.

Inference ranks every item for a user's whole sequence (train, validation and test items: the next item after
everything known), with the user's history excluded unless asked, and padding never a candidate.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_model, save_model

from recbench.config import RunSpec
from recbench.data.batches import pad_left
from recbench.data.schema import DataError, SequenceData

CHECKPOINT_DIR = "checkpoint"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "item_index.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message says why and what to do."""


def write_checkpoint(model: torch.nn.Module, data: SequenceData, folder: Path) -> Path:
    """The model's weights and the data's index, written into `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / WEIGHTS_FILE))
    index = {
        "dataset": data.name,
        "dataset_fingerprint": data.fingerprint,
        "item_ids": data.item_ids,  # item index i + 1 -> raw id
        "user_ids": data.user_ids,
    }
    (folder / INDEX_FILE).write_text(json.dumps(index), "utf-8")
    return folder


@dataclass
class LoadedRun:
    """A rebuilt model with the data and spec of its run."""

    spec: RunSpec
    model: torch.nn.Module
    data: SequenceData
    run_id: str

    def histories(self, users: np.ndarray) -> list[np.ndarray]:
        return [self.data.sequences[int(u)] for u in users]


def load_run(run_id: str, data_dir: str | None = None, reporter=None) -> LoadedRun:
    """Rebuild a FINISHED run's model from the store; `data_dir` overrides where its dataset lives."""
    from mlflow.exceptions import MlflowException

    from recbench.regimes import regime_for
    from recbench.reporting import Reporter
    from recbench.runner import DataMemo, build_stage, pick_device
    from recbench.tracking import Store

    store = Store()
    stored = store.find_run(run_id)
    if stored.status != "FINISHED" or stored.spec is None:
        raise CheckpointError(f"run {stored.run_id} is {stored.status}, not FINISHED: it has no checkpoint")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(store.client.download_artifacts(stored.run_id, CHECKPOINT_DIR, tmp))
            index = json.loads((folder / INDEX_FILE).read_text("utf-8"))
        except (MlflowException, OSError) as exc:
            raise CheckpointError(
                f"run {stored.run_id} ({stored.run_name}) has no checkpoint artifact ({exc}); runs made before "
                "checkpoints existed must be run again (`recbench run RECIPE --rerun --only NAME`)"
            ) from None
        spec = RunSpec.model_validate(stored.spec)
        if data_dir:
            spec = spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"data_dir": data_dir})})
        reporter = reporter or Reporter()
        try:
            prepared = DataMemo().prepare(spec, reporter)
        except DataError as exc:
            raise CheckpointError(
                f"the dataset of run {stored.run_id} cannot be loaded ({exc}); give its folder with --data-dir"
            ) from None
        data = prepared.data
        check_index(index, data)

        model, _ = build_stage(spec, prepared, reporter)
        regime_for(spec).adapt(model, loaded=True)  # e.g. adapters, before their weights load
        load_weights(model, folder / WEIGHTS_FILE)
    model = model.to(pick_device(spec.train.device)).eval()
    return LoadedRun(spec=spec, model=model, data=data, run_id=stored.run_id)


def check_index(index: dict, data: SequenceData) -> None:
    """The checkpoint's item rows must mean the same items as the loaded data's."""
    if index["dataset_fingerprint"] != data.fingerprint or index["item_ids"] != data.item_ids:
        raise CheckpointError(
            f"the checkpoint was trained on {index['dataset']} with fingerprint {index['dataset_fingerprint']}, "
            f"but the data loaded now is {data.name} with fingerprint {data.fingerprint} "
            f"({len(index['item_ids'])} vs {len(data.item_ids)} items): item rows would mean other items. "
            "Point --data-dir at the files the run was trained on."
        )


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Fill a freshly built model; every tensor must be there with its shape (no silent partial load)."""
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{path.name} does not fit the model its recipe builds: {exc}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path.name} does not fit the model its recipe builds: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )


@torch.no_grad()
def top_k(
    run: LoadedRun, users: np.ndarray, k: int, keep_history: bool = False, batch_size: int = 256
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(users, items (B, K) item indices, scores (B, K)) per batch: the next items after each user's whole
    sequence; history excluded unless `keep_history`; padding (index 0) never returned."""
    score = run.model.scorer()
    tensors = itertools.chain(run.model.parameters(), run.model.buffers())
    device = next((t.device for t in tensors), torch.device("cpu"))
    n_items = run.data.num_items
    k = min(k, n_items)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        histories = run.histories(batch)
        inputs = pad_left(histories, run.spec.train.max_len).to(device)  # (B, L)
        scores = score(inputs).float().clone()  # (B, N + 1)
        if not torch.isfinite(scores).all():
            raise CheckpointError("the model produced non-finite scores; it cannot rank")
        scores[:, 0] = -torch.inf  # padding is never an item
        if not keep_history:
            rows = torch.repeat_interleave(
                torch.arange(len(batch)), torch.tensor([len(h) for h in histories])
            )
            cols = torch.from_numpy(np.concatenate(histories)) if len(histories) else torch.zeros(0)
            scores[rows, cols.long()] = -torch.inf
        best = scores.topk(k, dim=1)  # (B, K) highest first; ties by lower index
        items, values = best.indices.cpu().numpy(), best.values.cpu().numpy()
        yield batch, items, values


def user_index(run: LoadedRun, raw_user: str) -> int:
    try:
        return run.data.user_ids.index(str(raw_user))
    except ValueError:
        near = [u for u in run.data.user_ids if u.startswith(str(raw_user))][:5]
        hint = f" (ids starting so: {', '.join(near)})" if near else ""
        raise CheckpointError(
            f"user '{raw_user}' is not in {run.data.name} as run {run.run_id} loaded it "
            f"({run.data.num_users} users){hint}"
        ) from None


def recommendations_frame(
    run: LoadedRun, users: np.ndarray, k: int, keep_history: bool = False
) -> pl.DataFrame:
    """One row per (user, rank): raw user id, rank 1..K, raw item id, score; items only where finite."""
    parts = []
    for batch, items, values in top_k(run, users, k, keep_history):
        ok = np.isfinite(values)  # a user with fewer than K unseen items gets fewer rows
        b, r = np.nonzero(ok)
        parts.append(
            pl.DataFrame(
                {
                    "user_id": [run.data.user_ids[int(batch[i])] for i in b],
                    "rank": (r + 1).astype(np.int32),
                    "item_id": [run.data.item_ids[int(items[i, j]) - 1] for i, j in zip(b, r)],
                    "score": values[b, r].astype(np.float32),
                }
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={"user_id": pl.Utf8, "rank": pl.Int32, "item_id": pl.Utf8, "score": pl.Float32}
        )
    return pl.concat(parts)


def export(run: LoadedRun, output: Path, k: int, keep_history: bool = False) -> tuple[int, float]:
    """Top-K for every user of the run's dataset into a parquet file (written atomically): (rows, seconds)."""
    t0 = time.perf_counter()
    frame = recommendations_frame(run, np.arange(run.data.num_users), k, keep_history)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    frame.write_parquet(tmp)
    tmp.replace(output)
    return frame.height, time.perf_counter() - t0
