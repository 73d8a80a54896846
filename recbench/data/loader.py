"""Dataset section -> processed :class:`SequenceData`, cached as parquet keyed by the dataset fingerprint.

The fingerprint covers the card's name, the format and adapter options, the digests of the files read, and
the resolved preprocessing: change any of them and the data is processed again (and results are not ranked
against results on the old data).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import polars as pl

from recbench.config import DatasetSection, fingerprint
from recbench.data.adapters import get_adapter
from recbench.data.cards import DataCard, get_card
from recbench.data.content import image_folder
from recbench.data.download import Notify, Progress, Resolved, file_digest, recbench_home, resolve
from recbench.data.preprocess import Preprocessing, preprocess
from recbench.data.readers import BadLines, locate
from recbench.data.schema import SequenceData

# bump when preprocessing changes what a fingerprint means (2: bad values are bad lines, not nulls)
PROCESSING_VERSION = 2


def resolve_preprocessing(section: DatasetSection, card: DataCard) -> Preprocessing:
    """Recipe value if set, else the card's default, else the global default."""
    defaults = Preprocessing()
    chosen = {}
    for key in ("min_rating", "user_core", "item_core", "dedup", "ties"):
        value = getattr(section, key)
        chosen[key] = value if value is not None else card.preprocess.get(key, getattr(defaults, key))
    return Preprocessing(**chosen, max_users=section.max_users)


def files_digest(resolved: Resolved) -> dict[str, str]:
    """sha256 of every file the adapter reads; a folder (and a declared images folder): its listing."""
    out = {}
    for name in sorted(resolved.mirror.files):
        path = locate(resolved.folder, name)
        if path is None:
            continue
        if path.is_dir():
            out[name] = _listing(path)
        else:
            out[name] = _cached_digest(path)
    images = resolved.mirror.options.get("images")
    if images:
        folder = image_folder(resolved.folder, images)
        out["images:" + str(folder.relative_to(resolved.folder))] = (
            _listing(folder) if folder.is_dir() else "absent"
        )
    return out


def _listing(folder: Path) -> str:
    return fingerprint(
        sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    )


def local_mismatches(resolved: Resolved, digests: dict[str, str]) -> list[str]:
    """Files of a local folder whose sha256 differs from the one the card pins (warned, and recorded)."""
    return [
        name
        for name, sha in resolved.mirror.files.items()
        if sha and name in digests and digests[name] != sha and (resolved.folder / name).is_file()
    ]


def _cached_digest(path: Path) -> str:
    """sha256, memoised on (path, size, mtime) so big files are hashed once."""
    stat = path.stat()
    memo_path = recbench_home() / "digests.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text("utf-8"))
    except (OSError, ValueError):
        memo = {}
    if key not in memo:
        memo[key] = file_digest(path)
        _atomic_write(memo_path, json.dumps(memo))
    return memo[key]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def load_dataset(
    section: DatasetSection,
    progress: Progress | None = None,
    use_cache: bool = True,
    notify: Notify | None = None,
) -> SequenceData:
    card = get_card(section.name)
    resolved = resolve(card, section.data_dir, progress, notify)
    prep = resolve_preprocessing(section, card)
    digests = files_digest(resolved)
    fp = fingerprint(
        {
            "card": card.name,
            "format": resolved.mirror.format,
            "options": resolved.mirror.options,
            "files": digests,
            "preprocessing": prep.as_dict(),
            "version": PROCESSING_VERSION,
        }
    )
    mismatched = local_mismatches(resolved, digests) if resolved.source == "local" else []
    if mismatched:
        warnings.warn(
            f"{card.name}: {', '.join(mismatched)} in {resolved.folder} differ from the sha256 the card pins; "
            "the numbers will not be comparable with the card's expected statistics",
            stacklevel=2,
        )
    cache = (
        recbench_home() / "processed" / f"{card.slug}-{fp}-{fingerprint(str(resolved.folder.resolve()))[:8]}"
    )
    if use_cache and (cache / "meta.json").is_file():
        return _read_cache(cache)
    bad = BadLines(card.on_bad_line)
    raw = get_adapter(resolved.mirror.format)(resolved.folder, dict(resolved.mirror.options), bad)
    raw.presplit = raw.presplit or card.presplit
    data = preprocess(raw, prep, card.name, fp)
    data.stats.update(raw.notes)
    data.stats["source"] = resolved.source
    data.stats["format"] = resolved.mirror.format
    if mismatched:
        data.stats["local_files_differing_from_card"] = ", ".join(mismatched)
    if resolved.mirror.checksum == "unpinned" and resolved.source != "local":
        data.stats["checksum"] = (
            "unpinned: the publisher gives none; the fingerprint carries the files' sha256"
        )
    if use_cache:
        _write_cache(cache, data)
    return data


def _write_cache(cache: Path, data: SequenceData) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".tmp-"))
    try:
        seq = {"items": [s.tolist() for s in data.sequences]}
        if data.timestamps is not None:
            seq["timestamps"] = [t.tolist() for t in data.timestamps]
        pl.DataFrame(seq).write_parquet(tmp / "sequences.parquet")
        data.items.write_parquet(tmp / "items.parquet")
        meta = {
            "name": data.name,
            "user_ids": data.user_ids,
            "item_ids": data.item_ids,
            "fingerprint": data.fingerprint,
            "stats": data.stats,
            "presplit": data.presplit,
        }
        (tmp / "meta.json").write_text(json.dumps(meta), "utf-8")  # written last: marks the cache complete
        if cache.exists():
            shutil.rmtree(cache)
        os.replace(tmp, cache)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _read_cache(cache: Path) -> SequenceData:
    meta = json.loads((cache / "meta.json").read_text("utf-8"))
    seq = pl.read_parquet(cache / "sequences.parquet")
    sequences = [np.asarray(s, dtype=np.int64) for s in seq["items"].to_list()]
    timestamps = None
    if "timestamps" in seq.columns:
        timestamps = [np.asarray(t, dtype=np.float64) for t in seq["timestamps"].to_list()]
    return SequenceData(
        name=meta["name"],
        user_ids=meta["user_ids"],
        item_ids=meta["item_ids"],
        sequences=sequences,
        items=pl.read_parquet(cache / "items.parquet"),
        fingerprint=meta["fingerprint"],
        stats=meta["stats"],
        presplit=meta["presplit"],
        timestamps=timestamps,
    )
