"""LEADERBOARD.md as blocks, each written from one store for a set of experiments.

Why: a store lives where its runs ran (a laptop, a cluster's tracking server, a machine that is gone the next
day), and the recipes that feed the leaderboard take hours each on a small machine. Writing the whole file from
one store would drop every table whose runs are in another store. So `recbench leaderboard` replaces only the
block of the experiments it reads and keeps every other block as it is, with that block's own provenance
(date, commands, machines, code) and legend. `--check` compares what this store can produce; kept blocks are
taken from the file as they are.

A file of one block is written exactly as before (no markers). With several blocks each is wrapped::

    <!-- recbench:block experiments=a,b -->
    - Produced: ... from experiments `a`, `b`
    ...
    <!-- recbench:end -->

A block is replaced when it shares an experiment with the store's; a block holding other experiments too is
then replaced whole (its other experiments' tables are dropped, and the command says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_BEGIN = re.compile(r"^<!-- recbench:block experiments=([^ ]*) -->$", re.MULTILINE)
_END = "<!-- recbench:end -->"
_PRODUCED = re.compile(r"^- Produced: (\S+) by `[^`\n]*` from experiments? (.*)$", re.MULTILINE)
_PLOT = re.compile(r"\]\(([^)\s]+\.png)\)")


@dataclass(frozen=True)
class Block:
    experiments: frozenset[str]
    body: str  # from its "- Produced" line to its last line, newline-terminated

    @property
    def date(self) -> str | None:
        found = _PRODUCED.search(self.body)
        return found.group(1) if found else None

    @property
    def plots(self) -> frozenset[str]:
        """File names of the plots the block shows."""
        return frozenset(Path(ref).name for ref in _PLOT.findall(self.body))


def _head_and_body(markdown: str) -> tuple[str, str]:
    """Split a one-store leaderboard into its title lines and its body (from the "- Produced" line on)."""
    at = markdown.find("\n- Produced: ")
    if at < 0:
        raise ValueError("not a recbench leaderboard: no '- Produced:' line")
    return markdown[: at + 1], markdown[at + 1 :]


def parse(text: str) -> tuple[str, list[Block]]:
    """(title lines, blocks) of a leaderboard file; a file without markers is one block."""
    if not _BEGIN.search(text):
        head, body = _head_and_body(text)
        found = _PRODUCED.search(body)
        names = frozenset(re.findall(r"`([^`]+)`", found.group(2))) if found else frozenset()
        return head, [Block(names, body)]
    head = text[: _BEGIN.search(text).start()]
    blocks = []
    for match in _BEGIN.finditer(text):
        end = text.find(_END, match.end())
        if end < 0:
            raise ValueError(f"leaderboard block '{match.group(0)}' has no '{_END}'")
        names = frozenset(n for n in match.group(1).split(",") if n)
        blocks.append(Block(names, text[match.end() + 1 : end]))
    return head, blocks


def merge(
    new_markdown: str, experiments: list[str], existing: str | None
) -> tuple[str, list[Block], list[Block]]:
    """(file text, kept blocks, replaced blocks): the one-store leaderboard `new_markdown` of `experiments`
    put in place of the existing file's blocks that share an experiment with it."""
    if not existing:
        return new_markdown, [], []
    head, new_body = _head_and_body(new_markdown)
    new = Block(frozenset(experiments), new_body)
    _, blocks = parse(existing)
    kept = [b for b in blocks if not (b.experiments & new.experiments)]
    replaced = [b for b in blocks if b.experiments & new.experiments]
    if not kept:
        return new_markdown, [], replaced
    order = list(blocks)
    at = next((i for i, b in enumerate(order) if b in replaced), len(order))
    order = [b for b in order[:at] if b in kept] + [new] + [b for b in order[at:] if b in kept]
    parts = [head.rstrip("\n") + "\n"]
    for block in order:
        parts.append(f"\n<!-- recbench:block experiments={','.join(sorted(block.experiments))} -->\n")
        parts.append(block.body if block.body.endswith("\n") else block.body + "\n")
        parts.append(_END + "\n")
    return "".join(parts), kept, replaced


def block_date(text: str, experiments: list[str]) -> str | None:
    """The date of the block that holds any of `experiments` (what `--check` gives the rebuilt block)."""
    _, blocks = parse(text)
    wanted = frozenset(experiments)
    for block in blocks:
        if block.experiments & wanted:
            return block.date
    return None
