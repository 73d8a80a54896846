"""Peak memory of one run.

`getrusage` only knows the peak of the whole process, so in a grid every run after the largest one would
report the largest one's peak. On Linux the peak resident set size (VmHWM) can be reset (writing 5 to
/proc/self/clear_refs), which makes the figure per run: the peak between the start of the run and its end,
including what the process already held (interpreter, libraries, cached data). Elsewhere the process peak
is reported, and `per_run` says which one it is.
"""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window; False where the OS does not allow it (then the process peak is used)."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory (MiB) since the last successful reset, else since the process started."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
