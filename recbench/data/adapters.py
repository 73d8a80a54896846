"""The adapter registry: a mirror's `format` -> the function that reads its files into canonical frames.

An adapter is ``load(folder, options, bad_lines) -> RawData``. Adding a format means one function here;
adding a dataset in a known format needs only a data card.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from recbench.data.readers import BadLines
from recbench.data.schema import DataError, RawData

Adapter = Callable[[Path, dict, BadLines], RawData]

ADAPTERS: dict[str, str] = {
    "grouplens-100k": "recbench.data.movielens:load_100k",
    "grouplens-1m": "recbench.data.movielens:load_1m",
    "recbole-atomic": "recbench.data.recbole:load",
}


def get_adapter(fmt: str) -> Adapter:
    if fmt not in ADAPTERS:
        raise DataError(f"unknown data format '{fmt}'; known formats: {', '.join(sorted(ADAPTERS))}")
    module, func = ADAPTERS[fmt].split(":")
    return getattr(importlib.import_module(module), func)
