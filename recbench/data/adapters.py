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
    "grouplens-1m-partial": "recbench.data.movielens:load_1m_partial",
    "recbole-atomic": "recbench.data.recbole:load",
    "amazon-2014": "recbench.data.amazon:load_2014",
    "amazon-2018": "recbench.data.amazon:load_2018",
    "amazon-2023": "recbench.data.amazon:load_2023",
    "unisrec": "recbench.data.unisrec:load",
    "ninerec": "recbench.data.ninerec:load",
    "s3rec": "recbench.data.s3rec:load",
    "lcrec-json": "recbench.data.lcrec:load",
}


def get_adapter(fmt: str) -> Adapter:
    if fmt not in ADAPTERS:
        import difflib

        near = difflib.get_close_matches(fmt, list(ADAPTERS), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise DataError(f"unknown data format '{fmt}'.{hint} Known formats: {', '.join(sorted(ADAPTERS))}")
    module, func = ADAPTERS[fmt].split(":")
    return getattr(importlib.import_module(module), func)
