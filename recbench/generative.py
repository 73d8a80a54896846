"""Generative retrieval over semantic IDs (TIGER, Rajput et al., NeurIPS 2023): `backbone: {kind: tiger}`.

An encoder-decoder transformer reads a user's history as a sequence of code tokens (each item = its L'
semantic codes, :mod:`recbench.encoders.semantic_id`) and generates the next item's codes one level at a time.
At evaluation a beam search constrained to the catalogue's code tuples (a prefix trie: a beam can only extend
a prefix that some item has) returns the top-B items, best first.

How it meets the shared evaluator (:func:`recbench.evaluation.protocol.evaluate`): `scorer()` turns the beam
into scores, B - r for the item at beam rank r (0-based) and 0 for every other item, so the beam's items take
ranks 1..B and a target outside the beam ties with the rest of the catalogue; under the pessimistic tie rule
it ranks after all of them (under `expected`, at the expected rank among them), never inside the beam.
Metrics at K <= B are therefore exact; the recipe checks that every K of eval.ks is at most the beam width.
The beam width is part of the run's protocol, and decoding cost (ms per user) is reported in the run's cost.

How it trains: through the shared `fit` loop, by the `own_loss` capability (cross-entropy over the target
item's codes, level by level, teacher-forced). Deviations from TIGER, each to train every position of a window
in one pass as recbench trains every causal backbone: the encoder attends causally over *items* (a token sees
the tokens of its own and earlier items; TIGER's encoder is bidirectional and sees one prefix per example), and
the decoder predicts, for every position t of a window at once, the codes of item t + 1 while cross-attending
only to the tokens of items <= t. TIGER also prepends a hashed user-id token; recbench has no user features,
so there is none. Positions are learned embeddings of an item's distance from the most recent item (left
padding can be trimmed without changing anything) instead of T5's relative attention biases.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recbench.encoders.semantic_id import SemanticIdEncoder, prefix_ids
from recbench.model import TrainStates

# --------------------------------------------------------------------------------------------- trie + beam


@dataclass
class CodeTrie:
    """The catalogue's code tuples as a prefix trie over dense prefix ids.

    children[l]: (P_l, K_l) long, the prefix id at level l + 1 reached from prefix p by code k, or -1 when no
    item has that prefix (P_0 = 1: the empty prefix). leaf: (P_L,) item index (1..N) of each full tuple."""

    children: list[torch.Tensor]
    leaf: torch.Tensor

    @classmethod
    def from_codes(cls, codes: torch.Tensor, sizes: list[int]) -> CodeTrie:
        """codes (N, L) unique tuples, row i = item i + 1; sizes: codebook size per level."""
        n, levels = codes.shape
        if len({tuple(r) for r in codes.tolist()}) != n:
            raise ValueError("a code trie needs one tuple per item: disambiguate colliding codes first")
        prefixes, counts = prefix_ids(codes)  # (N, L) prefix id after each level
        parents = torch.zeros(n, dtype=torch.long)  # (N,) the empty prefix
        children = []
        for level in range(levels):
            table = torch.full((counts[level - 1] if level else 1, sizes[level]), -1, dtype=torch.long)
            table[parents, codes[:, level]] = prefixes[:, level]
            children.append(table)
            parents = prefixes[:, level]
        leaf = torch.zeros(counts[-1], dtype=torch.long)
        leaf[parents] = torch.arange(1, n + 1)
        return cls(children, leaf)

    def to(self, device) -> CodeTrie:
        return CodeTrie([c.to(device) for c in self.children], self.leaf.to(device))


# (codes so far (B, W, l), parents (B, W) or None) -> log-probs of level l (B, W, K_l). parents[b, j]: which beam
# of the previous call beam j extends (None at the first level), so a step can keep per-beam caches.
StepFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def beam_search(step: StepFn, trie: CodeTrie, batch: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Constrained beam search -> items (B, width) best first, 0 where the beam holds fewer valid tuples, and
    their summed log-probs (B, width), -inf there.

    Every kept beam is a prefix of some item's tuple (children outside the trie are masked before the
    top-k), so every emitted tuple is an item and no item is emitted twice. With width >= catalogue size no
    valid prefix is ever cut, so the result is the whole catalogue, each item once."""
    device = trie.leaf.device
    node = torch.zeros(batch, 1, dtype=torch.long, device=device)  # (B, 1) prefix ids, -1 = empty slot
    score = torch.zeros(batch, 1, device=device)  # (B, 1)
    so_far = torch.zeros(batch, 1, 0, dtype=torch.long, device=device)  # (B, W, l)
    parents = None  # (B, W) the previous level's beam each beam extends
    for table in trie.children:
        k_l = table.shape[1]
        logp = step(so_far, parents)  # (B, W, K_l)
        child = table[node.clamp(min=0)]  # (B, W, K_l)
        valid = (child >= 0) & (node >= 0).unsqueeze(-1)  # (B, W, K_l)
        total = (score.unsqueeze(-1) + logp).masked_fill(~valid, -torch.inf)  # (B, W, K_l)
        keep = min(width, total.shape[1] * k_l)
        score, flat = total.flatten(1).topk(keep, dim=1)  # (B, W'), (B, W') sorted best first
        beam, code = flat // k_l, flat % k_l  # (B, W')
        ok = valid.flatten(1).gather(1, flat)  # (B, W')
        node = torch.where(ok, child.flatten(1).gather(1, flat), torch.full_like(flat, -1))
        score = score.masked_fill(~ok, -torch.inf)
        history = so_far.gather(1, beam.unsqueeze(-1).expand(-1, -1, so_far.shape[2]))  # (B, W', l)
        so_far = torch.cat([history, code.unsqueeze(-1)], dim=2)  # (B, W', l + 1)
        parents = beam
    items = torch.where(node >= 0, trie.leaf[node.clamp(min=0)], torch.zeros_like(node))  # (B, W')
    return items, score


# --------------------------------------------------------------------------------------------- model


class CodeSeq2Seq(nn.Module):
    """The encoder-decoder over code tokens. It holds what a backbone holds for the runner (windows shifted
    to the next item, no cloze masking) and the transformer layers; the code embeddings are the encoder's."""

    objective = "causal"
    mask_prob = 0.0
    last_item_share = 0.0
    shifted_windows = True

    def __init__(
        self,
        dim: int,
        levels: int,
        sizes: list[int],
        max_len: int,
        layers: int,
        decoder_layers: int,
        heads: int,
        inner: int,
        dropout: float,
    ):
        super().__init__()
        self.dim, self.levels = dim, levels
        self.position = nn.Embedding(max_len, dim)  # 0 = the most recent item
        self.start = nn.Parameter(torch.zeros(dim))  # encoder token 0: always attendable (no empty softmax)
        self.bos = nn.Parameter(torch.zeros(dim))  # decoder input of the first level
        self.step = nn.Embedding(levels, dim)  # which level a decoder token predicts
        self.encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, inner, dropout, batch_first=True, norm_first=True)
            for _ in range(layers)
        )
        self.decoder = nn.ModuleList(
            nn.TransformerDecoderLayer(dim, heads, inner, dropout, batch_first=True, norm_first=True)
            for _ in range(decoder_layers)
        )
        self.enc_norm = nn.LayerNorm(dim)
        self.dec_norm = nn.LayerNorm(dim)
        self.heads = nn.ModuleList(nn.Linear(dim, s) for s in sizes)
        for p in (self.start, self.bos):
            nn.init.normal_(p, std=0.02)

    def encode(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, L', D) per-level vectors of the history items, keep (B, T) -> memory (B, 1 + T*L', D).

        Item-causal: a token attends the start token and the tokens of its own and earlier items."""
        b, t, levels, d = tokens.shape
        pos = torch.arange(t - 1, -1, -1, device=tokens.device)  # (T,) distance from the last column
        x = (tokens + self.position(pos)[None, :, None, :]).reshape(b, t * levels, d)  # (B, T*L', D)
        x = torch.cat([self.start.expand(b, 1, d), x], dim=1)  # (B, S, D), S = 1 + T*L'
        item = torch.cat(
            [
                torch.full((1,), -1, dtype=torch.long, device=tokens.device),
                torch.arange(t, device=tokens.device).repeat_interleave(levels),
            ]
        )  # (S,) item position of each token (-1: start)
        blocked = item.unsqueeze(0) > item.unsqueeze(1)  # (S, S) True = key after the query's item
        pad = torch.cat([keep.new_ones(b, 1), keep.repeat_interleave(levels, dim=1)], dim=1)  # (B, S)
        for layer in self.encoder:
            x = layer(x, src_mask=blocked, src_key_padding_mask=~pad)
        return self.enc_norm(x), pad

    def decode(
        self, inputs: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor, self_mask, cross_mask
    ) -> torch.Tensor:
        """inputs (B, Q, D) decoder tokens, memory (B, S, D) -> states (B, Q, D)."""
        y = inputs
        for layer in self.decoder:
            y = layer(y, memory, tgt_mask=self_mask, memory_mask=cross_mask, memory_key_padding_mask=~pad)
        return self.dec_norm(y)

    def decode_windows(
        self, inputs: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor, cross_mask: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced decoding of every window position at once: inputs (B, T, L', D) -> states
        (B, T, L', D). What :meth:`decode` computes with a (T*L', T*L') self-attention mask that lets a token
        see only the earlier tokens of its own position, but with that self-attention run per position
        ((B*T, L', L') instead of (B, T*L', T*L'): the blocked entries are never computed); the cross-attention
        reads the memory once per window (cross_mask (T*L', S): True = an item after the token's position)."""
        b, t, levels, d = inputs.shape
        causal = torch.ones(levels, levels, dtype=torch.bool, device=inputs.device).triu(1)  # (L', L')
        y = inputs.reshape(b * t, levels, d)  # (B*T, L', D)
        for layer in self.decoder:
            h = layer.norm1(y)
            y = y + layer.dropout1(layer.self_attn(h, h, h, attn_mask=causal, need_weights=False)[0])
            q = layer.norm2(y).reshape(b, t * levels, d)  # (B, T*L', D)
            cross = layer.multihead_attn(
                q, memory, memory, attn_mask=cross_mask, key_padding_mask=~pad, need_weights=False
            )[0]
            y = y + layer.dropout2(cross).reshape(b * t, levels, d)
            y = y + layer._ff_block(layer.norm3(y))
        return self.dec_norm(y).reshape(b, t, levels, d)


class GenerativeRecommender(nn.Module):
    """TIGER-style generative retrieval: semantic-ID encoder (codes, token embeddings) + `CodeSeq2Seq`.

    Cost, and why each saving leaves the results as they were (tests/test_generative.py checks each):

    - Length groups. Histories are left-padded to max_len, and one long history in a batch of short ones
      pads every row to its length, while attention costs grow with the square of it (S = 1 + T * L' tokens).
      Training splits each batch into groups of `train_group` windows of similar length, evaluation sorts the
      users of a batch by length and decodes `users_per_pass` at a time, and each group is cut to its longest
      history (:meth:`_trim`). Exact: padding is masked in every attention and positions count from the most
      recent item, so a row's outputs do not depend on its neighbours or on how much padding it has; the loss
      is the same mean (summed per group, divided once). Only dropout's random draws land on other tokens.
    - Incremental beam decoding (:meth:`generate`). Each level step feeds only the newest token of every beam
      through the decoder, reading the earlier tokens' self-attention inputs from a per-layer cache reordered
      by the beam's parents, instead of re-running the whole prefix; and the beams of one user are the queries
      of one cross-attention over that user's memory instead of W copies of the memory. Exact: the decoder is
      causal (a token's state depends only on earlier tokens) and attention rows are independent queries.
    - `precision: bf16` (declared in the recipe, part of its hash): autocast to bfloat16 in training and
      decoding; this one does change the numbers.
    """

    trainable = True
    train_group = 16  # windows per length group in training (benchmarks/tiger_cost.py: 2.5x faster than 64)
    users_per_pass = 16  # users per decoding pass (length-sorted) in evaluation

    def __init__(
        self,
        encoder: SemanticIdEncoder,
        backbone: CodeSeq2Seq,
        num_items: int,
        max_len: int,
        beam_width: int,
        precision: str = "fp32",
    ):
        super().__init__()
        if encoder.levels == 0:
            raise ValueError("prepare() the semantic-ID encoder before building the generative model")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.encoder, self.backbone = encoder, backbone
        self.num_items, self.max_len, self.beam_width = num_items, max_len, beam_width
        self.precision = precision
        self.trie = CodeTrie.from_codes(encoder.codes[1:].cpu(), encoder.code_sizes)
        self.users_decoded = 0
        self.decode_s = 0.0

    @property
    def objective(self) -> str:
        return self.backbone.objective

    def _autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @staticmethod
    def _trim(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Drop the left columns that are padding in every row (positions count from the right)."""
        real = tensors[0] > 0  # (B, T)
        first = int(real.any(0).float().argmax()) if bool(real.any()) else tensors[0].shape[1] - 1
        return tuple(t[:, first:] for t in tensors)

    @staticmethod
    def _length_groups(inputs: torch.Tensor, size: int) -> list[torch.Tensor]:
        """Row indices (ascending inside a group) of groups of `size` rows of similar history length."""
        lengths = (inputs > 0).sum(1)  # (B,)
        order = torch.argsort(lengths, descending=True, stable=True)  # (B,)
        return [group.sort().values for group in order.split(size)]

    def own_loss(self, inputs, targets, catalogue, generator) -> tuple[torch.Tensor, TrainStates]:
        """The `fit` capability: mean cross-entropy over the codes of every target (B, T) of the batch, the
        mean over levels of the mean over targets, computed over length groups (see the class docstring)."""
        sel = targets > 0  # (B, T)
        m = int(sel.sum())
        counts = sel.sum(1)  # (B,) targets per row
        offsets = torch.cumsum(counts, 0) - counts  # (B,) where each row's targets start among the M
        total = inputs.new_zeros((), dtype=torch.float)
        states, where = [], []
        with self._autocast(inputs.device):
            for rows in self._length_groups(inputs, self.train_group):
                summed, h = self._group_loss(*self._trim(inputs[rows], targets[rows]))  # (), (m_g, D)
                total = total + summed
                states.append(h)
                n = counts[rows]  # (g,)
                first = (torch.cumsum(n, 0) - n).repeat_interleave(n)  # (m_g,)
                where.append(
                    offsets[rows].repeat_interleave(n) + torch.arange(len(first), device=n.device) - first
                )
        loss = total / (self.encoder.levels * max(1, m))
        h = torch.cat(states)[torch.argsort(torch.cat(where))]  # (M, D) in the batch's row-major order
        return loss, TrainStates(states=h, targets=targets[sel], positions=sel, vectors=self.encoder)

    def _group_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs, targets (B, T) -> summed cross-entropy over every target's L' codes, and the last decoder
        state of each target (M, D). Teacher-forced: the decoder reads BOS, c1, .., c_{L'-1} of item t + 1."""
        b, t = inputs.shape
        levels = self.encoder.levels
        memory, pad = self.backbone.encode(self.encoder.level_vectors(inputs), inputs > 0)  # (B, S, D)
        codes = self.encoder.codes[targets]  # (B, T, L')
        target_tokens = self.encoder.level_vectors(targets)  # (B, T, L', D) teacher forcing
        shifted = torch.cat(
            [self.backbone.bos.expand(b, t, 1, -1), target_tokens[:, :, :-1]], dim=2
        )  # (B, T, L', D) the decoder reads BOS, c1, .., c_{L'-1}
        steps = self.backbone.step(torch.arange(levels, device=inputs.device))  # (L', D)
        dec_in = shifted + steps  # (B, T, L', D)
        q_pos = torch.arange(t, device=inputs.device).repeat_interleave(levels)  # (Q,) window position
        k_item = torch.cat(
            [
                torch.full((1,), -1, dtype=torch.long, device=inputs.device),
                torch.arange(t, device=inputs.device).repeat_interleave(levels),
            ]
        )  # (S,)
        cross_mask = k_item.unsqueeze(0) > q_pos.unsqueeze(1)  # (Q, S) True = an item after position t
        states = self.backbone.decode_windows(dec_in, memory, pad, cross_mask)  # (B, T, L', D)
        sel = targets > 0  # (B, T)
        h = states[sel]  # (M, L', D)
        y = codes[sel]  # (M, L')
        summed = sum(
            F.cross_entropy(head(h[:, i]).float(), y[:, i], reduction="sum")
            for i, head in enumerate(self.backbone.heads)
        )
        return summed, h[:, -1]

    @torch.no_grad()
    def generate(
        self, histories: torch.Tensor, width: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """histories (B, T) item indices -> beam items (B, W) best first (0 = empty slot) and log-probs.

        Incremental: a level step runs only each beam's newest decoder token; the earlier tokens' inputs to
        every self-attention come from `cache` (per layer (B, W, depth, D), reordered by the beams' parents)."""
        width = width or self.beam_width
        histories = self._trim(histories)[0]
        b = len(histories)
        with self._autocast(histories.device):
            memory, pad = self.backbone.encode(self.encoder.level_vectors(histories), histories > 0)
        cache: list[torch.Tensor] = []  # per decoder layer: (B, W, depth, D) normed inputs of tokens so far
        backbone = self.backbone

        def step(so_far: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
            _, w, depth = so_far.shape
            if depth == 0:
                x = backbone.bos.expand(b, 1, -1)  # (B, 1, D)
            else:
                prefix = so_far.reshape(b * w, depth)  # (R, depth), R = B * W
                x = self._code_vector(depth - 1, prefix).reshape(b, w, -1)  # (B, W, D) the newest code
            x = (x + backbone.step.weight[depth]).reshape(b * w, 1, -1)  # (R, 1, D)
            if parents is not None:
                index = parents[:, :, None, None].expand(-1, -1, depth, x.shape[-1])  # (B, W, depth, D)
                cache[:] = [c.gather(1, index) for c in cache]  # tokens 0..depth-1 of each beam's prefix
            with self._autocast(histories.device):
                for i, layer in enumerate(backbone.decoder):
                    h = layer.norm1(x)  # (R, 1, D)
                    past = (
                        torch.cat([cache[i].reshape(b * w, depth, -1), h], 1) if depth else h
                    )  # (R, depth+1, D)
                    if depth:
                        cache[i] = past.reshape(b, w, depth + 1, -1)
                    else:
                        cache.append(past.reshape(b, w, 1, -1))
                    x = x + layer.dropout1(layer.self_attn(h, past, past, need_weights=False)[0])
                    q = layer.norm2(x).reshape(b, w, -1)  # (B, W, D): one user's beams query its memory
                    cross = layer.multihead_attn(
                        q, memory, memory, key_padding_mask=~pad, need_weights=False
                    )[0]
                    x = x + layer.dropout2(cross).reshape(b * w, 1, -1)
                    x = x + layer._ff_block(layer.norm3(x))
                logits = backbone.heads[depth](backbone.dec_norm(x[:, 0]))  # (R, K_depth)
            return F.log_softmax(logits.float(), dim=-1).reshape(b, w, -1)

        return beam_search(step, self.trie, b, width)

    def _code_vector(self, level: int, prefix: torch.Tensor) -> torch.Tensor:
        """Decoder input vector of the code chosen at `level`, from the prefix (R, level + 1) ending in it ->
        (R, D): the encoder's row of that code, or of that prefix when the encoder combines prefixes (the
        same vectors teacher forcing reads in training)."""
        rows = self._prefix_rows(level, prefix) if self.encoder.combine == "prefix" else prefix[:, level]
        return self.encoder.tables[level](rows)

    def _prefix_rows(self, level: int, prefixes: torch.Tensor) -> torch.Tensor:
        """Dense prefix ids (the encoder's table rows) of code prefixes (R, level + 1) that exist in the trie."""
        node = torch.zeros(len(prefixes), dtype=torch.long, device=prefixes.device)
        for depth in range(level + 1):
            node = self.trie.children[depth].to(prefixes.device)[node, prefixes[:, depth]]
        return node

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """(B, T) histories -> (B, N + 1) scores: beam rank r (0-based) scores width - r, every other item 0.
        Users are decoded `users_per_pass` at a time in order of history length (each pass cut to its
        longest history); each row's scores are its own whatever the batch holds."""
        self.trie = self.trie.to(next(self.parameters()).device)
        self.users_decoded, self.decode_s = 0, 0.0

        def score(histories: torch.Tensor) -> torch.Tensor:
            t0 = time.perf_counter()
            out = torch.zeros(len(histories), self.num_items + 1, device=histories.device)
            for rows in self._length_groups(histories, self.users_per_pass):
                items, logp = self.generate(histories[rows])  # (b, W)
                value = self.beam_width - torch.arange(items.shape[1], device=items.device, dtype=out.dtype)
                value = torch.where(torch.isfinite(logp), value.expand_as(logp), torch.zeros_like(logp))
                part = torch.zeros(len(rows), self.num_items + 1, device=out.device)
                part.scatter_(1, items, value)  # empty slots write 0 into the padding column
                part[:, 0] = 0.0
                out[rows] = part
            self.users_decoded += len(histories)
            self.decode_s += time.perf_counter() - t0
            return out

        return score

    def cost_facts(self) -> dict:
        """Decoding cost of the last evaluation (the test users, as the runner evaluates test last)."""
        return {
            "beam_width": self.beam_width,
            "decode_ms_per_user": 1000 * self.decode_s / max(1, self.users_decoded),
        }


def build_generative(encoder_section, section, content, num_items: int, max_len: int, reporter=None):
    """(model, encoder report) for `backbone: {kind: tiger}`: the semantic-ID encoder is built and prepared
    first (its codes size the trie and the output heads)."""
    from recbench.model import build_encoder

    encoder = build_encoder(encoder_section, content, dim=section.dim)
    if not isinstance(encoder, SemanticIdEncoder):
        raise ValueError("backbone tiger generates semantic IDs: use it with `encoder: {kind: semantic_id}`")
    report = encoder.prepare(reporter)
    backbone = CodeSeq2Seq(
        dim=section.dim,
        levels=encoder.levels,
        sizes=encoder.code_sizes,
        max_len=max_len,
        layers=section.layers,
        decoder_layers=section.decoder_layers,
        heads=section.heads,
        inner=section.inner,
        dropout=section.dropout,
    )
    model = GenerativeRecommender(
        encoder, backbone, num_items, max_len, section.beam_width, precision=section.precision
    )
    return model, report
