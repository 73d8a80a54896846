"""Per-item semantic codes (the RQ-VAE ids of TIGER, LC-Rec, LETTER), read for a loaded dataset.

Nothing here encodes items; this is where a future semantic-ID encoder finds its codes. A card declares the
file in its mirror's adapter options, next to the files the adapter reads::

    semantic_ids: {file: semantic-ids/Beauty.letter.index.json, id_shift: 1}

``file`` is relative to the dataset folder and holds ``{"key": ["<a_183>", "<b_70>", ...]}`` (the LC-Rec /
LETTER ``.index.json``). ``id_shift`` says how its keys meet the dataset's item ids: item id = key +
``id_shift`` (LETTER numbers Beauty's items from 0 where S3-Rec numbers them from 1, so 1 there; 0, the
default, where the keys are the item ids). The file is not part of the sequence data and not in the card's
``files``, so a folder without it still loads; a reader should record the file's digest with what it builds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recbench.data.schema import DataError

_SPEC_KEYS = {"file", "id_shift"}


@dataclass(frozen=True)
class SemanticIdSpec:
    file: str
    id_shift: int = 0


def semantic_id_spec(options: dict) -> SemanticIdSpec | None:
    """The declared code file of a mirror's options, or None; a malformed declaration is an error."""
    spec = options.get("semantic_ids")
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"file": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("file"), str) or not spec["file"].strip():
        raise DataError(
            f"adapter option semantic_ids {spec!r}: expected {{file: PATH, id_shift: INT}} (PATH relative to "
            "the dataset folder)"
        )
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise DataError(
            f"adapter option semantic_ids has unknown keys {sorted(unknown)}; allowed: file, id_shift"
        )
    shift = spec.get("id_shift", 0)
    if not isinstance(shift, int) or isinstance(shift, bool):
        raise DataError(f"adapter option semantic_ids.id_shift must be an integer, got {shift!r}")
    return SemanticIdSpec(spec["file"].strip(), shift)


def read_semantic_ids(path: Path, item_ids: Sequence[str], id_shift: int = 0) -> dict[str, list[str]]:
    """item id -> its codes, for every id of `item_ids` (in that order).

    Every loaded item must have codes (an encoder cannot represent an item without them): a missing one is an
    error that counts and names them. Codes of items not loaded (e.g. filtered out) are ignored. A malformed
    entry is always an error naming the file and key: one bad code list would make every code suspect."""
    from recbench.data.lcrec import read_json_object  # JSON with repeated keys refused, errors located
    from recbench.data.s3rec import integer_id

    if not path.is_file():
        raise DataError(f"missing semantic-ID file {path} (declared by the card's semantic_ids option)")
    codes: dict[str, list[str]] = {}
    for key, value in read_json_object(path).items():
        try:
            item = str(int(integer_id(key, "key")) + id_shift)
        except ValueError as exc:
            raise DataError(f"{path}, key {key!r}: {exc}") from None
        if not (isinstance(value, list) and value and all(isinstance(c, str) and c.strip() for c in value)):
            raise DataError(
                f"{path}, key {key!r}: expected a non-empty list of code strings, found {value!r}"
            )
        codes[item] = value
    missing = [i for i in item_ids if i not in codes]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} of {len(item_ids)} loaded items have no codes (e.g. items "
            f"{', '.join(missing[:3])}, looked up as key = item id - {id_shift}); is the card's "
            "semantic_ids.id_shift right?"
        )
    return {i: codes[i] for i in item_ids}


def load_semantic_ids(
    name: str, data_dir: str | Path | None, item_ids: Sequence[str]
) -> dict[str, list[str]]:
    """The codes the card `name` declares, for the loaded `item_ids` (SequenceData.item_ids)."""
    from recbench.data.cards import get_card
    from recbench.data.download import resolve

    resolved = resolve(get_card(name), data_dir)
    spec = semantic_id_spec(resolved.mirror.options)
    if spec is None:
        raise DataError(
            f"data card '{name}' declares no semantic IDs (adapter option semantic_ids: {{file: ..., id_shift: ...}})"
        )
    return read_semantic_ids(resolved.folder / spec.file, item_ids, spec.id_shift)
