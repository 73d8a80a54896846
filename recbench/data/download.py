"""Getting a dataset's files: a local folder, or mirrors tried in order, verified, resumable, never interactive.

Layout under ``$RECBENCH_HOME`` (default ``~/.cache/recbench``)::

    downloads/<sha-or-name>.part   an interrupted download (resumed with an HTTP Range request)
    datasets/<card>/<format>/      the extracted, verified files, with a COMPLETE marker written last

A file whose checksum does not match is deleted and never used; the next mirror is tried. Archives are
extracted into a temporary folder first, refusing any entry that would land outside it, and moved into place
only when every pinned file verifies: nothing half-written is ever read.

A mirror marked ``checksum: unpinned`` (the publisher gives no checksum) is downloaded with a loud
:class:`UnpinnedDownloadWarning` that prints the sha256 of what arrived (recorded in the COMPLETE marker, and
part of the dataset fingerprint through the file digests); ``RECBENCH_REQUIRE_PINNED=1`` refuses such
mirrors instead. A hub mirror is read with the `datasets` library (``text`` builder, one record per line, so
the adapter sees the same JSON lines as from the official files and applies the same bad-line policy).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recbench.data.cards import DataCard, Mirror, Part
from recbench.data.readers import locate
from recbench.data.schema import DataError

Progress = Callable[[int, int | None], None]  # (bytes done, total or None)
Notify = Callable[[str], None]  # one line for the user: a mirror failed, a download finished
CHUNK = 1 << 20


def recbench_home() -> Path:
    return Path(os.environ.get("RECBENCH_HOME") or Path.home() / ".cache" / "recbench").expanduser()


@dataclass
class Resolved:
    """Where a dataset's files are and which mirror (format) they follow."""

    folder: Path
    mirror: Mirror
    source: str  # "local", "cache" or the mirror it was downloaded from


class ChecksumError(DataError):
    pass


class UnpinnedDownloadWarning(UserWarning):
    """A file was downloaded from a mirror whose publisher gives no checksum: nothing verified it."""


def require_pinned() -> bool:
    return os.environ.get("RECBENCH_REQUIRE_PINNED", "").strip().lower() in ("1", "true", "yes")


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, sha256: str | None = None, md5: str | None = None) -> None:
    """Raise ChecksumError (naming both digests) when `path` does not match."""
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want:
            got = file_digest(path, algo)
            if got.lower() != want.lower():
                raise ChecksumError(f"{path.name}: {algo} mismatch (expected {want}, got {got})")


# --------------------------------------------------------------------------------------------- resolve


def resolve(
    card: DataCard,
    data_dir: str | Path | None = None,
    progress: Progress | None = None,
    notify: Notify | None = None,
) -> Resolved:
    """A local folder when given (always accepted), else the verified cache, else a download."""
    if data_dir is not None:
        return _resolve_local(card, Path(data_dir).expanduser())
    for mirror in card.mirrors:
        target = dataset_dir(card, mirror)
        if (target / "COMPLETE").is_file():
            return Resolved(target, mirror, "cache")
    return fetch(card, progress, notify)


def dataset_dir(card: DataCard, mirror: Mirror) -> Path:
    return recbench_home() / "datasets" / card.slug / mirror.format


def is_cached(card: DataCard) -> bool:
    return any((dataset_dir(card, m) / "COMPLETE").is_file() for m in card.mirrors)


def _resolve_local(card: DataCard, folder: Path) -> Resolved:
    if not folder.is_dir():
        raise DataError(f"data_dir {folder} is not a folder")
    tried = []
    for mirror in card.mirrors:
        for base in (folder / mirror.root, folder) if mirror.root else (folder,):
            if mirror.files and all(locate(base, f) is not None for f in mirror.files):
                return Resolved(base, mirror, "local")
        tried.append(f"{mirror.format}: {', '.join(mirror.files) or '(no file list)'}")
    hint = f"\n(Where people usually get them: {card.local_hint})" if card.local_hint else ""
    raise DataError(
        f"{folder} does not hold the files of any format of '{card.name}'. Expected one of:\n  "
        + "\n  ".join(tried)
        + hint
    )


def fetch(card: DataCard, progress: Progress | None = None, notify: Notify | None = None) -> Resolved:
    """Try every downloadable mirror in order; the error names each one tried and why it failed.

    ``notify`` hears, one line each, every mirror that failed before the one that worked, so a user sees why
    the data came from a package registry rather than the publisher."""
    failures = []
    say = notify or (lambda _line: None)
    for mirror in card.mirrors:
        if mirror.kind == "local":
            failures.append(f"{mirror.format}: local files only (no download source)")
            continue
        try:
            folder = _fetch_mirror(card, mirror, progress)
        except (
            OSError,
            DataError,
            subprocess.SubprocessError,
            zipfile.BadZipFile,
            tarfile.TarError,
            http.client.HTTPException,
            EOFError,  # a truncated .gz
            zlib.error,  # corrupt compressed data inside an archive
        ) as exc:
            failures.append(f"{mirror.where}: {exc}")
            say(f"mirror failed: {failures[-1]}")
            continue
        say(f"fetched {card.name} from {mirror.where} into {folder}")
        return Resolved(folder, mirror, mirror.where)
    hint = card.local_hint or "a folder holding the dataset's files"
    raise DataError(
        f"could not fetch '{card.name}'. Mirrors tried, in order:\n  - "
        + "\n  - ".join(failures)
        + f"\nIf you have the files ({hint}), pass their folder instead: `--data-dir DIR` (recbench run, "
        "data fetch, data stats) or `dataset.data_dir: DIR` in the recipe."
    )


def _fetch_mirror(card: DataCard, mirror: Mirror, progress: Progress | None) -> Path:
    target = dataset_dir(card, mirror)
    downloads = recbench_home() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    if mirror.checksum == "unpinned" and require_pinned():
        raise ChecksumError(
            "the publisher gives no checksum for this mirror (checksum: unpinned) and RECBENCH_REQUIRE_PINNED "
            "is set; unset it to accept an unverified download, or pass a local folder"
        )
    unpinned: dict[str, str] = {}
    if mirror.kind in ("url", "parts"):
        fetched = [
            (download_part(part, downloads, progress, unpinned), part.archive) for part in mirror.downloads
        ]
    elif mirror.kind == "pip":
        archive = pip_download(mirror.pip, downloads)
        _check(archive, mirror.sha256, mirror.md5, unpinned)
        fetched = [(archive, mirror.archive)]
    elif mirror.kind == "hub":
        fetched = []
    else:
        raise DataError(f"mirror kind {mirror.kind} is read from a local folder, not downloaded")
    _install(fetched, mirror, target, unpinned)
    return target


def download_part(part: Part, downloads: Path, progress: Progress | None, unpinned: dict[str, str]) -> Path:
    """Download one file (resuming) and verify it; a mismatching file is deleted and never used."""
    name = part.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "download"
    key = part.sha256 or part.md5 or "u" + hashlib.sha256(part.url.encode()).hexdigest()
    path = downloads / f"{key[:16]}-{name}"
    if not path.is_file():
        download_url(part.url, path, progress)
    _check(path, part.sha256, part.md5, unpinned)
    return path


def _check(path: Path, sha256: str | None, md5: str | None, unpinned: dict[str, str]) -> None:
    if sha256 or md5:
        try:
            verify(path, sha256, md5)
        except ChecksumError:
            path.unlink(missing_ok=True)  # never used, never kept
            raise
        return
    digest = file_digest(path)
    unpinned[_original_name(path)] = digest
    warnings.warn(
        UnpinnedDownloadWarning(
            f"{_original_name(path)}: the publisher gives no checksum, so nothing verified this download. "
            f"Its sha256 is {digest}; compare it with a colleague's copy and pin it in the data card. "
            "(RECBENCH_REQUIRE_PINNED=1 refuses unpinned downloads.)"
        ),
        stacklevel=2,
    )


def _install(fetched: list[tuple[Path, str]], mirror: Mirror, target: Path, unpinned: dict[str, str]) -> None:
    """Extract into a temporary folder, verify pinned files, then move into place with a COMPLETE marker."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".extract-") as tmp:
        out = Path(tmp) / "x"
        out.mkdir()
        for archive, declared in fetched:
            kind = archive_kind(archive, declared)
            if kind == "none":  # kept as downloaded: a hard link (no second copy of a big file), else a copy
                dest = _inside(out, _original_name(archive))
                try:
                    os.link(archive, dest)
                except OSError:
                    shutil.copy2(archive, dest)
            else:
                safe_extract(archive, out, kind, member_root=mirror.root)
        if mirror.kind == "hub":
            hub_download(mirror, out, unpinned)
        root = out / mirror.root if mirror.root else out
        for name, sha in mirror.files.items():
            found = locate(root, name)
            if found is None:
                raise DataError(
                    f"{', '.join(_original_name(a) for a, _ in fetched) or mirror.where} has no "
                    f"{Path(mirror.root) / name}"
                )
            if sha and found.name == Path(name).name:
                verify(found, sha)
        marker = {
            "mirror": mirror.where,
            "format": mirror.format,
            "archives": [_original_name(a) for a, _ in fetched],
            "checksum": mirror.checksum,
            "unpinned_sha256": unpinned,
        }
        (root / "COMPLETE").write_text(json.dumps(marker, indent=1), "utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(root, target)


def hub_url(repo: str, path: str, revision: str | None) -> str:
    """The `hf://` address of one file of a hub dataset repo (at a commit, when pinned)."""
    return f"hf://datasets/{repo}{'@' + revision if revision else ''}/{path}"


def hub_download(mirror: Mirror, out: Path, unpinned: dict[str, str]) -> None:
    """Each `hub_files` entry read through `datasets` (text builder: one record a line) into `out/<name>`."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - a declared dependency
        raise DataError("the `datasets` package is needed for hub mirrors: pip install datasets") from None
    for name, path in mirror.hub_files.items():
        url = hub_url(mirror.hub, path, mirror.revision)
        try:
            lines = datasets.load_dataset("text", data_files=url, split="train", streaming=True)
            dest = _inside(out, name)
            with open(dest, "w", encoding="utf-8", newline="\n") as fh:
                for record in lines:
                    fh.write(record["text"] + "\n")
        except DataError:
            raise
        except Exception as exc:  # the datasets/hub stack raises many kinds; name the file and move on
            raise DataError(f"hub file {url}: {type(exc).__name__}: {exc}") from None
        if mirror.checksum == "unpinned" or not mirror.revision:
            _check(dest, None, None, unpinned)


def _original_name(archive: Path) -> str:
    """Downloads are stored as `<16-char key>-<name>`; wheels (and anything else) keep their own name."""
    head, sep, rest = archive.name.partition("-")
    keyed = sep and re.fullmatch(r"[0-9a-fu][0-9a-f]{15}", head) and archive.suffix != ".whl"
    return rest if keyed else archive.name


# --------------------------------------------------------------------------------------------- transports


def download_url(url: str, dest: Path, progress: Progress | None = None, timeout: float = 30.0) -> None:
    """Download to `dest`, resuming a `dest.part` left by an interrupted attempt (HTTP Range).

    Whatever the server does wrong (a refused connection, an HTTP error, an answer that is not HTTP at all, a
    broken Content-Length, a connection cut mid-body) is a DataError naming the problem, so the caller tries
    the next mirror instead of stopping with a traceback."""
    part = dest.with_name(dest.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "recbench"})
    if done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URLs come from data cards
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # the .part is already complete
            os.replace(part, dest)
            return
        raise DataError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DataError(f"cannot connect ({exc.reason})") from None
    except http.client.HTTPException as exc:  # BadStatusLine, LineTooLong, RemoteDisconnected, ...
        raise DataError(
            f"the server did not answer in HTTP ({type(exc).__name__} {ascii(str(exc))[:80]})"
        ) from None
    except ValueError as exc:  # e.g. an unknown URL scheme
        raise DataError(f"cannot download {url!r}: {exc}") from None
    with response:
        status = getattr(response, "status", 200)
        if done and status != 206:  # server ignored the Range: start over
            done = 0
        length = response.headers.get("Content-Length")
        if length is not None and not length.strip().isdigit():
            raise DataError(f"the server sent an invalid Content-Length ({length!r:.50})")
        total = done + int(length) if length is not None else None
        with open(part, "ab" if done else "wb") as fh:
            while True:
                try:
                    block = response.read(CHUNK)
                except http.client.HTTPException as exc:  # IncompleteRead: the connection was cut
                    raise DataError(
                        f"download of {url} broke off after {done} bytes ({type(exc).__name__}); run again "
                        "to resume"
                    ) from None
                if not block:
                    break
                fh.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    if total is not None and done != total:
        raise DataError(f"download of {url} stopped at {done} of {total} bytes (run again to resume)")
    os.replace(part, dest)


def pip_download(requirement: str, dest: Path) -> Path:
    """`python -m pip download --no-deps --only-binary=:all: -- REQ` into a temporary folder -> the wheel."""
    if not requirement.strip() or requirement.strip().startswith("-"):
        raise DataError(f"pip mirror {requirement!r} is not a requirement (e.g. recbole==1.2.1); refused")
    with tempfile.TemporaryDirectory(dir=dest, prefix=".pip-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--no-input",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            "--",  # what follows is the requirement, never an option (a card cannot pass --index-url)
            requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
            raise DataError(f"pip download {requirement} failed: {last[0]}")
        final = dest / wheels[0].name
        shutil.move(str(wheels[0]), final)
        return final


# --------------------------------------------------------------------------------------------- archives


def archive_kind(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    name = path.name.lower()
    if name.endswith((".zip", ".whl")):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return "tar"
    if name.endswith(".gz"):
        return "gz"
    return "none"


def _inside(base: Path, name: str) -> Path:
    """The extraction path of archive entry `name`, refusing absolute paths and `..` escapes."""
    dest = (base / name).resolve()
    absolute = name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name)
    if absolute or (base.resolve() not in dest.parents and dest != base.resolve()):
        raise DataError(f"archive entry {name!r} would extract outside the cache folder; refused")
    return dest


_TAR_KINDS = {
    tarfile.FIFOTYPE: "a FIFO (named pipe)",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
}


def _extract_tar(archive: Path, dest: Path, prefix: str) -> None:
    """Only directories and regular files, written by us: never the archive's modes (no setuid bit, no
    world-writable file), owners or special files. A FIFO would make the checksum step block forever and a
    device or link could reach outside the cache, so any entry that is neither is refused, naming it."""
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if m.name.startswith(prefix)]
        for m in members:
            _inside(dest, m.name)
            if m.issym() or m.islnk():
                raise DataError(f"archive entry {m.name!r} is a link; refused")
            if not (m.isreg() or m.isdir()):
                what = _TAR_KINDS.get(m.type, f"of tar type {m.type!r}")
                raise DataError(f"archive entry {m.name!r} is {what}, not a regular file or folder; refused")
        for m in members:
            target = _inside(dest, m.name)
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tf.extractfile(m)
            if source is None:  # pragma: no cover - a regular member always has a file object
                raise DataError(f"archive entry {m.name!r} cannot be read")
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)


def safe_extract(archive: Path, dest: Path, kind: str, member_root: str = "") -> None:
    """Extract (only entries under `member_root` when given); entries escaping `dest` are refused."""
    prefix = member_root.strip("/") + "/" if member_root else ""
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if m.filename.startswith(prefix)]
            for m in members:
                _inside(dest, m.filename)
            for m in members:
                zf.extract(m, dest)
    elif kind == "tar":
        _extract_tar(archive, dest, prefix)
    elif kind == "gz":
        import gzip

        out = _inside(dest, _original_name(archive)[: -len(".gz")])
        with gzip.open(archive, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        raise DataError(f"unknown archive kind {kind!r}")
