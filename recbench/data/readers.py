"""Line-level readers shared by the adapters, with one policy for malformed lines.

A card declares ``on_bad_line``: ``error`` (stop with the file and line number) or ``skip`` (drop the line and
count it; the count appears in ``recbench data stats``). Nothing is ever silently dropped. A line is bad when
it is malformed or when one of its numbers (a rating, a timestamp, an id the format declares numeric) does not
parse or is not finite: :func:`number` and :func:`integer_id` are how adapters read those, never a lenient cast
to null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from recbench.data.schema import DataError

T = TypeVar("T")


@dataclass
class BadLines:
    """Counts skipped lines per file (policy ``skip``) or raises on the first one (policy ``error``)."""

    policy: str = "error"
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.policy not in ("error", "skip"):
            raise ValueError(f"on_bad_line must be 'error' or 'skip', got {self.policy!r}")

    def bad(self, path: Path, line_no: int, why: str) -> None:
        if self.policy == "error":
            raise DataError(
                f"{path}, line {line_no}: {why}. Fix the file, or set `on_bad_line: skip` in the data card "
                "to skip and count such lines."
            )
        self.skipped[path.name] = self.skipped.get(path.name, 0) + 1
        self.examples.setdefault(path.name, f"line {line_no}: {why}")

    @property
    def total(self) -> int:
        return sum(self.skipped.values())

    def notes(self) -> dict:
        return {f"bad_lines_skipped[{k}]": v for k, v in self.skipped.items()}


def number(value, name: str) -> float:
    """`value` (a text field, or a JSON number) as a finite float; a ValueError naming `name` and the value.

    Why one helper: casting a column with ``strict=False`` turns ``five`` or ``yesterday`` into null, and a null
    (or NaN) timestamp sorts last, so it silently becomes the user's held-out test item. Adapters call this
    inside the function given to :func:`parse_lines` (or catch the ValueError and call :meth:`BadLines.bad`),
    so a bad number is a bad line under the card's ``on_bad_line`` policy, like a malformed line."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{name} is {value!r}, not a number")
    text = value.strip() if isinstance(value, str) else value
    if text == "":
        raise ValueError(f"{name} is empty, expected a number")
    try:
        out = float(text)
    except (ValueError, OverflowError):
        raise ValueError(f"{name} is {value!r}, not a number") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} is {value!r}, not a finite number")
    return out


def integer_id(value: str, name: str) -> str:
    """A numeric id field (non-negative integer text), stripped; a ValueError naming `name` and the value.

    For formats whose ids are documented as integers (GroupLens, UniSRec indices): ``61x`` would otherwise be a
    new, unrelated id rather than an error."""
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{name} is {value!r}, expected an integer")
    return text


def iter_lines(path: Path, encoding: str = "utf-8", skip_header: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, line without its CR/LF); blank lines are skipped. CRLF and LF both work."""
    if not path.is_file():
        raise DataError(f"missing file {path}")
    opener = _opener(path)
    no = 0
    try:
        with opener(path, "rt", encoding=encoding, newline="") as fh:
            for no, line in enumerate(fh, start=1):
                if skip_header and no == 1:
                    continue
                line = line.rstrip("\r\n")
                if line.strip():
                    yield no, line
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}, line {no + 1}: not valid {encoding} ({exc.reason}); declare the file's encoding in the "
            "data card's options"
        ) from None
    except (EOFError, OSError) as exc:  # truncated or corrupt .gz
        raise DataError(f"{path}, after line {no}: cannot be read ({exc}); download it again") from None


def _opener(path: Path) -> Callable:
    if path.suffix == ".gz":
        import gzip

        return gzip.open
    return open


def parse_lines(
    path: Path,
    parse: Callable[[str], T],
    bad: BadLines,
    encoding: str = "utf-8",
    skip_header: bool = False,
) -> Iterator[T]:
    """Apply `parse` to every line; a ValueError/KeyError/IndexError from it is a bad line under the policy."""
    for no, line in iter_lines(path, encoding, skip_header):
        try:
            yield parse(line)
        except (ValueError, KeyError, IndexError, TypeError, SyntaxError, RecursionError) as exc:
            bad.bad(path, no, str(exc) or type(exc).__name__)


def locate(folder: Path, name: str) -> Path | None:
    """`folder/name`, or its gzipped / gunzipped twin (`x.json.gz` <-> `x.json`), or None."""
    candidates = [name, name[: -len(".gz")]] if name.endswith(".gz") else [name, name + ".gz"]
    for candidate in candidates:
        if (folder / candidate).exists():
            return folder / candidate
    return None


def require(folder: Path, name: str) -> Path:
    found = locate(folder, name)
    if found is None:
        raise DataError(f"missing file {folder / name}")
    return found


SEPARATORS = {"tab": "\t", "comma": ",", "space": " ", "pipe": "|", "semicolon": ";"}


def separator(sep: str, path: Path, sample: str | None = None) -> str:
    """A declared separator: a name (tab, comma, space, pipe, semicolon), the character itself, or `auto`
    (tab if the first data line has one, else comma, else whitespace). `space` means any run of whitespace."""
    sep = SEPARATORS.get(sep, sep)
    if sep == "auto":
        if sample is None:
            raise DataError(f"{path}: cannot detect the separator of an empty file")
        return "\t" if "\t" in sample else "," if "," in sample else " "
    if not sep:
        raise DataError(f"{path}: the separator is empty; use tab, comma, space or a character")
    return sep


def split_record(line: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Fields of one line: `,` follows CSV quoting, ` ` splits on runs of whitespace, others split plainly."""
    if sep == ",":
        import csv

        try:
            fields = next(csv.reader([line], strict=True))
        except csv.Error as exc:
            raise ValueError(f"bad CSV quoting ({exc})") from None
        if maxsplit >= 0 and len(fields) > maxsplit + 1:  # the last column takes the rest of the line
            fields = fields[:maxsplit] + [",".join(fields[maxsplit:])]
        return fields
    if sep == " ":
        return line.split(None, maxsplit)
    return line.split(sep, maxsplit)


def first_data_line(path: Path, encoding: str = "utf-8", skip_header: bool = False) -> str | None:
    return next((line for _, line in iter_lines(path, encoding, skip_header)), None)


def split_fields(line: str, sep: str, n: int | None = None, min_n: int | None = None) -> list[str]:
    parts = line.split(sep)
    if n is not None and len(parts) != n:
        raise ValueError(f"expected {n} fields separated by {sep!r}, found {len(parts)}")
    if min_n is not None and len(parts) < min_n:
        raise ValueError(f"expected at least {min_n} fields separated by {sep!r}, found {len(parts)}")
    return parts
