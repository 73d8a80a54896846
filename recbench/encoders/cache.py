"""The on-disk cache of encoder outputs: plain tensors (safetensors), a checksum beside each file.

Frozen item vectors and the frozen lower layers' token states of `top_k` are expensive to compute and cheap to
store, so they live under ``recbench_home()/encoders``, one ``<key>.safetensors`` per key with a
``<key>.json`` sidecar that holds the file's size and sha256 and the human-readable key parts. A file whose
size or checksum disagrees with its sidecar (a crash mid-write, a truncated copy, a bit flip) is deleted and
rebuilt, never trusted. Never pickle: safetensors holds only tensors and string metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from recbench.data.download import recbench_home

FORMAT = 1  # bump when the layout of what is stored changes; old entries then simply miss


def cache_dir() -> Path:
    return recbench_home() / "encoders"


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 (24 hex digits) of the canonical JSON of everything the cached tensors depend on."""
    blob = json.dumps({"format": FORMAT, **parts}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def hash_strings(values: Iterable[str | None]) -> str:
    """sha256 of a list of strings (None distinct from ""), in order."""
    h = hashlib.sha256()
    for v in values:
        b = b"\x00" if v is None else b"\x01" + v.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def table_hash(items) -> str:
    """sha256 of an item table (a polars frame) as CSV: its rows, columns and order."""
    return hashlib.sha256(items.write_csv().encode("utf-8")).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class TensorCache:
    """`get(key)` -> tensors or None (missing or corrupt); `put(key, tensors, parts)` writes atomically."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder is not None else cache_dir()

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.safetensors", self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        data, meta = self.paths(key)
        if not data.is_file() and not meta.is_file():
            return None
        problem = self._check(data, meta)
        if problem is None:
            try:
                return load_file(data)
            except Exception as exc:  # a header that parses badly despite a matching checksum
                problem = f"unreadable ({exc})"
        warnings.warn(f"encoder cache {data.name} is {problem}: rebuilding it", stacklevel=2)
        self.drop(key)
        return None

    @staticmethod
    def _check(data: Path, meta: Path) -> str | None:
        if not data.is_file():
            return "missing its data file"
        if not meta.is_file():
            return "missing its checksum file"
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            size, digest = int(info["bytes"]), str(info["sha256"])
        except (ValueError, KeyError, TypeError):
            return "missing a readable checksum"
        if data.stat().st_size != size:
            return f"truncated or resized ({data.stat().st_size} bytes, expected {size})"
        if file_sha256(data) != digest:
            return "corrupt (sha256 mismatch)"
        return None

    def put(self, key: str, tensors: dict[str, torch.Tensor], parts: dict[str, Any]) -> Path:
        """Write data then sidecar, each through a temporary file and an atomic rename."""
        self.folder.mkdir(parents=True, exist_ok=True)
        data, meta = self.paths(key)
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"format": str(FORMAT)})
            info = {"bytes": os.path.getsize(tmp), "sha256": file_sha256(Path(tmp)), "key": parts}
            os.replace(tmp, data)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, **info}, f, indent=1, sort_keys=True, default=str)
        os.replace(tmp, meta)
        return data

    def drop(self, key: str) -> None:
        for path in self.paths(key):
            path.unlink(missing_ok=True)
