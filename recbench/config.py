"""Recipes: YAML validated into frozen pydantic models.

A recipe is the single source of truth for a comparison. Every section forbids unknown keys (a misspelt key
is an error naming the key, the file and the nearest valid key), every choice is a ``Literal`` and every number
has bounds. The encoder, backbone and split unions *are* the registry: adding a kind means adding a section
class here and a builder in ``recbench.model``.

A recipe may declare a ``grid`` (datasets x splits x encoders x backbones x seeds) around shared sections,
and/or an explicit ``runs`` list of partial section overrides (each entry expanded by the grid's axes);
:func:`expand` turns them into concrete :class:`RunSpec` objects, each with its own hash (the MLflow tag and
the skip-if-done key).
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import itertools
import json
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

METRIC_NAMES = ("hr", "ndcg", "mrr")
_METRIC_RE = re.compile(r"^(hr|ndcg|mrr)@(\d+)$")


class RecipeError(ValueError):
    """A recipe that cannot be run; the message says what is wrong and how to fix it."""


class Strict(BaseModel):
    """Every recipe section: unknown keys are errors, values are frozen, and no float field accepts nan or
    +-inf (YAML's `.nan`/`.inf`): a bound such as `lr <= 1` is meaningless for nan, which compares false with
    everything, so the message would otherwise be a misleading bound violation."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def check_template(template: str) -> str:
    """An item-text template (recipe or data card), checked when it is declared rather than when the items
    are rendered after the download: a Python format string whose fields are plain column names.

    Refused: unbalanced braces, positional or attribute/index fields (`{}`, `{0}`, `{title.x}`), unknown
    conversions and format specs that fail on a missing value (missing values render as '')."""
    fix = "write each field as {column}, e.g. '{title} ({year})', and a literal brace as {{ or }}"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"text template {template!r} is not a valid template ({exc}): {fix}") from None
    fields = []
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(f"text template {template!r}: {{{field}}} is not a column name: {fix}")
        if conversion not in (None, "s", "r", "a"):
            raise ValueError(f"text template {template!r}: unknown conversion !{conversion} in {{{field}}}")
        if spec:
            try:
                format("", spec)
            except ValueError as exc:
                raise ValueError(
                    f"text template {template!r}: format spec {spec!r} of {{{field}}} fails on text ({exc})"
                ) from None
        fields.append(field)
    if not fields:
        raise ValueError(f"text template {template!r} names no field: {fix}")
    return template


# --------------------------------------------------------------------------------------------- data


class DatasetSection(Strict):
    """Which dataset, where its files are, and how raw interactions are preprocessed."""

    name: str = Field(description="Data card name, e.g. movielens-100k (see `recbench data list`).")
    data_dir: str | None = Field(
        None, description="A local folder with the dataset's files; used instead of downloading."
    )
    min_rating: float | None = Field(
        None, description="Keep only interactions with rating >= this value (unset: the card's default)."
    )
    user_core: int | None = Field(
        None, ge=0, le=1000, description="k-core: drop users with fewer interactions (unset: card default)."
    )
    item_core: int | None = Field(
        None, ge=0, le=1000, description="k-core: drop items with fewer interactions (unset: card default)."
    )
    dedup: Literal["first", "last", "none"] | None = Field(
        None,
        description="Repeated (user, item) pairs: keep the first, the last, or all (unset: card default).",
    )
    ties: Literal["file_order", "item_id"] | None = Field(
        None,
        description="Order of equal timestamps: file order (default) or item id.",
    )
    text_template: str | None = Field(
        None, description="Item text template over item-table fields (overrides the card's), e.g. '{title}'."
    )
    max_users: int | None = Field(
        None,
        ge=1,
        description="Keep only the first N users (by id order): for smoke tests, never benchmarks.",
    )
    mix_with: tuple[DatasetSection, ...] = Field(
        (),
        description="Other datasets trained together with this one as one mixed catalogue (the source stage "
        "of a transfer run): users and items of different datasets never share an index.",
    )

    @property
    def label(self) -> str:
        return "+".join([self.name, *(d.label for d in self.mix_with)])

    @field_validator("text_template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        return v if v is None else check_template(v)


# --------------------------------------------------------------------------------------------- split


class LeaveOneOutSplit(Strict):
    """Per user: last item = test, second to last = validation, the rest trains."""

    kind: Literal["leave_one_out"] = "leave_one_out"


class TemporalSplit(Strict):
    """Global temporal split: two cut times at quantiles of all timestamps."""

    kind: Literal["temporal"] = "temporal"
    valid_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of interactions after the valid cut.")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of interactions after the test cut.")


class ColdItemSplit(Strict):
    """Leave-one-out, with a random fraction of items held out of training entirely."""

    kind: Literal["cold_item"] = "cold_item"
    cold_fraction: float = Field(0.1, gt=0, lt=0.9, description="Share of items never seen in training.")
    seed: int = Field(0, ge=0, description="Seed of the cold-item draw (part of the protocol).")


SplitSection = Annotated[LeaveOneOutSplit | TemporalSplit | ColdItemSplit, Field(discriminator="kind")]


# --------------------------------------------------------------------------------------------- encoders


class IdEncoderSection(Strict):
    """A learned embedding per item id (the IDRec baseline)."""

    kind: Literal["id"] = "id"
    label: str | None = Field(None, description="Row name in tables (default: derived from the settings).")
    init_std: float = Field(0.02, gt=0, le=1, description="Std of the normal initialisation.")

    @property
    def display(self) -> str:
        return self.label or "id"


class _ContentEncoderBase(Strict):
    model: str = Field(description="Hub id, local folder, or alias (e.g. `minilm`).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit); recorded.")
    mode: Literal["frozen", "top_k", "full"] = Field(
        "frozen", description="frozen: cached vectors; top_k: top k layers train; full: end to end."
    )
    top_k: int = Field(2, ge=1, le=48, description="Trainable top layers in mode top_k.")
    max_tokens: int = Field(64, ge=4, le=512, description="Text truncation length in tokens.")
    projection: Literal["linear", "mlp"] = Field("linear", description="Map to the backbone width.")
    lr: float | None = Field(
        None, gt=0, le=1, description="Learning rate of the encoder's pretrained weights (default: train.lr)."
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the hub (off unless set).")
    encode_batch_size: int = Field(
        128,
        ge=1,
        le=8192,
        description="Items per forward pass (encoding the catalogue and each top_k/full step).",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="Precision of the trainable layers in top_k/full (bf16: autocast; measured 1.7-1.8x faster "
        "encoder steps on a CPU with AMX bf16 units); frozen vectors and cached lower-layer states are always "
        "computed in fp32.",
    )
    checkpointing: Literal["auto", "on", "off"] = Field(
        "auto",
        description="top_k/full: recompute each chunk's activations in the backward pass (memory of one chunk "
        "instead of the whole catalogue, ~40% more encoder time); auto: on for large catalogues.",
    )
    label: str | None = Field(None, description="Row name in tables (default: derived from the settings).")

    def _mode_label(self) -> str:
        mode = f"top{self.top_k}" if self.mode == "top_k" else self.mode
        return mode + ("-bf16" if self.precision == "bf16" and self.mode != "frozen" else "")


class TextEncoderSection(_ContentEncoderBase):
    """A BERT-family text encoder over each item's text (MoRec's text item encoder)."""

    kind: Literal["text"] = "text"
    model: str = Field("minilm", description="Hub id, local folder, or alias (`minilm`).")
    pooling: Literal["cls", "mean"] = Field("mean", description="How token states become one vector.")

    @property
    def display(self) -> str:
        name = Path(self.model).name if "/" in self.model else self.model
        return self.label or f"text-{name}-{self._mode_label()}"


class ClipEncoderSection(_ContentEncoderBase):
    """CLIP over each item's text, image, or both (fused)."""

    kind: Literal["clip"] = "clip"
    model: str = Field("openai/clip-vit-base-patch32", description="Hub id or local folder of a CLIP model.")
    towers: Literal["text", "image", "both"] = Field("image", description="Which CLIP tower(s) encode items.")
    fuse: Literal["mean", "concat"] = Field(
        "mean", description="How the two towers combine when towers=both."
    )

    @property
    def display(self) -> str:
        name = Path(self.model).name if "/" in self.model else self.model
        return self.label or f"clip-{self.towers}-{name}-{self._mode_label()}"


ContentEncoderSection = Annotated[TextEncoderSection | ClipEncoderSection, Field(discriminator="kind")]


class FusionEncoderSection(Strict):
    """ID embedding combined with a content encoder (MoRec's ID-plus-modality variants)."""

    kind: Literal["fusion"] = "fusion"
    content: ContentEncoderSection
    combine: Literal["add", "concat"] = Field("add", description="add: sum; concat: concat then project.")
    init_std: float = Field(0.02, gt=0, le=1, description="Std of the ID embedding's initialisation.")
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label or f"id+{self.content.display}-{self.combine}"


class NoEncoderSection(Strict):
    """No item representation: for models that score items without one (the most-popular baseline)."""

    kind: Literal["none"] = "none"
    label: str | None = Field(None, description="Row name in tables (default: none).")

    @property
    def display(self) -> str:
        return self.label or "none"


class RQVAESection(Strict):
    """The semantic-ID tokenizer: an RQ-VAE over frozen content vectors (TIGER's settings by default, but
    Adam and a few hundred epochs instead of Adagrad for 20k epochs: the catalogues here are ~10^4 items)."""

    levels: int = Field(3, ge=1, le=8, description="Residual codebooks (codes per item before collisions).")
    codebook_size: int = Field(256, ge=2, le=65536, description="Codes per codebook (K).")
    latent_dim: int = Field(32, ge=2, le=4096, description="Width of the quantized latent.")
    hidden: tuple[int, ...] = Field((512, 256, 128), description="Encoder MLP widths (decoder: mirrored).")
    beta: float = Field(0.25, gt=0, le=10, description="Weight of the commitment loss.")
    epochs: int = Field(200, ge=1, le=100_000, description="Passes over the catalogue's content vectors.")
    batch_size: int = Field(1024, ge=1, le=1_000_000, description="Items per RQ-VAE step.")
    lr: float = Field(1e-3, gt=0, le=1, description="Adam learning rate of the RQ-VAE.")
    kmeans_iters: int = Field(20, ge=0, le=10_000, description="Lloyd iterations of the k-means init.")
    seed: int = Field(0, ge=0, description="Seed of the tokenizer (part of the code cache key).")

    @field_validator("hidden")
    @classmethod
    def _widths(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 1 or w > 65536 for w in v):
            raise ValueError(f"hidden widths must be between 1 and 65536, got {list(v)}")
        return v


class SemanticIdEncoderSection(Strict):
    """Items as short tuples of discrete codes learned from their content (TIGER's semantic IDs)."""

    kind: Literal["semantic_id"] = "semantic_id"
    codes: Literal["rqvae", "file"] = Field(
        "rqvae",
        description="rqvae: learn codes from `content` (an RQ-VAE over its frozen vectors); file: the codes the "
        "data card declares (LC-Rec/LETTER .index.json).",
    )
    content: ContentEncoderSection | None = Field(
        None, description="The frozen content encoder whose vectors are tokenized (codes: rqvae)."
    )
    tokenizer: RQVAESection = RQVAESection()
    combine: Literal["sum", "prefix"] = Field(
        "sum",
        description="sum: one embedding per (level, code); prefix: one per code prefix (Singh et al.'s "
        "prefix-n-gram).",
    )
    with_id: bool = Field(False, description="Add a learned ID embedding to the code embeddings.")
    init_std: float = Field(0.02, gt=0, le=1, description="Std of the embeddings' initialisation.")
    label: str | None = Field(None, description="Row name in tables (default: derived from the settings).")

    @model_validator(mode="after")
    def _source(self):
        if self.codes == "rqvae":
            if self.content is None:
                raise ValueError(
                    "codes: rqvae tokenizes a content encoder's vectors: add `content: {kind: text}` (or clip), "
                    "or use codes: file for the codes the data card declares"
                )
            if self.content.mode != "frozen":
                raise ValueError(
                    f"the content encoder of semantic IDs must be frozen (got mode: {self.content.mode}): the "
                    "codes are computed once from fixed vectors"
                )
        elif self.content is not None:
            raise ValueError("codes: file reads the card's codes, no content encoder: drop `content`")
        return self

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        source = f"rqvae({self.content.display})" if self.content is not None else "file"
        return f"sid-{source}-{self.combine}" + ("+id" if self.with_id else "")


EncoderSection = Annotated[
    IdEncoderSection
    | TextEncoderSection
    | ClipEncoderSection
    | FusionEncoderSection
    | NoEncoderSection
    | SemanticIdEncoderSection,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------------------------- backbones


class _Attention(Strict):
    """Backbones with multi-head attention: `heads` must divide `dim`."""

    @model_validator(mode="after")
    def _heads_divide_dim(self):
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        return self


class SASRecSection(_Attention):
    """Causal self-attention (Kang & McAuley, 2018)."""

    kind: Literal["sasrec"] = "sasrec"
    dim: int = Field(64, ge=8, le=4096, description="Item-vector and hidden width D.")
    layers: int = Field(2, ge=1, le=24)
    heads: int = Field(2, ge=1, le=64)
    inner: int = Field(256, ge=8, le=16384, description="Feed-forward width.")
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout on embeddings, residuals and FFN.")
    attn_dropout: float = Field(0.5, ge=0, lt=1, description="Dropout on attention weights.")
    norm: Literal["pre", "post"] = Field("post", description="LayerNorm before or after each sublayer.")


class GRU4RecSection(Strict):
    """Recurrent session model (Hidasi et al., 2016), trained on all positions."""

    kind: Literal["gru4rec"] = "gru4rec"
    dim: int = Field(64, ge=8, le=4096, description="Item-vector width D (states are projected back to it).")
    hidden: int = Field(64, ge=8, le=4096, description="GRU hidden width (may differ from dim).")
    layers: int = Field(1, ge=1, le=8, description="Stacked GRU layers.")
    dropout: float = Field(0.3, ge=0, lt=1, description="Dropout on the input item vectors.")


class BERT4RecSection(_Attention):
    """Bidirectional transformer with cloze training (Sun et al., 2019)."""

    kind: Literal["bert4rec"] = "bert4rec"
    dim: int = Field(64, ge=8, le=4096, description="Item-vector and hidden width D.")
    layers: int = Field(2, ge=1, le=24, description="Transformer blocks.")
    heads: int = Field(2, ge=1, le=64, description="Attention heads (must divide dim).")
    inner: int = Field(256, ge=8, le=16384, description="Feed-forward width.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on embeddings, residuals and FFN.")
    attn_dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on attention weights.")
    mask_prob: float = Field(
        0.2, gt=0, lt=1, description="Probability that a training position is masked and predicted (cloze)."
    )
    last_item_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of training windows that mask only their last item (the paper's extra samples that "
        "mimic inference); 0 = none. Chosen on validation NDCG@10 (benchmarks/bert4rec_choices.py).",
    )
    head_norm: bool = Field(
        True,
        description="LayerNorm at the end of the prediction head (BERT's and RecBole's head). Chosen on "
        "validation NDCG@10 (benchmarks/bert4rec_choices.py).",
    )


class PopSection(Strict):
    """Most popular: every user gets the items ranked by their training count (the floor of every table).

    Trains nothing and reads no item content (use it with `encoder: {kind: none}`); equal counts are ordered
    by item index, so its lists are deterministic and ties do not arise.
    """

    kind: Literal["pop"] = "pop"


class TigerSection(_Attention):
    """Generative retrieval (TIGER, Rajput et al. 2023): an encoder-decoder transformer reads the history as
    semantic-ID tokens and generates the next item's codes by beam search over the catalogue's code tuples.

    Needs `encoder: {kind: semantic_id}` and `loss: ce` (cross-entropy over the codes); ranks only its beam:
    every K of eval.ks must be at most `beam_width` (a target outside the beam ranks after it)."""

    kind: Literal["tiger"] = "tiger"
    dim: int = Field(128, ge=8, le=4096, description="Token width (TIGER: 128).")
    layers: int = Field(4, ge=1, le=24, description="Encoder layers (TIGER: 4).")
    decoder_layers: int = Field(4, ge=1, le=24, description="Decoder layers (TIGER: 4).")
    heads: int = Field(4, ge=1, le=64, description="Attention heads (must divide dim; TIGER: 6 of width 64).")
    inner: int = Field(1024, ge=8, le=16384, description="Feed-forward width (TIGER: 1024).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout (TIGER: 0.1).")
    beam_width: int = Field(
        20, ge=1, le=10_000, description="Beam width: items ranked per user (part of the protocol)."
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="Arithmetic of training and decoding (bf16: autocast to bfloat16; changes the numbers, so "
        "it is part of the run's hash).",
    )


BackboneSection = Annotated[
    SASRecSection | GRU4RecSection | BERT4RecSection | PopSection | TigerSection, Field(discriminator="kind")
]


# --------------------------------------------------------------------------------------------- regimes


class ScratchRegime(Strict):
    """Train from scratch on the run's dataset (every run before transfer existed)."""

    kind: Literal["scratch"] = "scratch"

    def map_datasets(self, fn: Callable[[DatasetSection], DatasetSection]) -> ScratchRegime:
        """This section with `fn` applied to every dataset it names besides the run's own (none here)."""
        return self


class TransferRegime(Strict):
    """Pretrain on source datasets, then adapt to the run's dataset (NineRec, TransRec, AdapterRec, PeterRec).

    The source stage is a scratch run of the same encoder and backbone on the sources' mixed catalogue (run
    once, reused by every target row that names the same sources, like any FINISHED run). What transfers: the
    content encoder, its projection and the backbone; never an ID table (a target ID row trains from its
    initialisation, which is the IDRec baseline).
    """

    kind: Literal["transfer"] = "transfer"
    source: tuple[DatasetSection, ...] = Field(min_length=1, description="Source datasets, trained together.")
    source_train: TrainSection | None = Field(
        None, description="Training of the source stage (default: train)."
    )
    mode: Literal["zero_shot", "full", "adapter", "lora"] = Field(
        "full",
        description="zero_shot: no target training; full: fine-tune everything (a text tower in top_k mode trains "
        "its top layers); adapter: bottleneck adapters in every backbone block, only adapters, layer norms and "
        "the encoder's projection train; lora: low-rank adapters (peft) in the text/CLIP tower's attention "
        "(mode top_k or full), only they, the backbone's layer norms and the projection train.",
    )
    adapter_dim: int = Field(
        16, ge=1, le=4096, description="Bottleneck width of each adapter (mode adapter)."
    )
    lora_rank: int = Field(8, ge=1, le=1024, description="Rank of the LoRA updates (mode lora).")
    lora_alpha: float = Field(
        16.0, gt=0, le=4096, description="LoRA scaling numerator (update x alpha / rank)."
    )

    def map_datasets(self, fn: Callable[[DatasetSection], DatasetSection]) -> TransferRegime:
        """This section with `fn` applied to every source dataset (e.g. `--data-dir` locating them)."""
        return self.model_copy(update={"source": tuple(fn(d) for d in self.source)})


RegimeSection = Annotated[ScratchRegime | TransferRegime, Field(discriminator="kind")]


# --------------------------------------------------------------------------------------------- train/eval


class TrainSection(Strict):
    """Loss, optimiser and the early-stopping loop."""

    loss: Literal["ce", "sampled_ce", "bce", "in_batch"] = Field(
        "ce", description="ce: full softmax; sampled_ce: N uniform negatives; bce: 1 negative; in_batch."
    )
    negatives: int = Field(100, ge=1, le=100_000, description="Uniform negatives per step for sampled_ce.")
    max_len: int = Field(50, ge=2, le=4096, description="Longest history a backbone sees.")
    window_stride: int | None = Field(
        None, ge=1, description="Step between training windows over long histories (unset: max_len // 2)."
    )
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0, le=1)
    batch_size: int = Field(128, ge=1, le=65536, description="Sequences (windows) per step.")
    max_epochs: int = Field(200, ge=1, le=100_000)
    patience: int = Field(
        10, ge=1, le=10_000, description="Epochs without a better valid metric before stop."
    )
    valid_metric: str = Field("ndcg@10", description="Early-stopping metric on validation, e.g. ndcg@10.")
    valid_users: int | None = Field(
        None,
        ge=1,
        description="Early stopping judges every epoch on the same sample of this many validation users (drawn "
        "once from the run's seed) instead of all of them; the finished run's validation and test metrics still "
        "rank every user. For rows whose validation is costly (generative beam search); it can change the kept "
        "epoch, so it is part of the run's hash. Unset: every validation user.",
    )
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm (None: off).")
    threads: int | None = Field(
        None, ge=1, le=1024, description="torch threads (None: RECBENCH_THREADS, else 1)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available.")

    @model_validator(mode="after")
    def _stride(self):
        if self.window_stride is not None and self.window_stride > self.max_len:
            raise ValueError(f"window_stride ({self.window_stride}) cannot exceed max_len ({self.max_len})")
        return self

    @property
    def stride(self) -> int:
        return self.window_stride or max(1, self.max_len // 2)

    @field_validator("valid_metric")
    @classmethod
    def _metric_name(cls, v: str) -> str:
        if not _METRIC_RE.match(v):
            raise ValueError(f"'{v}' is not a metric; use one of hr@K, ndcg@K, mrr@K (e.g. ndcg@10)")
        return v


class EvalSection(Strict):
    """Ranking protocol. Full ranking over the catalogue unless a recipe asks for sampled candidates."""

    ks: tuple[int, ...] = Field((5, 10, 20), description="Cut-offs K of HR@K, NDCG@K, MRR@K.")
    exclude_seen: bool = Field(True, description="Exclude the user's history items from ranking.")
    ties: Literal["pessimistic", "expected"] = Field(
        "pessimistic", description="Tied scores count against the target, or as the expected random rank."
    )
    candidates: Literal["full", "sampled"] = Field(
        "full", description="Rank all items, or target + N sampled."
    )
    sampled_negatives: int = Field(100, ge=1, le=100_000, description="Negatives per user when sampled.")
    cold_threshold: int = Field(
        0, ge=0, description="A target item is `cold` if it occurs at most this often in training."
    )
    popularity_head: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Slice pop-head: targets whose training count reaches that of the item at this share "
        "of the catalogue, most-trained first.",
    )
    popularity_tail: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Slice pop-tail: other targets whose training count is at most that of the item at this "
        "share of the catalogue, least-trained first; pop-torso is the rest.",
    )
    history_bounds: tuple[int, ...] = Field(
        (5, 10, 20, 50),
        description="Upper bounds of the history-length slices (items before the target): "
        "(5, 20) gives hist-le5, hist-6-20, hist-gt20.",
    )
    batch_size: int = Field(256, ge=1, le=65536, description="Users per evaluation batch.")

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("ks must list at least one cut-off")
        if any(k < 1 for k in v):
            raise ValueError("every K must be >= 1")
        return tuple(sorted(set(v)))

    @field_validator("history_bounds")
    @classmethod
    def _history_bounds(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(b < 0 for b in v):
            raise ValueError("history bounds are history lengths: every bound must be >= 0")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _popularity_shares(self):
        if self.popularity_head + self.popularity_tail > 1:
            raise ValueError(
                f"popularity_head ({self.popularity_head}) + popularity_tail ({self.popularity_tail}) "
                "exceed the whole catalogue (their sum must be <= 1)"
            )
        return self


# --------------------------------------------------------------------------------------------- tuning


class TuneSection(Strict):
    """A search for this run's settings on validation (``recbench.tuning``: Optuna, seeded TPE, median pruning).

    Each trial trains the run with the trial's values applied to its recipe and is judged on validation only;
    the run then retrains the best configuration and evaluates test once. The section is part of the run (and
    of its recipe hash); the values the study chooses are not (they are recorded with the run)."""

    space: dict[str, Any] = Field(
        description="Dotted recipe keys -> what to search: `loguniform(lo, hi)`, `uniform(lo, hi)`, "
        "`int(lo, hi)`, `logint(lo, hi)`, or a list of choices, e.g. {train.lr: 'loguniform(1e-4, 1e-2)', "
        "backbone.dropout: [0.1, 0.2, 0.5]}; null removes a key a shared `tune` section declared.",
    )
    trials: int | None = Field(None, ge=1, le=100_000, description="Trials (finished and pruned) to run.")
    wall_s: float | None = Field(
        None, gt=0, description="Seconds of trial time to spend (checked before each trial starts)."
    )
    metric: str = Field("ndcg@10", description="Validation metric the study maximises (never a test metric).")
    startup_trials: int = Field(
        5, ge=0, le=100_000, description="First trials drawn at random and never pruned (then TPE, pruning)."
    )
    prune: bool = Field(
        True, description="Stop a trial whose validation falls below the median of the others."
    )
    warmup_epochs: int = Field(
        2, ge=0, le=100_000, description="A trial is never pruned in its first this many epochs."
    )

    @field_validator("space", mode="before")
    @classmethod
    def _space(cls, v: Any) -> Any:
        from recbench.tuning import canonical_space

        return canonical_space(v)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if not _METRIC_RE.match(v):
            raise ValueError(f"'{v}' is not a metric; use one of hr@K, ndcg@K, mrr@K (e.g. ndcg@10)")
        return v

    @model_validator(mode="after")
    def _budget(self):
        if self.trials is None and self.wall_s is None:
            raise ValueError("a tune section needs a budget: set `trials`, `wall_s` or both")
        return self


# --------------------------------------------------------------------------------------------- recipe


class Grid(Strict):
    """Axes of a grid; every combination is one run. Each entry is a full section."""

    dataset: list[DatasetSection] | None = None
    split: list[SplitSection] | None = None
    encoder: list[EncoderSection] | None = None
    backbone: list[BackboneSection] | None = None
    seed: list[int] | None = None


_RUN_SECTIONS = ("dataset", "split", "encoder", "backbone", "train", "eval", "regime", "tune")


class RunVariant(Strict):
    """One entry of a recipe's explicit `runs:` list: the sections this run changes.

    A section given here is merged key by key into the recipe's shared section (so `train: {lr: 3e-4}` changes
    only the learning rate); a section of another `kind` (e.g. `encoder: {kind: text}` over a shared `id`
    encoder) replaces the shared one. A section that is also a grid axis cannot be set here.
    """

    dataset: DatasetSection | None = None
    split: SplitSection | None = None
    encoder: EncoderSection | None = None
    backbone: BackboneSection | None = None
    train: TrainSection | None = None
    eval: EvalSection | None = None
    regime: RegimeSection | None = None
    tune: TuneSection | None = None
    seed: int | None = Field(None, ge=0, description="This run's seed (unset: the recipe's seed).")


def _merge_section(shared: Any, override: Any) -> Any:
    """Raw section `override` merged into raw section `shared` (dicts key by key; another kind replaces)."""
    if not isinstance(shared, dict) or not isinstance(override, dict):
        return override
    if "kind" in override and "kind" in shared and override["kind"] != shared["kind"]:
        return override
    out = dict(shared)
    for key, value in override.items():
        out[key] = _merge_section(shared.get(key), value)
    return out


class RunSpec(Strict):
    """One concrete run: what `recbench run` trains and what its hash identifies."""

    name: str
    experiment: str
    seed: int
    dataset: DatasetSection
    split: SplitSection
    encoder: EncoderSection
    backbone: BackboneSection
    train: TrainSection
    eval: EvalSection
    regime: RegimeSection = ScratchRegime()
    tune: TuneSection | None = None

    @property
    def recipe_hash(self) -> str:
        """The skip-if-done key: every setting of the run, but not where its data lives (`data_dir`) nor
        the recipe/experiment names. What the data *is* is checked by the dataset fingerprint."""
        return _hash(
            _without_new_defaults(
                without_locations(self.model_dump(mode="json", exclude={"name": True, "experiment": True}))
            )
        )

    @property
    def run_name(self) -> str:
        split = self.split.kind
        regime = "" if self.regime.kind == "scratch" else f"/transfer-{self.regime.mode}"
        regime += "" if self.tune is None else "/tuned"
        return f"{self.dataset.label}/{split}/{self.encoder.display}/{self.backbone.kind}{regime}/seed{self.seed}"

    def protocol(self) -> dict[str, Any]:
        """What must match for two results to be ranked against each other (without the dataset's own hash).
        The training regime is not part of it: a transfer row is ranked against scratch rows on the same data."""
        dataset = without_locations(self.dataset.model_dump(mode="json", exclude={"text_template"}))
        if not dataset["mix_with"]:
            del dataset["mix_with"]  # datasets before mixing existed: their fingerprints stay as they were
        return {
            "dataset": dataset,
            "split": self.split.model_dump(mode="json"),
            "max_len": self.train.max_len,
            "loss": self.train.loss,
            "negatives": self.train.negatives if self.train.loss == "sampled_ce" else None,
            "candidates": self.eval.candidates,
            "sampled_negatives": self.eval.sampled_negatives if self.eval.candidates == "sampled" else None,
            "exclude_seen": self.eval.exclude_seen,
            "ks": list(self.eval.ks),
            "ties": self.eval.ties,
            "cold_threshold": self.eval.cold_threshold,
            "popularity_head": self.eval.popularity_head,
            "popularity_tail": self.eval.popularity_tail,
            "history_bounds": list(self.eval.history_bounds),
            # generative rows rank only their beam; runs without a beam keep their fingerprints unchanged
            **({"beam_width": beam} if (beam := getattr(self.backbone, "beam_width", None)) else {}),
        }

    @property
    def config_hash(self) -> str:
        """The run's settings without its seed (and without where the data lives): runs that differ only by
        seed share it, so tables aggregate exactly those."""
        return config_hash(self.model_dump(mode="json"))


class PublishedFigure(Strict):
    """A figure a paper or public code reports for one row of the recipe, printed beside recbench's own.

    It never changes a run (not part of any hash); it says which row it is compared with and under which
    ranking convention the source measured it, so the side-by-side table compares like with like.
    """

    source: str = Field(description="Who reports it, e.g. 'UniSRec (KDD 2022), Table 2'.")
    dataset: str = Field(description="Data card of the row compared with.")
    encoder: str = Field(description="Encoder label of the row compared with (e.g. id).")
    backbone: str = Field(description="Backbone kind of the row compared with (e.g. sasrec).")
    split: str = Field("leave_one_out", description="Split kind of the row compared with.")
    loss: str | None = Field(None, description="Training loss of the row compared with (unset: any).")
    convention: Literal["history-kept", "history-excluded"] = Field(
        "history-kept", description="Whether the source ranks the user's history items (most papers do)."
    )
    protocol: str = Field("", description="The source's protocol in a few words (loss, split, ranking).")
    metrics: dict[str, float] = Field(description="Metric -> value, e.g. {hr@10: 0.108, ndcg@10: 0.0553}.")

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, v: dict[str, float]) -> dict[str, float]:
        for name in v:
            if not _METRIC_RE.match(name):
                raise ValueError(f"'{name}' is not a metric; use hr@K, ndcg@K or mrr@K (Recall@K is hr@K)")
        return v


class Recipe(Strict):
    """A comparison: shared sections, optionally a grid of alternatives."""

    name: str = Field(description="Recipe name (kebab-case).")
    description: str = ""
    experiment: str = Field("recbench", description="MLflow experiment the runs go to.")
    seed: int = Field(0, ge=0)
    dataset: DatasetSection | None = None
    split: SplitSection = LeaveOneOutSplit()
    encoder: EncoderSection | None = None
    backbone: BackboneSection | None = None
    train: TrainSection = TrainSection()
    eval: EvalSection = EvalSection()
    regime: RegimeSection = ScratchRegime()
    tune: TuneSection | None = Field(
        None, description="Tune every run's settings on validation first (see TuneSection); unset: no tuning."
    )
    grid: Grid | None = None
    runs: list[RunVariant] | None = Field(
        None,
        description="Explicit runs: each entry changes some shared sections (merged key by key); the grid's "
        "axes, if any, expand every entry.",
    )
    baseline: str | None = Field(
        None, description="Encoder label every other run is compared with (default: the first `id` encoder)."
    )
    published: list[PublishedFigure] = Field(
        default_factory=list,
        description="Published figures printed beside recbench's for the same rows (never part of a run).",
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_runs(cls, data: Any) -> Any:
        """Complete each `runs:` entry's partial sections from the shared ones, before validation."""
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            return data
        merged = []
        for entry in data["runs"]:
            if isinstance(entry, dict):
                entry = {
                    key: _merge_section(data.get(key) or {}, value) if key in _RUN_SECTIONS else value
                    for key, value in entry.items()
                }
            merged.append(entry)
        return {**data, "runs": merged}

    @model_validator(mode="after")
    def _complete(self):
        grid = self.grid or Grid()
        if self.runs is not None and not self.runs:
            raise ValueError("`runs` is empty: list at least one run, or leave `runs` out")
        variants = self.runs or []
        for i, variant in enumerate(variants):
            for section in (*_RUN_SECTIONS, "seed"):
                if getattr(variant, section) is not None and getattr(grid, section, None):
                    raise ValueError(
                        f"runs[{i}] sets `{section}`, which is also a grid axis (grid.{section}): "
                        "set it in one place"
                    )
        for section in ("dataset", "encoder", "backbone"):
            given = bool(variants) and all(getattr(v, section) is not None for v in variants)
            if getattr(self, section) is None and not getattr(grid, section) and not given:
                raise ValueError(
                    f"`{section}` is missing: give a `{section}:` section, a `grid.{section}` list, "
                    f"or `{section}` in every entry of `runs`"
                )
        specs = expand(self)
        for spec in specs:
            _check_spec(spec)
        labels = sorted({spec.encoder.display for spec in specs})
        if self.baseline is not None and self.baseline not in labels:
            raise ValueError(f"baseline '{self.baseline}' is not an encoder label of this recipe: {labels}")
        rows = {
            (x.dataset.name, x.encoder.display, x.backbone.kind, x.split.kind, x.train.loss) for x in specs
        }
        for i, fig in enumerate(self.published):
            if not any(
                r[:4] == (fig.dataset, fig.encoder, fig.backbone, fig.split) and fig.loss in (None, r[4])
                for r in rows
            ):
                raise ValueError(
                    f"published[{i}] ({fig.source}) compares with {fig.dataset}/{fig.split}/{fig.encoder}/"
                    f"{fig.backbone}"
                    + (f" (loss {fig.loss})" if fig.loss else "")
                    + ", which no run of this "
                    "recipe is: fix its dataset, encoder, backbone, split or loss"
                )
        return self


def _check_spec(spec: RunSpec) -> None:
    """Combinations that cannot work, refused before any data is loaded."""
    if spec.regime.kind == "transfer":
        _check_transfer(spec)
    if spec.tune is not None:
        from recbench.tuning import check_tune

        check_tune(spec)
    if spec.train.valid_metric.split("@")[1] not in {str(k) for k in spec.eval.ks}:
        raise ValueError(
            f"train.valid_metric {spec.train.valid_metric} needs its K in eval.ks {list(spec.eval.ks)}"
        )
    if spec.backbone.kind == "bert4rec" and spec.train.loss == "bce":
        raise ValueError("bert4rec trains with a cloze objective: use loss ce, sampled_ce or in_batch")
    if (spec.backbone.kind == "pop") != (spec.encoder.kind == "none"):
        raise ValueError(
            "the most-popular baseline reads no item representation: use `backbone: {kind: pop}` together "
            "with `encoder: {kind: none}` (and `encoder: {kind: none}` only with the pop backbone)"
        )
    beam = getattr(spec.backbone, "beam_width", None)
    if beam is not None:
        if spec.encoder.kind != "semantic_id" or spec.encoder.with_id:
            raise ValueError(
                f"backbone {spec.backbone.kind} generates semantic IDs: use `encoder: {{kind: semantic_id}}` "
                "without with_id"
            )
        if spec.train.loss != "ce":
            raise ValueError(
                f"backbone {spec.backbone.kind} trains with cross-entropy over the codes: set train.loss: ce"
            )
        if max(spec.eval.ks) > beam:
            raise ValueError(
                f"eval.ks contains {max(spec.eval.ks)}, more than the beam width {beam}: a generative model "
                f"ranks only its beam; raise backbone.beam_width to >= {max(spec.eval.ks)} or lower eval.ks"
            )


def _check_transfer(spec: RunSpec) -> None:
    regime = spec.regime
    if spec.backbone.kind == "pop":
        raise ValueError("the most-popular baseline learns nothing to transfer: use regime scratch for it")
    names = [d.name for d in regime.source]
    if spec.dataset.name in names or spec.dataset.mix_with:
        raise ValueError(
            f"regime.source lists the target dataset {spec.dataset.name}: the source stage would train on the "
            "target's validation and test items; list only other datasets"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"regime.source lists a dataset twice: {names}")
    if regime.mode == "lora":
        content = getattr(spec.encoder, "content", spec.encoder)  # a fusion encoder's content half
        if content.kind not in ("text", "clip") or content.mode == "frozen":
            raise ValueError(
                "regime.mode lora adapts a text or CLIP tower that runs at every step: use an encoder of kind "
                "text or clip with mode top_k or full (a frozen tower never runs while training)"
            )
    if regime.mode in ("zero_shot", "adapter", "lora") and spec.encoder.kind in ("id", "none"):
        raise ValueError(
            f"regime.mode {regime.mode} keeps the item representation from the source, but an ID table never "
            "transfers (target items are other items): use a content encoder (text, clip, fusion) or mode full"
        )


def expand(recipe: Recipe) -> list[RunSpec]:
    """Every run: each `runs:` entry (or the shared sections alone) times every combination of the grid's
    axes, in a stable order (entry, then dataset, split, backbone, encoder, seed)."""
    grid = recipe.grid or Grid()
    runs = []
    for variant in recipe.runs or [None]:

        def pick(section: str, variant=variant) -> Any:
            value = getattr(variant, section) if variant is not None else None
            return getattr(recipe, section) if value is None else value

        axes = {
            "dataset": grid.dataset or [pick("dataset")],
            "split": grid.split or [pick("split")],
            "backbone": grid.backbone or [pick("backbone")],
            "encoder": grid.encoder or [pick("encoder")],
            "seed": grid.seed or [pick("seed")],
        }
        for values in itertools.product(*axes.values()):
            chosen = dict(zip(axes, values))
            runs.append(
                RunSpec(
                    name=recipe.name,
                    experiment=recipe.experiment,
                    train=pick("train"),
                    eval=pick("eval"),
                    regime=pick("regime"),
                    tune=pick("tune"),
                    **chosen,
                )
            )
    hashes: dict[str, int] = {}
    for i, run in enumerate(runs):
        if run.recipe_hash in hashes:
            raise ValueError(
                f"runs {hashes[run.recipe_hash]} and {i} of the expanded recipe are identical "
                f"({run.run_name}): remove the duplicate from `grid` or `runs`"
            )
        hashes[run.recipe_hash] = i
    labels = {}
    for run in runs:
        key = (run.dataset.label, run.split.kind, run.backbone.kind, run.seed, run.encoder.display)
        if key in labels and labels[key] != (run.encoder, run.regime):
            raise ValueError(
                f"two runs of different encoders or training regimes share the label '{run.encoder.display}': "
                "give each encoder a distinct `label`"
            )
        labels[key] = (run.encoder, run.regime)
    return runs


def baseline_label(recipe: Recipe) -> str | None:
    """The encoder label the recipe's other runs are compared with: `baseline`, else the first `id` encoder."""
    if recipe.baseline:
        return recipe.baseline
    for spec in expand(recipe):
        if spec.encoder.kind == "id":
            return spec.encoder.display
    return None


def config_hash(spec: dict[str, Any]) -> str:
    """Hash of a resolved run (``RunSpec.model_dump(mode="json")``, as stored in recipe.json) without its
    seed, name, experiment and any ``data_dir``: the runs that differ only by seed share it."""
    data = {k: v for k, v in spec.items() if k not in ("seed", "name", "experiment")}
    data["dataset"] = data.get("dataset") or {}
    return _hash(_without_new_defaults(without_locations(data)))


def without_locations(data: Any) -> Any:
    """A run's dump (or part of it) without `data_dir` anywhere: where a dataset lives is not what it is, for
    the run's own dataset, the datasets mixed into it and a transfer regime's sources alike (only dataset
    sections have a `data_dir`)."""
    if isinstance(data, dict):
        return {k: without_locations(v) for k, v in data.items() if k != "data_dir"}
    if isinstance(data, list):
        return [without_locations(v) for v in data]
    return data


def _without_new_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A run's dump without the fields added after runs were stored, where they hold their defaults (a scratch
    regime, no mixed datasets, no tuning, every validation user): hashes of runs that do not use them stay what
    they were, so those runs are still reused and still aggregate with their earlier seeds. A tuned run's searched
    values are masked (:func:`mask_tuned`)."""
    data = dict(data)
    if data.get("regime") in (None, {"kind": "scratch"}):
        data.pop("regime", None)
    if isinstance(data.get("dataset"), dict) and not data["dataset"].get("mix_with"):
        data["dataset"] = {k: v for k, v in data["dataset"].items() if k != "mix_with"}
    if data.get("tune") is None:
        data.pop("tune", None)
    if isinstance(data.get("train"), dict) and data["train"].get("valid_users", 0) is None:
        data["train"] = {k: v for k, v in data["train"].items() if k != "valid_users"}
    return mask_tuned(data)


TUNED = "<tuned>"  # what a tuned run's dump holds, for its hashes and MLflow params, where the study chooses


def mask_tuned(data: dict[str, Any]) -> dict[str, Any]:
    """A run's dump with the values its `tune.space` searches replaced by TUNED: the study picks them (per
    seed), so they are no part of what the run is. A tuned run's hashes are then the same before tuning and
    after (with the best values applied), and its seeds aggregate as one row whatever each seed chose."""
    space = (data.get("tune") or {}).get("space") or {}
    if not space:
        return data
    data = json.loads(json.dumps(data))
    for key in space:
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[leaf] = TUNED
    return data


def _hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint(obj: Any) -> str:
    """Stable short hash of JSON-able data (canonical JSON, sha256, 16 hex digits)."""
    return _hash(obj)


# --------------------------------------------------------------------------------------------- loading


MAX_YAML_NODES = 100_000  # recipes have hundreds of nodes, the largest data card a few thousand


def yaml_nodes_over(data: Any, limit: int = MAX_YAML_NODES) -> bool:
    """True when `data` (parsed YAML) has more than `limit` nodes once every alias is expanded.

    Why: YAML aliases make a 500-byte document (a "billion laughs") expand into billions of nodes, and the
    parser returns it in microseconds as shared references; whatever walks it next (a deep copy, pydantic)
    then runs out of memory minutes later. Aliases stay allowed in small documents; the walk stops as soon as
    the budget is spent, so a bomb, or an alias that contains itself, is refused at once."""
    stack, count = [data], 1
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            children = [*node.keys(), *node.values()]
        elif isinstance(node, (list, tuple)):
            children = list(node)
        else:
            continue
        count += len(children)
        if count > limit:
            return True
        stack.extend(children)
    return False


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line from a YAML error: the problem and where (line, column), without PyYAML's echo of the text."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def parse_overrides(overrides: list[str] | None) -> list[tuple[list[str], Any]]:
    """`--set KEY=VALUE` items as (key path, value); VALUE is read as YAML (so `3e-4` is a number and
    `[1, 2]` a list), and a value that is not YAML is an error naming the override."""
    out = []
    for item in overrides or []:
        if "=" not in item:
            raise RecipeError(f"--set expects key=value (e.g. train.lr=3e-4), got '{item}'")
        key, raw = item.split("=", 1)
        path = [p for p in key.strip().split(".") if p]
        if not path:
            raise RecipeError(f"--set has an empty key in '{item}'")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise RecipeError(
                f"--set '{item}': the value {raw!r} is not valid YAML ({_yaml_problem(exc)}); fix it, or quote "
                f"a value meant as text: --set \"{key}='{raw}'\""
            ) from None
        if yaml_nodes_over(value):
            raise RecipeError(f"--set '{item}': the value expands to more than {MAX_YAML_NODES} YAML nodes")
        out.append((path, value))
    return out


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    data = json.loads(json.dumps(raw))  # deep copy of plain data
    for path, value in parse_overrides(overrides):
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return data


def _plain(value: Any) -> Any:
    """JSON for the YAML values that are not plain data: a date (YAML reads an unquoted 2024-01-01 as one)
    becomes its ISO text; anything else (`!!binary`, `!!set`) is refused with the value named."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise TypeError(
        f"the {type(value).__name__} value {value!r:.60} is not plain YAML data (text, numbers, lists, "
        "mappings): write it as quoted text"
    )


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; errors are :class:`RecipeError` with a fix in the message."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RecipeError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}, column {column}): "
            "save the recipe as UTF-8"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    if yaml_nodes_over(raw):
        raise RecipeError(
            f"{path}: the YAML expands to more than {MAX_YAML_NODES} nodes (aliases `*name` repeating "
            "anchored `&name` blocks, perhaps one inside another): a recipe needs a few hundred; write the "
            "sections out or use `grid:`/`runs:`"
        )
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of sections (name, dataset, encoder, ...)")
    try:
        raw = json.loads(json.dumps(raw, default=_plain))
    except TypeError as exc:
        raise RecipeError(f"{path}: {exc}") from None
    recipe = recipe_from_dict(apply_overrides(raw, overrides), source=str(path))
    check_encoder_depths(recipe, source=str(path))
    return recipe


def recipe_from_dict(raw: dict, source: str = "<recipe>") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, source)) from None


def check_encoder_depths(recipe: Recipe, source: str = "<recipe>") -> None:
    """Refuse `mode: top_k` with more layers than a tower has, before any data is loaded.

    The depth comes from the model's config (never its weights), read offline: a local folder, the packaged
    copy of an alias, or the local hub cache. A hub id not available offline is not refused here: the check
    runs again when the model loads. Config code from the hub is never run here (trust_remote_code=False);
    a model that needs it is likewise checked at load."""
    seen = set()
    for spec in expand(recipe):
        section = spec.encoder.content if spec.encoder.kind == "fusion" else spec.encoder
        if section.kind not in ("text", "clip") or section.mode != "top_k":
            continue
        key = (section.kind, section.model, section.revision, getattr(section, "towers", "text"))
        if key in seen:
            continue
        seen.add(key)
        for tower, layers in _tower_depths(section, source).items():
            if section.top_k > layers:
                raise RecipeError(
                    f"{source}: encoder '{spec.encoder.display}' has top_k: {section.top_k}, but the {tower} "
                    f"tower of {section.model} has {layers} layers: set top_k between 1 and {layers}, or use "
                    "mode: full to train every layer"
                )


def _tower_depths(section: Any, source: str) -> dict[str, int]:
    """Layers per tower that top_k would split ({"text": 6}); {} when the config is not available offline."""
    from recbench.encoders.pretrained import ALIASES, PACKAGED, quiet_loading

    folder = Path(section.model).expanduser()
    target: str | Path
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise RecipeError(
                f"{source}: model folder {folder} has no config.json (save the model with save_pretrained)"
            )
        target = folder
    else:
        target = ALIASES.get(section.model, section.model)
        package = PACKAGED.get(target) if section.revision is None else None
        if package:
            import importlib

            try:
                target = Path(importlib.import_module(package).get_model_path())
            except ImportError:
                pass
    try:
        from transformers import AutoConfig

        with quiet_loading():
            config = AutoConfig.from_pretrained(
                target,
                revision=None if isinstance(target, Path) else section.revision,
                local_files_only=True,
                trust_remote_code=False,
            )
    except Exception:  # noqa: BLE001 - not cached, needs remote code, unreadable: checked again at load
        return {}
    if section.kind == "text":
        towers = {"text": config}
    else:
        wanted = ("text", "image") if section.towers == "both" else (section.towers,)
        subs = {"text": "text_config", "image": "vision_config"}
        towers = {t: getattr(config, subs[t], None) for t in wanted}
    depths = {t: getattr(c, "num_hidden_layers", None) for t, c in towers.items()}
    return {t: n for t, n in depths.items() if isinstance(n, int)}


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid recipe ({exc.error_count()} problem{'s' * (exc.error_count() > 1)})"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(err["loc"][:-1])
            near = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
            hint = f"did you mean '{near[0]}'?" if near else f"valid keys here: {', '.join(sorted(valid))}"
            key_path = ".".join(_user_path(err["loc"]))
            lines.append(f"  - unknown key '{key_path}' in {source}: {hint}")
        elif err["type"] == "finite_number":
            lines.append(
                f"  - {'.'.join(_user_path(err['loc'])) or where}: {err['input']!r} is not a number (YAML's "
                ".nan and .inf are refused): give a finite value"
            )
        else:
            lines.append(f"  - {'.'.join(_user_path(err['loc'])) or where}: {err['msg']}")
    return "\n".join(lines)


_ALL_TAGS = {
    cls.model_fields["kind"].default
    for cls in (
        LeaveOneOutSplit,
        TemporalSplit,
        ColdItemSplit,
        IdEncoderSection,
        TextEncoderSection,
        ClipEncoderSection,
        FusionEncoderSection,
        NoEncoderSection,
        SemanticIdEncoderSection,
        SASRecSection,
        GRU4RecSection,
        BERT4RecSection,
        PopSection,
        TigerSection,
    )
}


def _user_path(loc: tuple) -> list[str]:
    """A pydantic error location as the user wrote it (without the union tags pydantic inserts)."""
    return [str(p) for p in loc if not (isinstance(p, str) and p in _ALL_TAGS)]


def _valid_keys(loc: tuple) -> list[str]:
    """Field names of the model at a pydantic error location (walking unions by their tag)."""
    tp: Any = Recipe
    for part in loc:
        tp = _step(_unwrap(tp), part)
        if tp is None:
            return []
    tp = _unwrap(tp)
    return list(tp.model_fields) if _is_model(tp) else []


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] wrappers."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif _is_union(tp) and sum(a is not type(None) for a in get_args(tp)) == 1:
            tp = next(a for a in get_args(tp) if a is not type(None))
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) is Union or type(tp).__name__ == "UnionType"


def _step(tp: Any, part: Any) -> Any:
    if _is_model(tp):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field else None
    if get_origin(tp) in (list, tuple):
        return get_args(tp)[0]
    if _is_union(tp):
        for member in map(_unwrap, get_args(tp)):
            if _is_model(member) and "kind" in member.model_fields:
                if member.model_fields["kind"].default == part:
                    return member
    return None


TransferRegime.model_rebuild()
