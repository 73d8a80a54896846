"""The semantic-ID item encoder: each item is a short tuple of discrete codes learned from its content.

Between a learned ID (memorises, cannot generalise to a new item) and a content vector (generalises, blurs
popular items) sits the semantic ID (TIGER, Rajput et al. 2023; Singh et al. 2023, "Better Generalization with
Semantic IDs"): similar content shares leading codes, so a new item lands next to its neighbours, while the
item's vector is still a learned embedding of its codes.

Where the codes come from (:class:`CodeSource`):

- ``rqvae``: a tokenizer stage over the frozen vectors of a content encoder recbench already has (text or
  CLIP, built and prepared through its own cached path, :mod:`recbench.encoders.modality`): an RQ-VAE
  (:mod:`recbench.encoders.rqvae`) trained on the catalogue's content only. It never reads an interaction, so
  it cannot see the test split; every item, cold ones included, gets codes from its content, so the items a
  cold_item split holds out are rankable. The codes are cached like frozen vectors (``TensorCache``), keyed by
  the content encoder's cache key parts and every tokenizer setting (seed included).
- ``file``: the codes a data card declares (the LC-Rec / LETTER ``.index.json``,
  :func:`recbench.data.semantic_ids.load_semantic_ids`). Each level's code strings (``<a_183>``) are numbered
  by their trailing number. LETTER learns its codes with a collaborative regulariser from a model trained on
  the interactions, so on a cold_item split they are not a content-only cold start; the recipe says so.

Collisions (two items with one tuple) are resolved as TIGER does: when any exist, an extra code is appended to
every tuple, the item's position (0, 1, ...) among the items sharing its tuple, in item order. Their count and
the largest group are reported.

How the item vector is built (``combine``): ``sum`` adds one learned embedding per (level, code); ``prefix``
(the prefix-n-gram of Singh et al.) adds one embedding per code prefix (c1), (c1, c2), ..., so a deeper level
is specific to its branch. Prefix tables are exact (one row per prefix that occurs in the catalogue) instead
of the paper's hashed tables. ``with_id`` adds an ID embedding (its held-out rows stay frozen as for `id`).
The encoder maps item indices to vectors like any other, so SASRec, GRU4Rec and BERT4Rec use it unchanged; the
generative model (:mod:`recbench.generative`) reads its per-level vectors as tokens.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from recbench.encoders.base import EncoderReport, ItemEncoder
from recbench.encoders.cache import TensorCache, cache_key, hash_strings
from recbench.encoders.rqvae import RQVAEConfig, train_rqvae

# --------------------------------------------------------------------------------------------- codes


def disambiguate(codes: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """(N, L) codes -> unique tuples: unchanged when already unique, else (N, L + 1) with an extra code
    numbering the items of each shared tuple 0, 1, ... in item order (TIGER). Facts: collisions (items beyond
    the first of each shared tuple) and the largest group."""
    _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    collisions = int(len(codes) - len(counts))
    facts = {"collisions": collisions, "max_collision_group": int(counts.max()) if len(counts) else 0}
    if collisions == 0:
        return codes, facts
    order = torch.argsort(inverse, stable=True)  # items grouped by tuple, item order inside a group
    starts = torch.cumsum(counts, 0) - counts  # (U,) first slot of each group in `order`
    extra = torch.empty_like(inverse)
    extra[order] = torch.arange(len(codes)) - starts[inverse[order]]  # position inside the group
    return torch.cat([codes, extra.unsqueeze(1)], dim=1), facts


def prefix_ids(codes: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """(N, L) codes -> (N, L) dense id of each item's prefix (c1..cl) per level, and the count per level."""
    out, sizes = [], []
    for level in range(codes.shape[1]):
        _, inverse = torch.unique(codes[:, : level + 1], dim=0, return_inverse=True)
        out.append(inverse)
        sizes.append(int(inverse.max()) + 1 if len(inverse) else 0)
    return torch.stack(out, dim=1), sizes


def level_usage(codes: torch.Tensor, sizes: Sequence[int]) -> dict:
    """Per level: share of the codebook used and perplexity (exp of the code entropy)."""
    facts = {}
    for level, size in enumerate(sizes):
        counts = torch.bincount(codes[:, level], minlength=size).float()
        p = counts[counts > 0] / len(codes)
        facts[level + 1] = {
            "usage": float((counts > 0).float().mean()),
            "perplexity": float(torch.exp(-(p * p.log()).sum())),
        }
    return facts


_TRAILING_NUMBER = re.compile(r"(\d+)\D*$")


def codes_from_strings(per_item: Sequence[Sequence[str]], where: str) -> tuple[torch.Tensor, list[int]]:
    """Code strings per item (LC-Rec/LETTER: ['<a_183>', '<b_70>', ...]) -> (N, L) ints and codebook sizes.

    Each level is numbered on its own: by the trailing number when every code of the level has one (so
    `<a_183>` is 183 and codebook sizes match the source's), else densely in sorted order."""
    lengths = {len(c) for c in per_item}
    if len(lengths) != 1:
        raise ValueError(
            f"{where}: items have code tuples of different lengths {sorted(lengths)}; every item needs the "
            "same number of levels"
        )
    levels = lengths.pop()
    columns, sizes = [], []
    for level in range(levels):
        values = [c[level] for c in per_item]
        numbers = [_TRAILING_NUMBER.search(v) for v in values]
        if all(numbers):
            ints = [int(m.group(1)) for m in numbers]
            mapping = {v: i for v, i in zip(values, ints)}
            if len(set(mapping.values())) != len(mapping):
                raise ValueError(
                    f"{where}: level {level + 1} has distinct codes with one number (e.g. "
                    f"{sorted(mapping)[:3]}); number them uniquely"
                )
            sizes.append(max(ints) + 1)
        else:
            mapping = {v: i for i, v in enumerate(sorted(set(values)))}
            sizes.append(len(mapping))
        columns.append(torch.tensor([mapping[v] for v in values], dtype=torch.long))
    return torch.stack(columns, dim=1), sizes


@dataclass
class Codes:
    """Unique code tuples for the catalogue: row i = item index i + 1."""

    codes: torch.Tensor  # (N, L') long
    sizes: list[int]  # codebook size per level (the disambiguation level: its largest group)
    facts: dict
    cache_hit: bool | None = None
    encode_s: float = 0.0
    frozen_params: int = 0
    revision: str | None = None


def finish(codes: torch.Tensor, sizes: list[int], facts: dict) -> tuple[torch.Tensor, list[int], dict]:
    """Disambiguate and report: unique tuples, per-level sizes, usage/perplexity and collision facts."""
    unique, collision = disambiguate(codes)
    if unique.shape[1] > codes.shape[1]:
        sizes = [*sizes, collision["max_collision_group"]]
    return unique, sizes, {**facts, **collision, "levels_used": level_usage(codes, sizes[: codes.shape[1]])}


class CodeSource:
    """Where an encoder's codes come from; `codes(reporter)` runs (or loads) the tokenizer."""

    name = "codes"

    def codes(self, reporter=None) -> Codes:  # pragma: no cover - interface
        raise NotImplementedError


def content_key(encoder) -> dict:
    """The cache-key parts of a frozen content encoder's vectors (what its own vector cache is keyed by)."""
    return {
        "common": encoder.common_key,
        "fuse": encoder.fuse,
        "towers": [{**r.source.key, **r.source.feed.key(), "tower": r.source.name} for r in encoder.runners],
    }


def tokenize(
    vectors: torch.Tensor, content: dict, config: RQVAEConfig, cache: TensorCache | None = None, reporter=None
) -> tuple[torch.Tensor, dict, bool]:
    """Content vectors (N, D) -> raw RQ-VAE codes (N, L), facts, cache hit. The cache key is the content's key
    parts plus every tokenizer setting, so a change of either (another model, text, seed, codebook size)
    misses and anything else hits."""
    cache = cache or TensorCache()
    parts = {"what": "semantic_ids", "content": content, "tokenizer": asdict(config), "items": len(vectors)}
    key = cache_key(parts)
    got = cache.get(key)
    if got is not None and got["codes"].shape[0] == len(vectors):
        stats = got["stats"]  # (L, 3): residual norm, usage, perplexity
        facts = {
            "recon_mse": float(got["recon"][0]),
            "levels": {
                level + 1: dict(zip(("residual_norm", "usage", "perplexity"), map(float, stats[level])))
                for level in range(len(stats))
            },
        }
        return got["codes"].long(), facts, True
    if reporter:
        reporter.stage(
            f"  semantic IDs: training the RQ-VAE ({config.levels} x {config.codebook_size} codes, "
            f"{config.epochs} epochs over {len(vectors)} items)"
        )
    codes, facts = train_rqvae(vectors, config)
    stats = torch.tensor(
        [[v["residual_norm"], v["usage"], v["perplexity"]] for _, v in sorted(facts["levels"].items())]
    )
    cache.put(key, {"codes": codes, "recon": torch.tensor([facts["recon_mse"]]), "stats": stats}, parts)
    return codes, facts, False


class RQVAECodes(CodeSource):
    """Codes from an RQ-VAE over a frozen content encoder's vectors (computed and cached by that encoder)."""

    name = "rqvae"

    def __init__(self, content_encoder, config: RQVAEConfig):
        self.content_encoder = content_encoder  # a ModalityEncoder in frozen mode; not a submodule
        self.config = config

    def codes(self, reporter=None) -> Codes:
        t0 = time.perf_counter()
        report = self.content_encoder.prepare(reporter)
        n = self.content_encoder.runners[0].table.shape[0]
        with torch.no_grad():
            vectors = self.content_encoder.encode_rows(torch.arange(n))  # (N, W) before any projection
        raw, facts, hit = tokenize(vectors, content_key(self.content_encoder), self.config, reporter=reporter)
        codes, sizes, facts = finish(raw, [self.config.codebook_size] * self.config.levels, facts)
        facts["content_cache_hit"] = report.cache_hit
        facts.update({f"content_{k}": v for k, v in report.extra.items() if k != "frozen_params"})
        return Codes(
            codes,
            sizes,
            facts,
            cache_hit=hit,
            encode_s=time.perf_counter() - t0,
            frozen_params=int(report.extra.get("frozen_params", 0)),
            revision=report.revision,
        )


class FileCodes(CodeSource):
    """Codes read from the file the dataset's card declares (LC-Rec/LETTER ``.index.json``)."""

    name = "file"

    def __init__(self, dataset: str, data_dir: str | None, item_ids: Sequence[str]):
        self.dataset, self.data_dir, self.item_ids = dataset, data_dir, list(item_ids)

    def codes(self, reporter=None) -> Codes:
        from recbench.data.semantic_ids import load_semantic_ids

        t0 = time.perf_counter()
        by_item = load_semantic_ids(self.dataset, self.data_dir, self.item_ids)
        per_item = [by_item[i] for i in self.item_ids]
        raw, sizes = codes_from_strings(per_item, f"semantic IDs of {self.dataset}")
        digest = hash_strings("\x1f".join(c) for c in per_item)
        codes, sizes, facts = finish(raw, sizes, {"codes_sha256": digest})
        return Codes(codes, sizes, facts, cache_hit=None, encode_s=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------- encoder


class SemanticIdEncoder(ItemEncoder):
    """Item index -> sum of its per-level code (or prefix) embeddings (+ an ID embedding); 0 -> zeros.

    The tables are sized by the codes, which exist only after :meth:`prepare` (the tokenizer stage)."""

    def __init__(
        self,
        num_items: int,
        dim: int,
        source: CodeSource,
        combine: str = "sum",
        with_id: bool = False,
        init_std: float = 0.02,
    ):
        super().__init__()
        if combine not in ("sum", "prefix"):
            raise ValueError(f"combine must be 'sum' or 'prefix', got {combine!r}")
        self.num_items, self.dim, self.source = num_items, dim, source
        self.combine, self.init_std = combine, init_std
        self.ids = None
        if with_id:
            from recbench.encoders.id import IdEncoder

            self.ids = IdEncoder(num_items, dim, init_std=init_std)
        self.tables = nn.ModuleList()
        self.register_buffer("codes", None)  # (N + 1, L') codes, row 0 = padding (zeros)
        self.register_buffer("rows", None)  # (N + 1, L') the table row each level reads
        self.code_sizes: list[int] = []

    def set_codes(self, codes: torch.Tensor, sizes: list[int]) -> None:
        """Install unique code tuples (N, L') and build the embedding tables they need."""
        if codes.shape[0] != self.num_items:
            raise ValueError(f"codes cover {codes.shape[0]} items, the catalogue has {self.num_items}")
        if len({tuple(r) for r in codes.tolist()}) != len(codes):
            raise ValueError("semantic codes must be unique per item (disambiguate them first)")
        self.code_sizes = list(sizes)
        rows, table_sizes = prefix_ids(codes) if self.combine == "prefix" else (codes, sizes)
        pad = torch.zeros(1, codes.shape[1], dtype=torch.long)
        self.codes = torch.cat([pad, codes.long()])  # (N + 1, L')
        self.rows = torch.cat([pad, rows.long()])  # (N + 1, L')
        self.tables = nn.ModuleList(nn.Embedding(max(1, s), self.dim) for s in table_sizes)
        for table in self.tables:  # from the run's seeded stream, like an ID table
            nn.init.normal_(table.weight, std=self.init_std)

    @property
    def levels(self) -> int:
        return 0 if self.codes is None else self.codes.shape[1]

    def prepare(self, reporter=None) -> EncoderReport:
        got = self.source.codes(reporter)
        self.set_codes(got.codes, got.sizes)
        facts = got.facts
        extra = {
            "frozen_params": got.frozen_params,
            "semantic_id_source": self.source.name,
            "semantic_id_levels": self.levels,
            "semantic_id_code_sizes": ",".join(map(str, got.sizes)),
            "semantic_id_collisions": facts["collisions"],
            "semantic_id_max_collision_group": facts["max_collision_group"],
        }
        for level, values in facts.get("levels_used", {}).items():
            extra[f"semantic_id_l{level}_usage"] = values["usage"]
            extra[f"semantic_id_l{level}_perplexity"] = values["perplexity"]
        if "recon_mse" in facts:
            extra["rqvae_recon_mse"] = facts["recon_mse"]
            for level, values in facts["levels"].items():
                extra[f"rqvae_l{level}_residual_norm"] = values["residual_norm"]
        extra.update({k: v for k, v in facts.items() if k.startswith("content_") or k == "codes_sha256"})
        return EncoderReport(
            encode_s=got.encode_s, cache_hit=got.cache_hit, revision=got.revision, extra=extra
        )

    def level_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Item indices (...) -> per-level embeddings (..., L', D); padding rows are zero."""
        if self.rows is None:
            raise RuntimeError("call prepare() before encoding (the runner does this before training)")
        rows = self.rows[ids]  # (..., L')
        out = torch.stack([table(rows[..., level]) for level, table in enumerate(self.tables)], dim=-2)
        return out * (ids > 0).unsqueeze(-1).unsqueeze(-1).to(out.dtype)  # (..., L', D)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.level_vectors(ids).sum(dim=-2)  # (..., D)
        if self.ids is not None:
            x = x + self.ids(ids)
        return x

    def item_rows(self) -> list[nn.Parameter]:
        return self.ids.item_rows() if self.ids is not None else []


def build_semantic_id_encoder(section, content, dim: int) -> SemanticIdEncoder:
    """The encoder a `kind: semantic_id` section describes. The content encoder (for `codes: rqvae`) is built
    here and prepared in prepare(), through the same cached path as a frozen text/CLIP encoder."""
    if section.codes == "file":
        source: CodeSource = FileCodes(content.dataset, content.data_dir, content.items["item_id"].to_list())
    else:
        from recbench.model import build_encoder

        inner = build_encoder(section.content, content, dim)
        t = section.tokenizer
        source = RQVAECodes(
            inner,
            RQVAEConfig(
                levels=t.levels,
                codebook_size=t.codebook_size,
                latent_dim=t.latent_dim,
                hidden=tuple(t.hidden),
                beta=t.beta,
                epochs=t.epochs,
                batch_size=t.batch_size,
                lr=t.lr,
                kmeans_iters=t.kmeans_iters,
                seed=t.seed,
            ),
        )
    return SemanticIdEncoder(
        content.num_items,
        dim,
        source,
        combine=section.combine,
        with_id=section.with_id,
        init_std=section.init_std,
    )


def numpy_codes(encoder: SemanticIdEncoder) -> np.ndarray:
    """(N, L') codes of a prepared encoder, row i = item i + 1 (for inspection and tests)."""
    return encoder.codes[1:].cpu().numpy()
