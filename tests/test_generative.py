"""Generative retrieval: the code trie, constrained beam search, the scorer and learning a toy task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import successor_sequences
from test_semantic_ids import FixedCodes, sid_spec

from recbench.config import RecipeError, expand, recipe_from_dict
from recbench.data.batches import make_windows
from recbench.data.splits import EvalSet
from recbench.encoders.semantic_id import SemanticIdEncoder, disambiguate
from recbench.evaluation.protocol import Protocol, evaluate
from recbench.generative import CodeSeq2Seq, CodeTrie, GenerativeRecommender, beam_search
from recbench.training import FitConfig, LossSpec, fit


def random_catalogue(n: int = 60, sizes=(4, 3, 3), seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(seed)
    raw = torch.stack([torch.randint(0, s, (n,), generator=g) for s in sizes], dim=1)
    codes, facts = disambiguate(raw)
    extra = [facts["max_collision_group"]] if codes.shape[1] > raw.shape[1] else []
    return codes, [*sizes, *extra]


def random_step(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)

    def step(so_far, parents):
        b, w, depth = so_far.shape
        assert (parents is None) == (depth == 0)
        return torch.log_softmax(torch.randn(b, w, sizes[depth], generator=g), dim=-1)

    return step


@pytest.mark.parametrize("width", [1, 3, 7, 25])
def test_the_trie_never_emits_an_invalid_tuple(width):
    codes, sizes = random_catalogue()
    trie = CodeTrie.from_codes(codes, sizes)
    valid = {tuple(r) for r in codes.tolist()}
    items, logp = beam_search(random_step(sizes), trie, batch=5, width=width)
    assert items.shape == (5, width) and bool((items > 0).all())
    assert {tuple(codes[i - 1].tolist()) for i in items.flatten().tolist()} <= valid
    assert all(len(set(row)) == len(row) for row in items.tolist())  # no item twice in one list
    assert bool((logp[:, :-1] >= logp[:, 1:]).all())  # best first


def test_beam_wider_than_the_catalogue_returns_every_item_exactly_once():
    codes, sizes = random_catalogue(n=40)
    trie = CodeTrie.from_codes(codes, sizes)
    items, logp = beam_search(random_step(sizes, seed=3), trie, batch=3, width=64)
    for row, scores in zip(items.tolist(), logp.tolist()):
        real = [i for i in row if i]
        assert sorted(real) == list(range(1, 41))
        assert all(s == -np.inf for i, s in zip(row, scores) if not i)


def test_beam_follows_the_model_best_tuple_first():
    codes = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    trie = CodeTrie.from_codes(codes, [2, 2])

    def step(so_far, parents):  # prefers code 1 then code 0: item (1, 0) = item 3
        b, w, depth = so_far.shape
        pref = torch.tensor([[-2.0, -0.1], [-0.1, -2.0]])[depth]
        return pref.expand(b, w, 2)

    items, _ = beam_search(step, trie, batch=2, width=2)
    assert items[:, 0].tolist() == [3, 3]


def test_a_trie_refuses_colliding_tuples():
    with pytest.raises(ValueError, match="disambiguate"):
        CodeTrie.from_codes(torch.tensor([[0, 1], [0, 1]]), [1, 2])


def make_model(
    num_items: int,
    codes: torch.Tensor,
    sizes: list[int],
    beam: int = 5,
    max_len: int = 8,
    layers: int = 1,
    combine: str = "sum",
    precision: str = "fp32",
):
    torch.manual_seed(0)
    enc = SemanticIdEncoder(num_items, 32, FixedCodes(codes, sizes), combine=combine)
    enc.prepare()
    backbone = CodeSeq2Seq(32, enc.levels, enc.code_sizes, max_len, layers, layers, 2, 64, 0.0)
    return GenerativeRecommender(enc, backbone, num_items, max_len, beam, precision=precision)


def test_scorer_ranks_the_beam_and_puts_everything_else_after_it():
    codes, sizes = random_catalogue(n=30)
    model = make_model(30, codes, sizes, beam=5).eval()
    histories = torch.tensor([[0, 0, 3, 4], [1, 2, 5, 6]])
    scores = model.scorer()(histories)
    items, _ = model.generate(histories)
    assert scores.shape == (2, 31) and bool((scores[:, 0] == 0).all())
    for b in range(2):
        assert scores[b, items[b]].tolist() == [5.0, 4.0, 3.0, 2.0, 1.0]
        assert int((scores[b] > 0).sum()) == 5
    # the shared evaluator: a target outside the beam ranks after the whole beam (pessimistic ties)
    outside = [i for i in range(1, 31) if i not in items[0].tolist() and i not in (3, 4)][0]
    inside = int(items[0, 1])
    eval_set = EvalSet(np.array([0, 0]), [np.array([3, 4])] * 2, np.array([inside, outside]))
    protocol = Protocol(num_items=30, max_len=8, ks=(1, 5), exclude_seen=False)
    ev = evaluate(model.scorer(), eval_set, protocol)
    assert ev.ranks[0] == 2 and ev.ranks[1] > 5
    assert model.cost_facts()["beam_width"] == 5 and model.cost_facts()["decode_ms_per_user"] > 0


def full_prefix_generate(model: GenerativeRecommender, histories: torch.Tensor, width: int):
    """The reference decoder: every level step re-runs each beam's whole prefix through `CodeSeq2Seq.decode`
    against its own copy of the user's memory (what incremental decoding must reproduce)."""
    histories = model._trim(histories)[0]
    backbone, b = model.backbone, len(histories)
    memory, pad = backbone.encode(model.encoder.level_vectors(histories), histories > 0)

    def step(so_far, parents):
        _, w, depth = so_far.shape
        rows = so_far.reshape(b * w, depth)
        parts = [backbone.bos.expand(b * w, -1)]
        parts += [model._code_vector(level, rows[:, : level + 1]) for level in range(depth)]
        inputs = torch.stack(parts, dim=1) + backbone.step(torch.arange(depth + 1))  # (R, depth + 1, D)
        causal = torch.ones(depth + 1, depth + 1, dtype=torch.bool).triu(1)
        out = backbone.decode(
            inputs, memory.repeat_interleave(w, 0), pad.repeat_interleave(w, 0), causal, None
        )
        return torch.log_softmax(backbone.heads[depth](out[:, -1]), dim=-1).reshape(b, w, -1)

    with torch.no_grad():
        return beam_search(step, model.trie, b, width)


def mixed_histories(n_items: int, users: int, max_len: int, seed: int = 0) -> torch.Tensor:
    """(users, max_len) left-padded histories of lengths 1..max_len."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(users, max_len, dtype=torch.long)
    for u in range(users):
        n = int(torch.randint(1, max_len + 1, (1,), generator=g))
        out[u, max_len - n :] = torch.randint(1, n_items + 1, (n,), generator=g)
    return out


@pytest.mark.parametrize("combine", ["sum", "prefix"])
def test_incremental_decoding_equals_rerunning_the_whole_prefix(combine):
    codes, sizes = random_catalogue(n=50, sizes=(4, 3, 3))
    model = make_model(50, codes, sizes, beam=7, max_len=10, layers=2, combine=combine).eval()
    histories = mixed_histories(50, 9, 10)
    items, logp = model.generate(histories)
    ref_items, ref_logp = full_prefix_generate(model, histories, 7)
    assert items.tolist() == ref_items.tolist()
    assert torch.allclose(logp, ref_logp, atol=1e-5)


def test_scores_of_a_user_do_not_depend_on_the_batch_or_its_padding():
    """Length groups and trimming: each user decoded in a batch of mixed lengths gets the beam it gets alone
    (its history cut to its own length)."""
    codes, sizes = random_catalogue(n=40)
    model = make_model(40, codes, sizes, beam=6, max_len=12, layers=2).eval()
    model.users_per_pass = 3  # several passes, each cut to its own longest history
    histories = mixed_histories(40, 10, 12, seed=4)
    scores = model.scorer()(histories)
    for u in range(len(histories)):
        row = histories[u : u + 1]
        alone_items, alone_logp = full_prefix_generate(model, row[:, (row == 0).sum() :], 6)
        order = scores[u].argsort(descending=True)[:6]
        assert order.tolist() == alone_items[0].tolist()
        assert scores[u, alone_items[0]].tolist() == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
        items, logp = model.generate(row)
        assert torch.allclose(logp, alone_logp, atol=1e-5)


def test_per_position_decoder_self_attention_equals_the_block_masked_one():
    """Training's decoder runs self-attention per window position; the (T*L', T*L') mask it replaces lets a
    token see only the earlier tokens of its own position, so both give the same states."""
    torch.manual_seed(0)
    backbone = CodeSeq2Seq(32, 3, [4, 3, 3], 8, 1, 2, 2, 64, 0.0).eval()
    b, t, levels = 3, 5, 3
    inputs = torch.randn(b, t, levels, 32)
    memory, pad = torch.randn(b, 1 + t * levels, 32), torch.rand(b, 1 + t * levels) > 0.3
    pad[:, 0] = True
    q_pos = torch.arange(t).repeat_interleave(levels)
    q_step = torch.arange(levels).repeat(t)
    block = (q_pos[:, None] != q_pos[None, :]) | (q_step[:, None] < q_step[None, :])
    k_item = torch.cat([torch.tensor([-1]), torch.arange(t).repeat_interleave(levels)])
    cross = k_item[None, :] > q_pos[:, None]
    whole = backbone.decode(inputs.reshape(b, t * levels, 32), memory, pad, block, cross)
    per_position = backbone.decode_windows(inputs, memory, pad, cross)
    assert torch.allclose(per_position.reshape(b, t * levels, 32), whole, atol=1e-5)
    bad = backbone.decode(
        inputs.reshape(b, t * levels, 32), memory, pad, q_step[:, None] < q_step[None, :], cross
    )
    assert not torch.allclose(per_position.reshape(b, t * levels, 32), bad, atol=1e-3)  # the mask matters


def test_length_groups_keep_the_loss_and_its_gradient():
    """Training in length groups is the same mean cross-entropy, with the same gradient, as the whole batch
    at once (no dropout, so nothing random differs); states come back in the batch's row-major order."""
    codes, sizes = random_catalogue(n=30)
    model = make_model(30, codes, sizes, beam=4, max_len=9, layers=2).train()
    inputs = mixed_histories(30, 11, 9, seed=5)
    targets = torch.where(inputs > 0, (inputs % 30) + 1, torch.zeros_like(inputs))
    results = []
    for group in (len(inputs), 3):
        model.train_group = group
        model.zero_grad()
        loss, ts = model.own_loss(inputs, targets, None, None)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((loss.detach(), ts, grads))
    (loss_a, ts_a, grads_a), (loss_b, ts_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert ts_a.targets.tolist() == ts_b.targets.tolist() == targets[targets > 0].tolist()
    assert torch.allclose(ts_a.states, ts_b.states, atol=1e-5)
    assert len(grads_a) == len(grads_b) and all(
        torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_a, grads_b)
    )


def test_bf16_precision_trains_and_decodes_valid_items():
    codes, sizes = random_catalogue(n=30)
    model = make_model(30, codes, sizes, beam=5, max_len=8, precision="bf16")
    inputs = mixed_histories(30, 6, 8, seed=1)
    targets = torch.where(inputs > 0, (inputs % 30) + 1, torch.zeros_like(inputs))
    loss, _ = model.own_loss(inputs, targets, None, None)
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    items, logp = model.eval().generate(inputs)
    assert bool((items > 0).all()) and bool(torch.isfinite(logp).all())
    assert all(len(set(row)) == len(row) for row in items.tolist())
    with pytest.raises(ValueError, match="precision"):
        make_model(30, codes, sizes, precision="fp16")


def test_generative_model_learns_to_emit_the_successors_codes():
    """Deterministic toy task: item i is always followed by i + 1 (a ring of 20 items)."""
    n = 20
    codes, sizes = random_catalogue(n=n, sizes=(4, 5), seed=1)
    model = make_model(n, codes, sizes, beam=3, max_len=6)
    seqs = [np.array(list(map(int, s))) for s in successor_sequences(60, n, 8, seed=2).values()]
    windows = make_windows(seqs, 6, 3, shift=True)
    epochs = iter(range(1000))
    history = fit(
        model,
        windows,
        lambda: {"ndcg@10": float(next(epochs))},  # every epoch is "better": train to the cap
        FitConfig(loss=LossSpec("ce"), lr=3e-3, batch_size=16, max_epochs=40, patience=100),
        torch.Generator().manual_seed(0),
    )
    assert history.epochs[-1].loss < 0.1 * history.epochs[0].loss
    histories = torch.tensor([[(s + k) % n + 1 for k in range(4)] for s in range(n)])  # (20, 4)
    items, _ = model.eval().generate(histories)
    successor = histories[:, -1] % n + 1
    assert float((items[:, 0] == successor).float().mean()) >= 0.9


def tiger_spec(data_dir, backbone=None, **kw):
    encoder = {
        "kind": "semantic_id",
        "content": {"kind": "text", "model": kw.pop("bert")},
        "tokenizer": {"levels": 2, "codebook_size": 8, "latent_dim": 8, "hidden": [16], "epochs": 5},
    }
    return sid_spec(
        data_dir,
        encoder,
        backbone=backbone
        or {
            "kind": "tiger",
            "dim": 16,
            "layers": 1,
            "decoder_layers": 1,
            "heads": 2,
            "inner": 32,
            "beam_width": 10,
        },
        **kw,
    )


def test_tiger_run_end_to_end_reports_decoding_cost_and_beam_protocol(tiny_ml_dir, tmp_path):
    from tiny_encoders import tiny_bert

    from recbench.runner import run_spec

    spec = tiger_spec(tiny_ml_dir, bert=str(tiny_bert(tmp_path / "bert", layers=2)))
    assert spec.protocol()["beam_width"] == 10
    result = run_spec(spec, tracker=None)
    assert result.backbone == "tiger" and result.protocol["beam_width"] == 10
    assert result.cost.beam_width == 10 and result.cost.decode_ms_per_user > 0
    assert 0 <= result.metrics["test"]["ndcg@10"] <= 1 and len(result.history) == 2


def test_recipes_refuse_what_a_generative_row_cannot_do(tiny_ml_dir):
    tiger = {"kind": "tiger", "dim": 16, "heads": 2, "beam_width": 5}
    base = {
        "name": "t",
        "dataset": {"name": "movielens-100k", "data_dir": str(tiny_ml_dir)},
        "train": {"valid_metric": "ndcg@5"},
    }
    sid = {"kind": "semantic_id", "codes": "file"}
    cases = [
        (
            {"encoder": {"kind": "id"}, "backbone": tiger, "eval": {"ks": [5]}},
            "use `encoder: {kind: semantic_id}",
        ),
        ({"encoder": sid, "backbone": tiger, "eval": {"ks": [5, 10]}}, "more than the beam width 5"),
        (
            {
                "encoder": sid,
                "backbone": tiger,
                "eval": {"ks": [5]},
                "train": {"loss": "bce", "valid_metric": "ndcg@5"},
            },
            "train.loss: ce",
        ),
    ]
    for extra, message in cases:
        with pytest.raises(RecipeError, match=message):
            recipe_from_dict({**base, **extra})
    (spec,) = expand(recipe_from_dict({**base, "encoder": sid, "backbone": tiger, "eval": {"ks": [5]}}))
    assert spec.protocol()["beam_width"] == 5
    plain_run = {**base, "encoder": {"kind": "id"}, "backbone": {"kind": "sasrec"}, "eval": {"ks": [5]}}
    (plain,) = expand(recipe_from_dict(plain_run))
    assert "beam_width" not in plain.protocol()  # fingerprints of every other row stay as they were
