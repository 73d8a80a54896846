"""What ships inside the package: the data cards and the recipes, found from any working directory.

Both live at the top of the repository (``data_cards/``, ``recipes/``) and are linked into the package as
``recbench/data_cards`` and ``recbench/recipes`` (pyproject.toml says why), so a wheel carries them and a
checkout reads them as they are edited. Code that needs them asks here, through ``importlib.resources``,
never through a path relative to the current directory: that is what makes ``recbench data list`` and
``recbench run smoke`` work after a plain ``pip install``, from any folder.

A shipped recipe is named by its file stem (``recipes/smoke.yaml`` is ``smoke``); a file that exists always
wins over a shipped name.
"""

from __future__ import annotations

import difflib
import re
from importlib.resources import files
from pathlib import Path

from recbench.config import RecipeError

RECIPE_SUFFIXES = (".yaml", ".yml")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[A-Z(`])")


class RecipeNotFound(RecipeError):
    """Neither a recipe file nor a shipped recipe name; the message lists the shipped names."""


def shipped_dir(name: str) -> Path:
    """The package folder `name` (``data_cards`` or ``recipes``), resolved to the real files.

    Resolving the link makes card paths in messages point at ``data_cards/NAME.md`` in a checkout, the file
    people edit. Where the link is not a folder (a checkout made without symlink support, where git writes
    the link as a one-line text file), the repository's top-level folder is used instead."""
    packaged = files("recbench") / name
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged.resolve()
    return Path(__file__).resolve().parents[1] / name


def shipped_recipes() -> dict[str, Path]:
    """Shipped recipe name (file stem) -> file, sorted by name."""
    folder = shipped_dir("recipes")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.suffix in RECIPE_SUFFIXES and path.is_file():
            found.setdefault(path.stem, path)
    return found


def _shipped_name(given: Path) -> str:
    """The shipped name a missing path may mean: `smoke`, `smoke.yaml` or `recipes/smoke.yaml` (the form the
    README uses, run from outside a checkout) all mean `smoke`; any other folder means a file, not a name."""
    if str(given.parent) not in (".", "recipes"):
        return ""
    return given.stem if given.suffix in RECIPE_SUFFIXES else given.name


def find_recipe(given: str | Path) -> Path:
    """The recipe file `given` names: the file itself when it exists, else the shipped recipe of that name.

    Raises :class:`RecipeNotFound` naming the shipped recipes and the nearest ones."""
    path = Path(given)
    if path.is_file():
        return path
    if path.exists():
        raise RecipeNotFound(f"{given} is a folder, not a recipe file")
    where = "" if path.is_absolute() else f" (looked in {Path.cwd()})"
    return shipped_recipe(str(given), f"recipe file not found: {given}{where}, and it is not")


def shipped_recipe(name: str, problem: str = "") -> Path:
    """The shipped recipe `name` (`smoke`, `smoke.yaml`, `recipes/smoke.yaml`); else :class:`RecipeNotFound`
    whose message starts with `problem` and names the shipped recipes and the nearest ones."""
    recipes = shipped_recipes()
    key = _shipped_name(Path(name))
    if key in recipes:
        return recipes[key]
    near = difflib.get_close_matches(key or Path(name).stem, list(recipes), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    shipped = (
        ", ".join(recipes) or f"none (the folder {shipped_dir('recipes')} is missing: reinstall recbench)"
    )
    raise RecipeNotFound(
        f"{problem or f'{name!r} is not'} the name of a shipped recipe.{hint} Shipped recipes: {shipped}. "
        "`recbench recipes` says what each one compares."
    )


def recipe_summary(path: Path) -> str:
    """The first sentence of the comment a recipe opens with (every shipped recipe says there what it
    compares), for `recbench recipes`; empty when the file opens with no comment."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line[1:]
        if text.startswith("   ") or not text.strip():  # an indented command line ends the prose
            break
        lines.append(text.strip())
    prose = " ".join(lines)
    return _SENTENCE_END.split(prose, maxsplit=1)[0] if prose else ""
