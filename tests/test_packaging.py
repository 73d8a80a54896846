"""A plain (non-editable) install carries every data card and recipe, and finds them from any folder.

Builds the wheel from a copy of the project (offline: no build isolation, no index), checks that every file
of data_cards/ and recipes/ is inside it, installs it into a bare folder and runs the CLI from an empty
directory with only that folder on the path (the editable install must not be what gets imported). About
10-20 s: the wheel build, and `validate` importing torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "--quiet"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the project (links kept as links), installed with --target."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("recbench", "data_cards", "recipes"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=ignore)
    _pip("wheel", "--no-build-isolation", "--wheel-dir", str(root / "dist"), str(src), cwd=root)
    (wheel,) = (root / "dist").glob("recbench-*.whl")
    _pip("install", "--target", str(root / "site"), str(wheel), cwd=root)
    return wheel


def _shipped_files() -> dict[str, list[str]]:
    return {
        "data_cards": sorted(p.name for p in (REPO / "data_cards").glob("*.md")),
        "recipes": sorted(p.name for p in (REPO / "recipes").iterdir() if p.suffix in (".yaml", ".yml")),
    }


def test_the_wheel_holds_every_card_and_recipe(installed):
    names = set(zipfile.ZipFile(installed).namelist())
    shipped = _shipped_files()
    assert len(shipped["data_cards"]) > 10 and "smoke.yaml" in shipped["recipes"]
    for folder, files in shipped.items():
        for name in files:
            packaged = f"recbench/{folder}/{name}"
            assert packaged in names, f"{packaged} is missing from {installed.name}"
            with zipfile.ZipFile(installed) as whl:  # the file's content, not a copy of the link
                assert whl.read(packaged) == (REPO / folder / name).read_bytes()


def _recbench(installed: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    site = installed.parents[1] / "site"
    code = "import sys, recbench; print('IMPORTED', recbench.__file__); from recbench.cli import app; app()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(site), "COLUMNS": "80", "OMP_NUM_THREADS": "1"},
    )


def test_the_installed_package_finds_its_cards_and_recipes_from_another_folder(installed, tmp_path):
    site = installed.parents[1] / "site"
    listed = _recbench(installed, tmp_path, "data", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"IMPORTED {site}/recbench/__init__.py" in listed.stdout  # not the editable checkout
    for card in _shipped_files()["data_cards"]:
        if card.lower() != "readme.md":
            assert Path(card).stem in listed.stdout, card

    recipes = _recbench(installed, tmp_path, "recipes")
    assert recipes.returncode == 0, recipes.stderr
    for recipe in _shipped_files()["recipes"]:
        assert Path(recipe).stem in recipes.stdout, recipe

    validated = _recbench(installed, tmp_path, "validate", "smoke")
    assert validated.returncode == 0, validated.stderr
    assert f"ok  smoke  (1 run)  (shipped: {site}/recbench/recipes/smoke.yaml)" in validated.stdout

    unknown = _recbench(installed, tmp_path, "data", "card", "movielens-100")
    assert unknown.returncode == 2 and f"{site}/recbench/data_cards" in unknown.stderr
    assert "'movielens-100k'" in unknown.stderr and "Traceback" not in unknown.stderr
