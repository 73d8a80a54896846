"""The downloader against a server started here on 127.0.0.1 (with HTTP Range support): good file, dead first
mirror then a good one, checksum mismatch, resume of a partial download, unpinned mirrors, multi-file
mirrors, the hub mirror through `datasets` (offline, on a local file), and archives that try to escape."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
import warnings
import zipfile
from pathlib import Path

import pytest

from recbench.config import DatasetSection
from recbench.data import download
from recbench.data.cards import DataCard, Mirror, Part
from recbench.data.download import (
    ChecksumError,
    UnpinnedDownloadWarning,
    dataset_dir,
    download_url,
    recbench_home,
    resolve,
    safe_extract,
)
from recbench.data.loader import load_dataset
from recbench.data.schema import DataError

U_DATA = "".join(f"{u}\t{i}\t4\t{1000 + 10 * u + i}\n" for u in range(1, 4) for i in range(1, 6))
U_ITEM = "".join(
    f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 18 + ["1"]) + "\n" for i in range(1, 6)
)


def zip_bytes(entries: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)
    return buf.getvalue()


ML_ZIP = zip_bytes({"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM, "ml-100k/README": "tiny"})
ML_SHA = hashlib.sha256(ML_ZIP).hexdigest()


class Server:
    """Serves `files` (path -> bytes); honours `Range: bytes=N-` unless `ranges` is False; logs requests."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.ranges = True
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's spelling
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and outer.ranges:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def dead_url() -> str:
    """A local port nobody listens on: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/ml-100k.zip"


def ml_card(*mirrors: Mirror) -> DataCard:
    return DataCard(
        name="tiny-ml",
        title="tiny",
        domain="test",
        licence="test",
        mirrors=list(mirrors),
        text_template="{title}",
        expected={"users": 3, "items": 5, "interactions": 15},
    )


def ml_mirror(url: str, sha256: str = ML_SHA, **kw) -> Mirror:
    return Mirror(
        format="grouplens-100k",
        url=url,
        sha256=sha256,
        root="ml-100k",
        files={"u.data": None, "u.item": None},
        **kw,
    )


def test_good_file_is_downloaded_verified_and_loaded(server):
    server.files["/ml-100k.zip"] = ML_ZIP
    card = ml_card(ml_mirror(server.url + "/ml-100k.zip"))
    resolved = resolve(card)
    assert resolved.source == server.url + "/ml-100k.zip"
    assert (resolved.folder / "u.data").read_text() == U_DATA
    marker = json.loads((resolved.folder / "COMPLETE").read_text())
    assert marker["format"] == "grouplens-100k" and marker["checksum"] == "pinned"
    again = resolve(card)  # from the cache: no new request
    assert again.source == "cache" and len(server.requests) == 1


def test_dead_first_mirror_then_good_second(server):
    server.files["/ml-100k.zip"] = ML_ZIP
    dead = dead_url()
    card = ml_card(ml_mirror(dead), ml_mirror(server.url + "/ml-100k.zip"))
    heard: list[str] = []
    resolved = resolve(card, notify=heard.append)
    assert resolved.source.startswith(server.url)
    assert (resolved.folder / "u.item").is_file()
    # the user hears why the first mirror was skipped, then where the data came from
    assert len(heard) == 2
    assert heard[0].startswith(f"mirror failed: {dead}")
    assert heard[1].startswith(f"fetched {card.name} from {server.url}")


def test_all_mirrors_failing_names_each_one_and_suggests_a_local_folder():
    card = ml_card(ml_mirror(dead_url()))
    with pytest.raises(DataError) as info:
        resolve(card)
    message = str(info.value)
    assert "cannot connect" in message and "--data-dir" in message


def test_checksum_mismatch_is_an_error_and_the_bad_file_is_deleted(server):
    server.files["/bad.zip"] = ML_ZIP[:-10] + b"corrupted!"
    server.files["/ml-100k.zip"] = ML_ZIP
    bad = ml_mirror(server.url + "/bad.zip")
    with pytest.raises(DataError, match="sha256 mismatch"):
        resolve(ml_card(bad))
    downloads = recbench_home() / "downloads"
    assert not any(p.name.endswith("bad.zip") for p in downloads.iterdir())  # deleted, never kept
    assert not (dataset_dir(ml_card(bad), bad) / "COMPLETE").exists()  # never used
    # with a good second mirror, the second is used
    resolved = resolve(ml_card(bad, ml_mirror(server.url + "/ml-100k.zip")))
    assert resolved.source.endswith("/ml-100k.zip")
    assert not any(p.name.endswith("bad.zip") for p in downloads.iterdir())


def test_resume_of_a_partial_download_uses_a_range_request(server, tmp_path):
    server.files["/ml-100k.zip"] = ML_ZIP
    dest = tmp_path / "ml-100k.zip"
    part = dest.with_name(dest.name + ".part")
    half = len(ML_ZIP) // 2
    part.write_bytes(ML_ZIP[:half])  # an interrupted attempt
    seen = []
    download_url(server.url + "/ml-100k.zip", dest, progress=lambda done, total: seen.append((done, total)))
    assert server.requests == [("/ml-100k.zip", f"bytes={half}-")]
    assert dest.read_bytes() == ML_ZIP and not part.exists()
    assert seen[-1] == (len(ML_ZIP), len(ML_ZIP))


def test_resume_when_the_server_ignores_range_starts_over(server, tmp_path):
    server.files["/ml-100k.zip"] = ML_ZIP
    server.ranges = False
    dest = tmp_path / "ml-100k.zip"
    dest.with_name(dest.name + ".part").write_bytes(b"garbage from another file")
    download_url(server.url + "/ml-100k.zip", dest)
    assert dest.read_bytes() == ML_ZIP


def test_resume_through_resolve_keeps_the_partial_bytes(server):
    server.files["/ml-100k.zip"] = ML_ZIP
    mirror = ml_mirror(server.url + "/ml-100k.zip")
    downloads = recbench_home() / "downloads"
    downloads.mkdir(parents=True)
    (downloads / f"{ML_SHA[:16]}-ml-100k.zip.part").write_bytes(ML_ZIP[:300])
    resolve(ml_card(mirror))
    assert server.requests == [("/ml-100k.zip", "bytes=300-")]


def test_unpinned_mirror_warns_with_the_sha256_and_can_be_refused(server, monkeypatch):
    server.files["/r.json"] = b'{"reviewerID": "U1", "asin": "A", "overall": 5, "unixReviewTime": 1}\n'
    server.files["/m.json"] = b'{"asin": "A", "title": "T"}\n'
    mirror = Mirror(
        format="amazon-2018",
        checksum="unpinned",
        note="the publisher gives no checksum",
        parts=[Part(url=server.url + "/r.json"), Part(url=server.url + "/m.json")],
        files={"r.json": None, "m.json": None},
        options={"reviews": "r.json", "meta": "m.json"},
    )
    card = DataCard(name="tiny-amazon", title="t", domain="t", licence="t", mirrors=[mirror])
    monkeypatch.setenv("RECBENCH_REQUIRE_PINNED", "1")
    with pytest.raises(DataError, match="RECBENCH_REQUIRE_PINNED"):
        resolve(card)
    assert server.requests == []  # refused before any download
    monkeypatch.delenv("RECBENCH_REQUIRE_PINNED")
    with pytest.warns(UnpinnedDownloadWarning) as record:
        resolved = resolve(card)
    messages = " ".join(str(w.message) for w in record)
    for name in ("/r.json", "/m.json"):
        assert hashlib.sha256(server.files[name]).hexdigest() in messages
    marker = json.loads((resolved.folder / "COMPLETE").read_text())
    assert marker["unpinned_sha256"]["r.json"] == hashlib.sha256(server.files["/r.json"]).hexdigest()
    assert sorted(p.name for p in resolved.folder.iterdir()) == ["COMPLETE", "m.json", "r.json"]  # both parts


def test_a_downloaded_mirror_needs_a_checksum_or_an_explained_unpinned():
    with pytest.raises(ValueError, match="checksum: unpinned"):
        Mirror(format="amazon-2018", url="http://x/y.json.gz")
    with pytest.raises(ValueError, match="needs a `note`"):
        Mirror(format="amazon-2018", url="http://x/y.json.gz", checksum="unpinned")
    with pytest.raises(ValueError, match="every part needs a sha256"):
        Mirror(format="amazon-2018", parts=[Part(url="http://x/a"), Part(url="http://x/b", sha256="0" * 64)])
    with pytest.raises(ValueError, match="exactly one of"):
        Mirror(format="amazon-2018", url="http://x/a", sha256="0" * 64, pip="recbole==1.2.1")


def test_hub_mirror_reads_through_datasets_offline(tmp_path, monkeypatch):
    """The hub transport with `hub_url` pointed at local files: the real `datasets` text builder runs."""
    src = tmp_path / "hub"
    src.mkdir()
    reviews = [
        {"user_id": f"U{u}", "parent_asin": f"P{i}", "rating": 5.0, "timestamp": 1000 * (u * 10 + i)}
        for u in range(3)
        for i in range(3)
    ]
    (src / "Toys.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    (src / "meta_Toys.jsonl").write_text(
        "".join(json.dumps({"parent_asin": f"P{i}", "title": f"Toy {i}"}) + "\n" for i in range(3))
    )
    monkeypatch.setattr(download, "hub_url", lambda repo, path, revision: str(src / Path(path).name))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    mirror = Mirror(
        format="amazon-2023",
        hub="McAuley-Lab/Amazon-Reviews-2023",
        checksum="unpinned",
        note="no revision pinned",
        hub_files={
            "Toys.jsonl": "raw/review_categories/Toys.jsonl",
            "meta_Toys.jsonl": "raw/meta_categories/meta_Toys.jsonl",
        },
        files={"Toys.jsonl": None, "meta_Toys.jsonl": None},
        options={"reviews": "Toys.jsonl.gz", "meta": "meta_Toys.jsonl.gz"},
    )
    card = DataCard(name="tiny-hub", title="t", domain="t", licence="t", mirrors=[mirror])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnpinnedDownloadWarning)
        resolved = resolve(card)
    assert resolved.source == "hub:McAuley-Lab/Amazon-Reviews-2023"
    assert (resolved.folder / "Toys.jsonl").read_text() == (src / "Toys.jsonl").read_text()
    from recbench.data.adapters import get_adapter
    from recbench.data.readers import BadLines

    raw = get_adapter("amazon-2023")(resolved.folder, dict(mirror.options), BadLines())
    assert raw.interactions.height == 9 and raw.items["title"].to_list() == ["Toy 0", "Toy 1", "Toy 2"]


# --------------------------------------------------------------------------------------------- archives


def test_zip_entry_escaping_the_cache_folder_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"ok.txt": "fine", "../../escaped.txt": "gotcha"}))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match="would extract outside the cache folder"):
        safe_extract(archive, dest, "zip")
    assert not (tmp_path / "escaped.txt").exists() and not list(dest.iterdir())  # nothing extracted at all


@pytest.mark.parametrize("name", ["/etc/recbench-evil", "a/../../evil", "C:/evil"])
def test_tar_entries_escaping_or_absolute_are_refused(tmp_path, name):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        data = b"gotcha"
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match="refused"):
        safe_extract(archive, dest, "tar")


def test_tar_links_are_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("data/passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match="is a link; refused"):
        safe_extract(archive, dest, "tar")


def test_a_downloaded_archive_that_escapes_never_reaches_the_cache(server):
    evil = zip_bytes({"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM, "ml-100k/../../../evil": "x"})
    server.files["/evil.zip"] = evil
    mirror = ml_mirror(server.url + "/evil.zip", sha256=hashlib.sha256(evil).hexdigest())
    with pytest.raises(DataError, match="outside the cache folder"):
        resolve(ml_card(mirror))
    assert not (dataset_dir(ml_card(mirror), mirror) / "COMPLETE").exists()
    assert not (recbench_home().parent / "evil").exists()


def test_download_then_load_end_to_end(server, monkeypatch, tmp_path):
    """A card in RECBENCH_CARDS whose mirror is the local server: load_dataset downloads, verifies, loads."""
    server.files["/ml-100k.zip"] = ML_ZIP
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tiny-ml.md").write_text(
        "---\nname: tiny-ml\ntitle: t\ndomain: t\nlicence: t\nmirrors:\n"
        f"  - {{format: grouplens-100k, url: '{server.url}/ml-100k.zip', sha256: {ML_SHA}, root: ml-100k, "
        "files: {u.data: null, u.item: null}}\ntext_template: '{title}'\n---\n"
    )
    monkeypatch.setenv("RECBENCH_CARDS", str(cards))
    data = load_dataset(DatasetSection(name="tiny-ml"))
    assert (data.num_users, data.num_items, data.num_interactions) == (3, 5, 15)
    assert data.stats["source"].endswith("/ml-100k.zip")
    with pytest.raises(ChecksumError):
        download.verify(recbench_home() / "downloads" / f"{ML_SHA[:16]}-ml-100k.zip", sha256="0" * 64)
