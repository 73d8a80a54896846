"""Shipped recipes and cards found from any folder: recipe names, `recbench recipes`, the unknown-card error,
and `recbench data list` / `data stats` in 80 columns. Every test runs in an empty temporary folder (conftest)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from recbench.cli import app, cards_table
from recbench.data.cards import SHIPPED_CARDS, all_cards, get_card
from recbench.data.schema import DataError
from recbench.shipped import RecipeNotFound, find_recipe, recipe_summary, shipped_dir, shipped_recipes

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
NARROW = {"COLUMNS": "80"}


def test_the_package_folders_are_the_repository_folders():
    """In a checkout the package reads data_cards/ and recipes/ themselves, so a new file is shipped as is."""
    assert shipped_dir("data_cards") == SHIPPED_CARDS == (REPO / "data_cards").resolve()
    assert shipped_dir("recipes") == (REPO / "recipes").resolve()
    assert set(shipped_recipes()) == {p.stem for p in (REPO / "recipes").glob("*.yaml")}
    assert "smoke" in shipped_recipes() and "morec_vs_idrec" in shipped_recipes()


def test_a_name_resolves_to_the_shipped_recipe_and_a_file_always_wins():
    shipped = shipped_recipes()["smoke"]
    assert find_recipe("smoke") == shipped
    assert find_recipe("smoke.yaml") == shipped
    assert find_recipe("recipes/smoke.yaml") == shipped  # the README's form, from outside a checkout
    Path("smoke").write_text("name: mine\n")
    assert find_recipe("smoke") == Path("smoke")  # a file of that name in the current folder wins


def test_an_unknown_recipe_names_the_shipped_ones_and_the_nearest():
    with pytest.raises(RecipeNotFound) as exc:
        find_recipe("smok")
    message = str(exc.value)
    assert "recipe file not found: smok" in message and str(Path.cwd()) in message
    assert "Did you mean 'smoke'?" in message and "morec_vs_idrec" in message
    with pytest.raises(RecipeNotFound, match="not the name of a shipped recipe"):
        find_recipe("elsewhere/smoke.yaml")  # a path in another folder is a file, never a name
    Path("folder").mkdir()
    with pytest.raises(RecipeNotFound, match="is a folder"):
        find_recipe("folder")


def test_every_shipped_recipe_has_a_one_sentence_summary():
    for name, path in shipped_recipes().items():
        summary = recipe_summary(path)
        assert summary and summary[-1] in ".?!" and "\n" not in summary, name
        assert not summary.startswith("recbench"), name  # the command line is not the description


def test_recipe_summary_stops_at_the_command_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("# What it compares: A vs B. More prose.\n#   recbench run r.yaml\nname: r\n")
    assert recipe_summary(path) == "What it compares: A vs B."
    path.write_text("name: r\n")
    assert recipe_summary(path) == ""


def test_validate_and_dry_run_take_a_shipped_name():
    result = runner.invoke(app, ["validate", "smoke"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok  smoke  (1 run)  (shipped: ") and "smoke.yaml" in result.output
    result = runner.invoke(app, ["run", "smoke", "--dry-run"])
    assert result.exit_code == 0 and "movielens-100k/leave_one_out/id/sasrec/seed0" in result.output
    result = runner.invoke(app, ["run", "smok", "--dry-run"])
    assert result.exit_code == 2 and "Did you mean 'smoke'?" in result.output
    assert "Traceback" not in result.output


def test_recipes_lists_shows_and_copies():
    result = runner.invoke(app, ["recipes"], env=NARROW)
    assert result.exit_code == 0
    for name in shipped_recipes():
        assert name in result.output
    assert "Smoke test" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80

    text = shipped_recipes()["smoke"].read_text()
    result = runner.invoke(app, ["recipes", "show", "smoke"])
    assert result.exit_code == 0 and result.output == text
    result = runner.invoke(app, ["recipes", "show", "nope"])
    assert result.exit_code == 2 and "Shipped recipes:" in result.output

    result = runner.invoke(app, ["recipes", "copy", "smoke"])
    assert result.exit_code == 0 and Path("smoke.yaml").read_text() == text
    assert runner.invoke(app, ["validate", "smoke.yaml"]).exit_code == 0  # the copy is a valid recipe

    Path("smoke.yaml").write_text("my edits\n")
    result = runner.invoke(app, ["recipes", "copy", "smoke"])
    assert result.exit_code == 2 and "already exists" in result.output and "--force" in result.output
    assert Path("smoke.yaml").read_text() == "my edits\n"  # never overwritten silently
    result = runner.invoke(app, ["recipes", "copy", "smoke", "--force"])
    assert result.exit_code == 0 and Path("smoke.yaml").read_text() == text

    Path("mine").mkdir()
    assert runner.invoke(app, ["recipes", "copy", "smoke", "mine"]).exit_code == 0
    assert Path("mine/smoke.yaml").read_text() == text
    assert runner.invoke(app, ["recipes", "copy", "smoke", "mine/other.yaml"]).exit_code == 0
    result = runner.invoke(app, ["recipes", "copy", "smoke", "absent/x.yaml"])
    assert result.exit_code == 2 and "absent does not exist" in result.output


def test_unknown_card_names_where_it_looked_and_the_nearest(monkeypatch, tmp_path):
    with pytest.raises(DataError) as exc:
        get_card("movielens-100")
    message = str(exc.value)
    assert str(SHIPPED_CARDS) in message and "RECBENCH_CARDS (not set" in message
    assert "'movielens-100k'" in message
    monkeypatch.setenv("RECBENCH_CARDS", str(tmp_path / "absent"))
    with pytest.raises(DataError) as exc:
        get_card("qqqqqq")
    message = str(exc.value)
    assert f"RECBENCH_CARDS ({tmp_path / 'absent'}: not a folder)" in message
    assert "Known cards:" in message and "movielens-100k" in message  # nothing near: every name


def test_recbench_cards_adds_a_users_own_card(monkeypatch, tmp_path):
    own = tmp_path / "cards"
    own.mkdir()
    card = (
        (SHIPPED_CARDS / "movielens-100k.md").read_text().replace("name: movielens-100k", "name: my-movies")
    )
    (own / "my-movies.md").write_text(card)
    monkeypatch.setenv("RECBENCH_CARDS", str(own))
    assert get_card("my-movies").path == str(own / "my-movies.md")
    assert "movielens-100k" in all_cards()  # the shipped cards stay


def test_data_list_fits_80_columns_one_line_per_card():
    cards = all_cards()
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(cards_table(cards.values()))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert not any("…" in line for line in lines)
    rows = {
        line.split()[0]: line
        for line in lines
        if line.split() and line.split()[0] in {c.display_name for c in cards.values()}
    }
    assert set(rows) == {c.display_name for c in cards.values()}  # every card, its name whole on its line
    assert "100k, 4.9 MB" in rows["movielens-100k"]  # expected interactions, then the download size
    assert "333k" in rows["microlens-50k"] and "local files" in rows["microlens-50k"]
    assert rows["movielens-1m"].split()[-2] == "1.0M"

    result = runner.invoke(app, ["data", "list"], env=NARROW)
    assert result.exit_code == 0
    assert max(len(line) for line in result.output.splitlines()) <= 80 and "…" not in result.output


def test_data_stats_shows_a_long_folder_whole(monkeypatch):
    import recbench.data.stats as stats_module

    folder = "/a/very/long/folder/" + "x" * 120 + "/MicroLens-50k_covers"
    fake = {"dataset": "microlens-50k", "users": 3, "images_folder": folder, "expected": {"users": 3}}
    monkeypatch.setattr(stats_module, "dataset_statistics", lambda name, data_dir=None: dict(fake))
    result = runner.invoke(app, ["data", "stats", "microlens-50k"], env=NARROW)
    assert result.exit_code == 0 and "…" not in result.output
    value_cells = [line.split("│")[2].strip() for line in result.output.splitlines() if line.count("│") >= 3]
    assert folder in "".join(value_cells)
