"""Data cards: every shipped card validates and is honest about checksums; parameterised cards; the `data`
CLI commands through typer's runner on a tiny test card."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbench.cli import app
from recbench.data.cards import REPO_CARDS, DataCard, all_cards, get_card, parse_card
from recbench.data.schema import DataError

SHIPPED = sorted(p for p in REPO_CARDS.glob("*.md") if p.name.lower() != "readme.md")
# Item-table columns each adapter produces (text templates may only use these).
FORMAT_FIELDS = {
    "grouplens-100k": {"title", "year", "genres"},
    "grouplens-1m": {"title", "year", "genres"},
    "grouplens-1m-partial": {"title", "year", "genres"},
    "amazon-2014": {"title", "brand", "categories", "description"},
    "amazon-2018": {"title", "brand", "categories", "description"},
    "amazon-2023": {"title", "brand", "categories", "description"},
    "unisrec": {"text"},
}


def test_shipped_cards_exist():
    names = {p.stem for p in SHIPPED}
    for required in (
        "movielens-100k",
        "movielens-1m",
        "amazon-2023",
        "unisrec-scientific",
        "microlens-50k",
        *(
            f"amazon-2018-{c}"
            for c in ("beauty", "sports", "toys", "scientific", "instruments", "arts", "office")
        ),
        *(f"amazon-2014-{c}" for c in ("beauty", "sports", "toys", "instruments", "office")),
    ):
        assert required in names, required


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_card_validates(path: Path):
    card = parse_card(path)
    assert card.name == path.stem  # file name = card name
    assert card.licence.strip() and card.prose.strip()
    cards = [card] if card.parameter is None else [card.specialise(v) for v in card.parameter.choices]
    for c in cards:
        for mirror in c.mirrors:
            if mirror.kind in ("url", "parts", "pip"):
                for part in mirror.downloads:
                    assert part.url.startswith(("https://", "http://")) or mirror.kind == "pip"
                    pinned = bool(part.sha256 or part.md5) if mirror.kind != "pip" else bool(mirror.sha256)
                    assert pinned or mirror.checksum == "unpinned", f"{c.name}: {part.url} unpinned silently"
            if mirror.checksum == "unpinned":
                assert mirror.note.strip()  # says why
                assert "unpinned" in c.prose.lower() or "no checksum" in c.prose.lower() or c.parameter_value
            if mirror.format in FORMAT_FIELDS and c.text_template:
                fields = {f for _, f, _, _ in string.Formatter().parse(c.text_template) if f}
                assert fields <= FORMAT_FIELDS[mirror.format], (c.name, fields)
            assert "{" + (card.parameter.name if card.parameter else "\0") + "}" not in json.dumps(
                mirror.model_dump()
            )
        for value in c.expected.model_dump().values():
            assert value is None or value > 0


def test_all_cards_load_by_name():
    cards = all_cards()
    assert set(cards) >= {p.stem for p in SHIPPED}
    assert cards["unisrec-scientific"].presplit


def test_checksums_are_never_invented():
    """Where a card pins a checksum it is well formed; unpinned mirrors say so."""
    for path in SHIPPED:
        card = parse_card(path)
        for mirror in card.mirrors:
            for digest in [mirror.sha256, *[p.sha256 for p in mirror.parts], *mirror.files.values()]:
                assert digest is None or (len(digest) == 64 and all(c in "0123456789abcdef" for c in digest))
            for digest in [mirror.md5, *[p.md5 for p in mirror.parts]]:
                assert digest is None or len(digest) == 32


def test_parameterised_card():
    card = get_card("amazon-2023:Video_Games")
    assert card.name == "amazon-2023:Video_Games" and card.slug == "amazon-2023--video_games"
    assert "Video_Games" in card.title
    urls = [p.url for m in card.mirrors for p in m.parts]
    assert all("{category}" not in u and "Video_Games" in u for u in urls)
    assert card.mirrors[-1].hub_files == {
        "Video_Games.jsonl": "raw/review_categories/Video_Games.jsonl",
        "meta_Video_Games.jsonl": "raw/meta_categories/meta_Video_Games.jsonl",
    }
    with pytest.raises(DataError, match="takes a category: use 'amazon-2023:"):
        get_card("amazon-2023")
    with pytest.raises(DataError, match="Did you mean 'Video_Games'"):
        get_card("amazon-2023:Video_Gams")
    with pytest.raises(DataError, match="takes no parameter"):
        get_card("movielens-100k:x")
    with pytest.raises(DataError, match="Did you mean 'movielens-100k'"):
        get_card("movielens-10k")


def _card(**kw) -> dict:
    base = dict(
        name="t-1", title="t", domain="t", licence="t", mirrors=[{"format": "ninerec", "files": {"a": None}}]
    )
    return {**base, **kw}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mirrors": [{"format": "amazon-2019"}]}, "did you mean 'amazon-2018'"),
        ({"mirrors": [{"format": "amazon-2018", "url": "https://x/y.gz"}]}, "checksum: unpinned"),
        ({"presplit": True, "preprocess": {"dedup": "first"}}, "presplit card"),
        ({"preprocess": {"kcore": 5}}, "unknown keys"),
        ({"name": "Amazon_Beauty"}, "kebab-case"),
        ({"parameter": {"name": "category", "choices": ["A"]}}, "never used as {category}"),
    ],
)
def test_invalid_cards_say_what_is_wrong(change, message):
    with pytest.raises(ValueError, match=message):
        DataCard.model_validate(_card(**change))


def test_parse_card_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("---\nname: bad\ntitle: t\ndomain: t\nlicence: t\nmirrors: []\n---\n")
    with pytest.raises(DataError, match=r"bad\.md: invalid data card: mirrors"):
        parse_card(bad)
    (tmp_path / "v.md").write_text("---\nname: v\nparameter_value: X\n---\n")
    with pytest.raises(DataError, match="parameter_value is set by NAME:VALUE"):
        parse_card(tmp_path / "v.md")


# --------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def tiny_card(tmp_path, monkeypatch):
    """A NineRec-style folder and its card, with one malformed line the card says to skip."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    lines = [f"u{u}\t{i}\t{10 * u + k}" for u in range(4) for k, i in enumerate([1, 2, 3, 4][u % 2 :])]
    (folder / "pairs.tsv").write_text("\n".join(lines + ["broken line"]) + "\n")
    (folder / "items.tsv").write_text("".join(f"{i}\tItem {i}\n" for i in range(1, 5)))
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tiny-nine.md").write_text(
        "---\nname: tiny-nine\ntitle: Tiny\ndomain: test\nlicence: test\nmodalities: [id, text]\nmirrors:\n"
        "  - format: ninerec\n    files: {pairs.tsv: null, items.tsv: null}\n"
        "    options:\n      interactions: {file: pairs.tsv, sep: tab, columns: [user_id, item_id, timestamp]}\n"
        "      items: {file: items.tsv, sep: tab, columns: [item_id, title]}\n"
        "text_template: '{title}'\non_bad_line: skip\npreprocess: {dedup: first}\n"
        "expected: {users: 4, items: 4, interactions: 14}\n---\n# Tiny\nA test card.\n"
    )
    monkeypatch.setenv("RECBENCH_CARDS", str(cards))
    return folder


def test_cli_data_list_card_and_stats(tiny_card):
    runner = CliRunner()
    listed = runner.invoke(app, ["data", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "tiny-nine" in listed.output and "amazon-2023:<category>" in listed.output
    assert "local files" in listed.output  # unisrec-scientific has no download

    card = runner.invoke(app, ["data", "card", "amazon-2023"])
    assert card.exit_code == 0 and "parameter:" in card.output
    assert runner.invoke(app, ["data", "card", "amazon-2023:Books"]).exit_code == 0
    unknown = runner.invoke(app, ["data", "card", "movielens-10k"])
    assert unknown.exit_code == 2 and "movielens-100k" in unknown.output

    stats = runner.invoke(app, ["data", "stats", "tiny-nine", "--data-dir", str(tiny_card), "--json"])
    assert stats.exit_code == 0, stats.output
    result = json.loads(stats.stdout)
    assert (result["users"], result["items"], result["interactions"]) == (4, 4, 14)
    assert result["matches_card"] and result["bad_lines_skipped[pairs.tsv]"] == 1
    assert result["items_with_text"] == 4 and result["timestamp_ties"] == 0
    assert result["users with 3-4 items"] == 4
    for split in ("leave_one_out", "cold_item"):
        assert f"{split}: test targets never in training" in result
    assert any(key.startswith("temporal:") for key in result)  # counted, or "not applicable" with the reason
    table = runner.invoke(
        app, ["data", "stats", "tiny-nine", "--data-dir", str(tiny_card)], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0 and "matches the card" in table.output

    fetched = runner.invoke(app, ["data", "fetch", "tiny-nine", "--data-dir", str(tiny_card)])
    assert fetched.exit_code == 0 and "4 users, 4 items, 14 interactions" in fetched.output
    missing = runner.invoke(app, ["data", "stats", "tiny-nine", "--data-dir", str(tiny_card / "nope")])
    assert missing.exit_code == 1 and "is not a folder" in missing.output
