"""UniSRec/RecBole-processed folders: a leave-one-out split already made, which must be kept exactly.

Files (TAB-separated, UTF-8; `.inter` and `.text` have a RecBole typed header line), for a prefix `<Name>`:

    <Name>.train.inter   user index, earlier items (space-separated, most recent `max_len` only), next item:
                         one row per training target (2nd item .. third-from-last)
    <Name>.valid.inter   one row per user: its history and the second-to-last item
    <Name>.test.inter    one row per user: its history and the last item
    <Name>.text          item id (e.g. an ASIN), text
    <Name>.item2index    item id, index (no header);  <Name>.user2index: user id, index

The full time-ordered sequence of a user is rebuilt, not re-split: the shortest train list, then the train
targets in order (each row's list must be the previous sequence's last `max_len` items: the rows chain),
then the valid target, then the test target. Every list is checked against the rebuilt sequence, so a folder
whose rows do not chain is an error naming the file and line, never a silently different split. Leave-one-out
on the rebuilt sequences gives back the files' valid and test targets (the card says `presplit: true`).
There are no timestamps; the order of each sequence is its time order.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recbench.data.readers import BadLines, integer_id, iter_lines, parse_lines
from recbench.data.schema import DataError, RawData, canonical_interactions, canonical_items


def _index_file(path: Path, bad: BadLines) -> dict[str, str]:
    """`<id> TAB <index>` lines -> {index: id}; ids and indices must be unique."""

    def row(line: str) -> tuple[str, str]:
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise ValueError("expected `id<TAB>index`")
        return parts[1].strip(), parts[0].strip()

    pairs = list(parse_lines(path, row, bad))
    table = dict(pairs)
    if len(table) != len(pairs) or len(set(table.values())) != len(pairs):
        raise DataError(f"{path}: ids and indices must be one-to-one")
    return table


def _inter_rows(path: Path, bad: BadLines) -> list[tuple[int, str, list[str], str]]:
    """(line number, user index, history, target) for every row of an `.inter` file."""
    lines = iter_lines(path)
    first = next(lines, None)
    if first is None or not first[1].startswith("user_id"):
        raise DataError(f"{path}: expected a header `user_id:token item_id_list:token_seq item_id:token`")
    rows = []
    for no, line in lines:
        parts = line.split("\t")
        if len(parts) != 3 or not parts[0] or not parts[2].strip():
            bad.bad(path, no, "expected `user<TAB>item list<TAB>item`")
            continue
        try:  # indices, not ids: `7x` is a bad line here, not a "does not chain" or "not in item2index" later
            user = integer_id(parts[0], "user index")
            history = [integer_id(i, "item index in the list") for i in parts[1].split()]
            target = integer_id(parts[2], "item index")
        except ValueError as exc:
            bad.bad(path, no, str(exc))
            continue
        rows.append((no, user, history, target))
    return rows


def rebuild(
    train: list, valid: list, test: list, max_len: int, files: tuple[Path, Path, Path]
) -> dict[str, list[str]]:
    """Per user, the full sequence from the split files (see the module docstring); verified row by row."""
    by_user: dict[str, list] = {}
    for no, user, history, target in train:
        by_user.setdefault(user, []).append((no, history, target))
    valid_by = _one_per_user(valid, files[1])
    test_by = _one_per_user(test, files[2])
    if set(valid_by) != set(test_by):
        only = sorted(set(valid_by) ^ set(test_by))[:3]
        raise DataError(f"{files[1].name} and {files[2].name} list different users (e.g. {only})")
    sequences = {}
    for user in test_by:
        rows = by_user.pop(user, [])
        sequence = _chain(rows, max_len, files[0], user) if rows else list(valid_by[user][1])
        for (no, history, target), path in ((valid_by[user], files[1]), (test_by[user], files[2])):
            _check(history, sequence, max_len, path, no, user)
            sequence.append(target)
        sequences[user] = sequence
    if by_user:
        raise DataError(f"{files[0].name} has users without a test row, e.g. {sorted(by_user)[:3]}")
    return sequences


def _chain(rows: list, max_len: int, path: Path, user: str) -> list[str]:
    """The shortest list, then each row whose list is the last `max_len` items so far: its target appended.

    Independent of the rows' file order; lists truncated to `max_len` (all of one length) chain just the same."""
    rows = sorted(rows, key=lambda r: (len(r[1]), r[0]))
    sequence = list(rows[0][1])
    waiting: dict[tuple, list] = {}
    for row in rows:
        waiting.setdefault(tuple(row[1]), []).append(row)
    for _ in range(len(rows)):
        found = waiting.get(tuple(sequence[-max_len:]))
        if not found:
            no = min(r[0] for group in waiting.values() for r in group)
            _broken(path, no, user, max_len)
        no, history, target = found.pop(0)
        if not found:
            del waiting[tuple(history)]
        sequence.append(target)
    return sequence


def _one_per_user(rows: list, path: Path) -> dict[str, tuple[int, list[str], str]]:
    out = {}
    for no, user, history, target in rows:
        if user in out:
            raise DataError(f"{path}, line {no}: user {user} has a second row (one row per user expected)")
        out[user] = (no, history, target)
    return out


def _check(history: list[str], sequence: list[str], max_len: int, path: Path, no: int, user: str) -> None:
    if history != sequence[-max_len:]:
        _broken(path, no, user, max_len)


def _broken(path: Path, no: int, user: str, max_len: int):
    raise DataError(
        f"{path}, line {no}: user {user}'s item list is not the last {max_len} items of the sequence rebuilt "
        "so far; the rows do not chain into one sequence (is this a UniSRec leave-one-out folder whose lists "
        "are truncated to `max_len` items? set the adapter option `max_len` if not 50)"
    )


def load(folder: Path, options: dict, bad: BadLines) -> RawData:
    prefix = options.get("prefix") or folder.name
    max_len = int(options.get("max_len", 50))
    paths = tuple(folder / f"{prefix}.{part}.inter" for part in ("train", "valid", "test"))
    if bad.policy != "error":
        raise DataError(
            "a presplit UniSRec folder cannot skip lines (the split would change): use on_bad_line: error"
        )
    rows = [_inter_rows(p, bad) for p in paths]
    sequences = rebuild(*rows, max_len=max_len, files=paths)

    items_by_index = _index_file(folder / f"{prefix}.item2index", bad)
    users_path = folder / f"{prefix}.user2index"
    users_by_index = _index_file(users_path, bad) if users_path.is_file() else {}

    user_col, item_col = [], []
    for user in sorted(sequences, key=lambda u: (len(u), u)):  # numeric order of the indices
        uid = users_by_index.get(user, user)
        for index in sequences[user]:
            if index not in items_by_index:
                raise DataError(f"item index {index} (user {user}) is not in {prefix}.item2index")
            user_col.append(uid)
            item_col.append(items_by_index[index])
    interactions = canonical_interactions(pl.DataFrame({"user_id": user_col, "item_id": item_col}))

    text_path = folder / f"{prefix}.text"

    def text_row(line: str) -> dict:
        item, _, text = line.partition("\t")
        if not item.strip():
            raise ValueError("empty item id")
        return {"item_id": item.strip(), "text": text.strip() or None}

    texts = list(parse_lines(text_path, text_row, bad, skip_header=True))
    items = canonical_items(
        pl.DataFrame(texts, schema={"item_id": pl.String, "text": pl.String}, orient="row")
        if texts
        else pl.DataFrame(schema={"item_id": pl.String, "text": pl.String})
    )
    notes = {
        "train_rows": len(rows[0]),
        "lists_truncated": sum(len(h) >= max_len for part in rows for _, _, h, _ in part),
    }
    return RawData(interactions, items, notes=notes, presplit=True)
