"""Who owns a RUNNING run, whether its owner is still alive, and the process-level pieces around that.

Several `recbench run` processes (or a Ray driver and another process) may share one MLflow store. Three
problems follow, and this module holds the parts of their fixes that do not talk to MLflow
(:mod:`recbench.tracking` does that):

- **A fresh sqlite store created twice.** MLflow creates the schema of an empty sqlite database on first use,
  with no lock: two processes doing it at once crash, and one interrupted migration left a store that no
  longer opens (``table _alembic_tmp_tags already exists``). :func:`store_lock` serialises that first use
  with a lock file beside the database (``mlflow.db.lock``), through the ``filelock`` package (already a
  dependency of torch, ray and huggingface) rather than a home-made ``fcntl`` wrapper.
- **A run killed by SIGTERM or SIGKILL stays RUNNING for ever.** SIGTERM becomes :class:`Terminated`, a
  BaseException like KeyboardInterrupt, so the tracker marks the run FAILED with the reason on the way out.
  SIGKILL cannot be caught: every run records its owner (host, pid, the pid's start time, a heartbeat), and
  :func:`owner_state` tells a later process whether that owner is gone, so the run is marked FAILED and redone.
- **Two processes training the same run at once.** The owner tags are also the claim: a RUNNING run whose
  owner is alive is being trained; another process skips it (:mod:`recbench.tracking` ``Tracker.run``).

Liveness of an owner: on the same host, the pid must exist with the same start time (a recycled pid is
another process); on another host, where no pid can be checked, its heartbeat (a tag rewritten every
``HEARTBEAT_S`` seconds by a daemon thread) must be younger than ``STALE_S``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TAG_HOST = "recbench.owner.host"
TAG_PID = "recbench.owner.pid"
TAG_PID_START = "recbench.owner.pid_start"  # the pid's start time in clock ticks since boot (/proc)
TAG_HEARTBEAT = "recbench.owner.heartbeat"  # unix seconds, rewritten while the run trains

HEARTBEAT_S = 60.0
STALE_S = float(os.environ.get("RECBENCH_STALE_S", 600))  # no heartbeat for this long: the owner is gone


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so nothing swallows it on the way to the
    tracker, which marks the current run FAILED with this message as the reason."""


_sigterm_installed = False
_shield_depth = 0  # main thread: inside this many store calls, where a SIGTERM waits for the call to end
_pending = False  # a SIGTERM arrived during a store call


def _on_sigterm(signum, frame) -> None:
    global _pending
    # only the first one counts: a second SIGTERM must not interrupt the FAILED bookkeeping of the first
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _shield_depth:
        _pending = True
        return
    raise Terminated(TERMINATED)


TERMINATED = "SIGTERM received: the process was asked to stop"


@contextmanager
def shield(deliver: bool = True) -> Iterator[None]:
    """A store call that SIGTERM must not cut in two. Raised inside a sqlite write, the exception left
    the transaction's lock held by this process, and marking the run FAILED then waited on that lock until
    sqlite gave up ('database is locked', seen in tests/test_concurrency.py). The signal is delivered when
    the outermost shielded call returns (not with `deliver=False`: the FAILED bookkeeping itself finishes
    first, and the pending signal comes at the next store call)."""
    global _shield_depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _shield_depth += 1
    try:
        yield
    finally:
        _shield_depth -= 1
    if deliver and _shield_depth == 0 and _pending:
        _pending = False
        raise Terminated(TERMINATED)


def install_sigterm_handler() -> None:
    """SIGTERM -> :class:`Terminated` in the main thread (a no-op elsewhere: Python allows handlers only
    there). Called by the CLI, not on import: a library must not take over its host's signals."""
    global _sigterm_installed
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_installed = True


def reinstall_sigterm_handler() -> None:
    """Put recbench's handler back after a library replaced it (``ray.init`` installs its own)."""
    if _sigterm_installed:
        install_sigterm_handler()


# --------------------------------------------------------------------------------------------- store lock


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores and in-memory sqlite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextmanager
def store_lock(uri: str, timeout_s: float = 300.0) -> Iterator[None]:
    """Exclusive lock on a sqlite store's creation (no-op for a server or another database, which create
    their schema once, themselves). Held only while a client opens the store and finds its experiment."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        raise RuntimeError(
            f"could not lock {path}.lock within {timeout_s:.0f} s: another process holds it; if none is "
            "running, delete the lock file"
        ) from None
    try:
        yield
    finally:
        lock.release()


# --------------------------------------------------------------------------------------------- owners


def _pid_start(pid: int) -> str | None:
    """The start time of a process (field 22 of /proc/PID/stat), None where /proc does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after the command name, which may hold spaces


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def owner_tags() -> dict[str, str]:
    """The tags that say this process owns a run."""
    pid = os.getpid()
    return {
        TAG_HOST: socket.gethostname(),
        TAG_PID: str(pid),
        TAG_PID_START: _pid_start(pid) or "",
        TAG_HEARTBEAT: f"{time.time():.0f}",
    }


@dataclass(frozen=True)
class OwnerState:
    alive: bool | None  # None: the run names no owner (made by an older recbench): nothing can be said
    why: str


def owner_state(tags: dict[str, str], run_id: str = "", now: float | None = None) -> OwnerState:
    """Is the process that owns a RUNNING run (by its tags) still alive?"""
    host, pid = tags.get(TAG_HOST), tags.get(TAG_PID)
    if not host or not pid or not pid.isdigit():
        return OwnerState(None, "no owner recorded")
    owner = f"process {pid} on {host}"
    if host == socket.gethostname():
        if int(pid) == os.getpid():
            # this very process: only the runs it still holds are running (not one it left RUNNING earlier)
            if run_id in HEARTBEAT.owned():
                return OwnerState(True, f"{owner} (this process) is training it")
            return OwnerState(False, f"{owner} (this process) no longer holds it")
        started = tags.get(TAG_PID_START) or None
        if not _pid_exists(int(pid)):
            return OwnerState(False, f"{owner} is gone")
        if started and _pid_start(int(pid)) not in (None, started):
            return OwnerState(False, f"{owner} is gone (the pid now belongs to another process)")
        return OwnerState(True, f"{owner} is alive")
    try:
        beat = float(tags.get(TAG_HEARTBEAT, ""))
    except ValueError:
        return OwnerState(None, f"{owner}: no readable heartbeat")
    age = (time.time() if now is None else now) - beat
    if age > STALE_S:
        return OwnerState(False, f"{owner} sent no heartbeat for {age:.0f} s (limit {STALE_S:.0f} s)")
    return OwnerState(True, f"{owner} sent a heartbeat {age:.0f} s ago")


class Heartbeat:
    """A daemon thread that rewrites the heartbeat tag of every run this process owns, so a process on
    another host can tell a live owner from a dead one. One per process; writes nothing while it owns no
    run."""

    def __init__(self, interval_s: float = HEARTBEAT_S):
        self.interval_s = interval_s
        self._runs: dict[str, Callable[[str, str, str], None]] = {}  # run id -> set_tag(run_id, key, value)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, run_id: str, set_tag: Callable[[str, str, str], None]) -> None:
        with self._lock:
            self._runs[run_id] = set_tag
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="recbench-heartbeat", daemon=True)
                self._thread.start()

    def discard(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def owned(self) -> set[str]:
        with self._lock:
            return set(self._runs)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval_s)
            with self._lock:
                runs = list(self._runs.items())
            for run_id, set_tag in runs:
                try:
                    set_tag(run_id, TAG_HEARTBEAT, f"{time.time():.0f}")
                except Exception:  # noqa: BLE001 - a missed beat is retried next time; training goes on
                    pass


HEARTBEAT = Heartbeat()
