"""Data cards: a dataset is data, not code.

A card is a Markdown file in ``data_cards/`` whose YAML front matter says where the files come from (mirrors
tried in order, each with a checksum and the adapter that reads its format), the licence, the item-text
template, how malformed lines are treated, the preprocessing defaults and the statistics a correct load must
reproduce. The prose below the front matter is for people (`recbench data card NAME` prints it).
"""

from __future__ import annotations

import difflib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recbench.data.schema import DataError

REPO_CARDS = Path(__file__).resolve().parents[2] / "data_cards"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mirror(_Strict):
    """One place the dataset can come from, in one format."""

    format: str = Field(description="Adapter that reads this mirror's files (see recbench.data.adapters).")
    url: str | None = Field(None, description="http(s):// or file:// URL of the file to download.")
    pip: str | None = Field(
        None, description="A requirement fetched with `pip download --no-deps` (a wheel)."
    )
    hub: str | None = Field(None, description="A Hugging Face datasets id (read through `datasets`).")
    sha256: str | None = Field(None, description="sha256 of the downloaded file.")
    md5: str | None = Field(
        None, description="md5 of the downloaded file, where the publisher gives only md5."
    )
    archive: Literal["auto", "zip", "tar", "gz", "none"] = "auto"
    root: str = Field("", description="Folder inside the archive (or wheel) that holds the files.")
    files: dict[str, str | None] = Field(
        default_factory=dict, description="Files the adapter reads -> sha256 (null: not pinned)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Adapter options (columns, separators)."
    )
    note: str = ""

    @model_validator(mode="after")
    def _one_source(self):
        sources = [s for s in (self.url, self.pip, self.hub) if s]
        if len(sources) > 1:
            raise ValueError("a mirror has exactly one of url, pip, hub (a local directory needs none)")
        if (self.url or self.pip) and not (self.sha256 or self.md5):
            raise ValueError(
                "a downloaded mirror needs a checksum (sha256, or md5 where only that is published)"
            )
        return self

    @property
    def kind(self) -> str:
        return "url" if self.url else "pip" if self.pip else "hub" if self.hub else "local"

    @property
    def where(self) -> str:
        return (
            self.url
            or (f"pip:{self.pip}" if self.pip else None)
            or (f"hub:{self.hub}" if self.hub else "local")
        )


class Expected(_Strict):
    """Statistics a correct load (with the card's default preprocessing) must reproduce."""

    users: int | None = None
    items: int | None = None
    interactions: int | None = None
    items_with_text: int | None = None
    items_with_image: int | None = None


class DataCard(_Strict):
    name: str = Field(description="kebab-case with version, e.g. movielens-100k")
    title: str
    domain: str
    modalities: list[Literal["id", "text", "image"]] = ["id"]
    licence: str
    homepage: str | None = None
    citation: str | None = None
    size: str | None = Field(None, description="Download size, for people.")
    mirrors: list[Mirror] = Field(min_length=1)
    text_template: str | None = Field(
        None, description="Item text, e.g. '{title} ({year}). Genres: {genres}'"
    )
    missing_text: Literal["empty", "error"] = Field(
        "empty", description="An item whose text fields are missing: empty text, or a clear error."
    )
    missing_image: Literal["blank", "error"] = Field(
        "blank", description="An item without an image: a blank image, or a clear error."
    )
    on_bad_line: Literal["error", "skip"] = "error"
    preprocess: dict[str, Any] = Field(default_factory=dict, description="Defaults for the dataset section.")
    presplit: bool = Field(False, description="The files fix a leave-one-out split that must be kept.")
    expected: Expected = Expected()
    local_hint: str | None = Field(None, description="Where people usually have these files.")
    prose: str = ""
    path: str = ""

    @model_validator(mode="after")
    def _preprocess_keys(self):
        allowed = {"min_rating", "user_core", "item_core", "dedup", "ties"}
        unknown = set(self.preprocess) - allowed
        if unknown:
            raise ValueError(f"preprocess has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        return self


def card_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("RECBENCH_CARDS", "").split(os.pathsep) if p]
    return extra + [REPO_CARDS]


def parse_card(path: Path) -> DataCard:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise DataError(f"{path}: a data card starts with YAML front matter between '---' lines")
    try:
        _, front, prose = text.split("---", 2)
    except ValueError:
        raise DataError(f"{path}: the front matter is not closed by a '---' line") from None
    try:
        meta = yaml.safe_load(front) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: front matter is not valid YAML: {exc}") from None
    try:
        return DataCard.model_validate({**meta, "prose": prose.strip(), "path": str(path)})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DataError(f"{path}: invalid data card: {problems}") from None


@lru_cache(maxsize=8)
def _load_all(dirs: tuple[Path, ...]) -> dict[str, DataCard]:
    cards: dict[str, DataCard] = {}
    for d in dirs:
        for path in sorted(d.glob("*.md")) if d.is_dir() else []:
            if path.name.lower() == "readme.md":
                continue
            card = parse_card(path)
            cards.setdefault(card.name, card)
    return cards


def all_cards() -> dict[str, DataCard]:
    return _load_all(tuple(card_dirs()))


def get_card(name: str) -> DataCard:
    cards = all_cards()
    if name in cards:
        return cards[name]
    near = difflib.get_close_matches(name, list(cards), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    raise DataError(f"no data card named '{name}'.{hint} `recbench data list` shows them all.")
