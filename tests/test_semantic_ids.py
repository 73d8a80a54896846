"""Semantic IDs: the RQ-VAE tokenizer, collisions, the code cache, the encoder and a run end to end."""

from __future__ import annotations

import pytest
import torch
from tiny_encoders import tiny_bert

from recbench.config import RecipeError, expand, recipe_from_dict
from recbench.encoders import semantic_id as sid
from recbench.encoders.cache import TensorCache
from recbench.encoders.rqvae import RQVAEConfig, train_rqvae
from recbench.runner import run_spec

SMALL = RQVAEConfig(levels=3, codebook_size=8, latent_dim=8, hidden=(32,), epochs=40, batch_size=64, lr=3e-3)


def clusters(k: int = 8, per: int = 25, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """k well-separated Gaussian clusters (centres 10 apart, spread 0.3) -> points (k*per, dim), labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 10
    labels = torch.arange(k).repeat_interleave(per)
    return centres[labels] + 0.3 * torch.randn(k * per, dim, generator=g), labels


def test_rqvae_recovers_well_separated_clusters_at_level_one():
    x, labels = clusters()
    codes, facts = train_rqvae(x, SMALL)
    first = codes[:, 0]
    for c in range(8):
        assert len(set(first[labels == c].tolist())) == 1, f"cluster {c} is split over level-1 codes"
    assert len(set(first.tolist())) == 8, "two clusters share a level-1 code"
    assert facts["levels"][1]["usage"] == 1.0 and facts["levels"][1]["perplexity"] == pytest.approx(
        8, rel=1e-4
    )


def test_residuals_shrink_level_by_level():
    x = torch.randn(300, 12, generator=torch.Generator().manual_seed(1))
    _, facts = train_rqvae(x, RQVAEConfig(levels=4, codebook_size=16, latent_dim=8, hidden=(32,), epochs=20))
    norms = [facts["levels"][level]["residual_norm"] for level in (1, 2, 3, 4)]
    assert all(a > b for a, b in zip(norms, norms[1:])), norms
    assert facts["recon_mse"] < 1.0  # standardised inputs: 1.0 is what predicting the mean gives


def test_the_tokenizer_is_deterministic_for_a_seed_and_changes_with_it():
    x, _ = clusters(k=4, per=10)
    a, _ = train_rqvae(x, SMALL)
    b, _ = train_rqvae(x, SMALL)
    assert torch.equal(a, b)


def test_collisions_get_an_extra_code_that_makes_every_tuple_unique():
    codes = torch.tensor([[1, 2], [1, 2], [0, 3], [1, 2], [0, 3], [5, 5]])
    unique, facts = sid.disambiguate(codes)
    assert unique.shape == (6, 3)
    assert len({tuple(r) for r in unique.tolist()}) == 6
    assert unique[:, 2].tolist() == [0, 1, 0, 2, 1, 0]  # position inside each shared tuple, in item order
    assert torch.equal(unique[:, :2], codes)
    assert facts == {"collisions": 3, "max_collision_group": 3}
    same, facts = sid.disambiguate(torch.tensor([[0, 1], [1, 0]]))
    assert same.shape == (2, 2) and facts["collisions"] == 0


def test_code_cache_hits_on_same_key_and_misses_on_any_change(tmp_path, monkeypatch):
    x, _ = clusters(k=4, per=10)
    cache = TensorCache(tmp_path / "cache")
    key = {"model": "m", "texts": "abc"}
    codes, facts, hit = sid.tokenize(x, key, SMALL, cache)
    assert hit is False
    calls = []
    real = sid.train_rqvae
    monkeypatch.setattr(sid, "train_rqvae", lambda v, c: calls.append(c) or real(v, c))
    again, again_facts, hit = sid.tokenize(x, key, SMALL, cache)
    assert hit is True and calls == [] and torch.equal(again, codes)
    assert again_facts["recon_mse"] == pytest.approx(facts["recon_mse"])
    assert again_facts["levels"][2]["usage"] == pytest.approx(facts["levels"][2]["usage"])
    changes = [
        ({"model": "m", "texts": "abd"}, SMALL),  # other content
        ({"model": "other", "texts": "abc"}, SMALL),  # other content model
        (key, RQVAEConfig(**{**SMALL.__dict__, "seed": 1})),
        (key, RQVAEConfig(**{**SMALL.__dict__, "codebook_size": 4})),
        (key, RQVAEConfig(**{**SMALL.__dict__, "epochs": 41})),
    ]
    for content_key, config in changes:
        _, _, hit = sid.tokenize(x, content_key, config, cache)
        assert hit is False, (content_key, config)
    assert len(calls) == len(changes)


def test_codes_from_letter_strings_and_bad_lengths():
    codes, sizes = sid.codes_from_strings([["<a_3>", "<b_0>"], ["<a_1>", "<b_7>"]], "file")
    assert codes.tolist() == [[3, 0], [1, 7]] and sizes == [4, 8]
    codes, sizes = sid.codes_from_strings([["x", "q"], ["y", "p"], ["x", "p"]], "file")
    assert codes.tolist() == [[0, 1], [1, 0], [0, 0]] and sizes == [2, 2]
    with pytest.raises(ValueError, match="different lengths"):
        sid.codes_from_strings([["<a_1>"], ["<a_1>", "<b_2>"]], "file")


class FixedCodes(sid.CodeSource):
    name = "fixed"

    def __init__(self, codes, sizes):
        self.raw, self.sizes = codes, sizes

    def codes(self, reporter=None):
        codes, sizes, facts = sid.finish(self.raw, self.sizes, {})
        return sid.Codes(codes, sizes, facts)


def test_item_vector_is_the_sum_of_its_code_embeddings_and_padding_is_zero():
    raw = torch.tensor([[0, 1], [0, 2], [1, 1], [0, 1]])  # items 1 and 4 collide
    enc = sid.SemanticIdEncoder(4, 6, FixedCodes(raw, [2, 3]))
    report = enc.prepare()
    assert report.extra["semantic_id_collisions"] == 1 and enc.levels == 3
    ids = torch.tensor([[0, 1, 3], [4, 2, 0]])
    out = enc(ids)  # (2, 3, 6)
    assert out.shape == (2, 3, 6) and torch.all(out[0, 0] == 0) and torch.all(out[1, 2] == 0)
    expected = sum(enc.tables[level].weight[enc.codes[3, level]] for level in range(3))
    assert torch.allclose(out[0, 2], expected)
    assert not torch.allclose(enc(torch.tensor(1)), enc(torch.tensor(4)))  # the extra code separates them


def test_prefix_variant_shares_rows_only_along_a_branch():
    raw = torch.tensor([[0, 1], [0, 2], [1, 1]])
    enc = sid.SemanticIdEncoder(3, 4, FixedCodes(raw, [2, 3]), combine="prefix")
    enc.prepare()
    rows = enc.rows[1:]
    assert rows[0, 0] == rows[1, 0] != rows[2, 0]  # items 1, 2 share the prefix (0)
    assert rows[0, 1] != rows[2, 1]  # (0, 1) and (1, 1): same code, other branch, other row
    assert [t.num_embeddings for t in enc.tables] == [2, 3]


def test_with_id_adds_an_id_table_whose_rows_the_trainer_keeps():
    enc = sid.SemanticIdEncoder(3, 4, FixedCodes(torch.tensor([[0], [1], [2]]), [3]), with_id=True)
    enc.prepare()
    assert enc.item_rows() == [enc.ids.table.weight]
    assert torch.allclose(enc(torch.tensor(2)), enc.tables[0].weight[1] + enc.ids.table.weight[2])


def sid_spec(data_dir, encoder: dict, backbone: dict | None = None, split: dict | None = None, **train):
    recipe = recipe_from_dict(
        {
            "name": "sid-e2e",
            "dataset": {"name": "movielens-100k", "data_dir": str(data_dir)},
            "split": split or {"kind": "leave_one_out"},
            "encoder": encoder,
            "backbone": backbone
            or {"kind": "sasrec", "dim": 16, "layers": 1, "heads": 1, "inner": 32, "dropout": 0.1},
            "train": {"max_len": 12, "batch_size": 16, "max_epochs": 2, "patience": 5, "lr": 0.01, **train},
            "eval": {"ks": [1, 10]},
        }
    )
    (spec,) = expand(recipe)
    return spec


TOKENIZER = {"levels": 2, "codebook_size": 8, "latent_dim": 8, "hidden": [16], "epochs": 5}


def test_run_with_rqvae_codes_over_frozen_text_ranks_cold_items(tiny_ml_dir, tmp_path):
    bert = tiny_bert(tmp_path / "bert", layers=2)
    encoder = {"kind": "semantic_id", "content": {"kind": "text", "model": str(bert)}, "tokenizer": TOKENIZER}
    spec = sid_spec(tiny_ml_dir, encoder, split={"kind": "cold_item", "cold_fraction": 0.2})
    first = run_spec(spec, tracker=None)
    notes = first.notes
    assert first.encoder == "sid-rqvae(text-bert-frozen)-sum" and notes["encoder_cache_hit"] is False
    assert notes["semantic_id_source"] == "rqvae" and notes["semantic_id_levels"] in (2, 3)
    assert 0 < notes["semantic_id_l1_usage"] <= 1 and notes["rqvae_recon_mse"] >= 0
    assert "semantic_id_collisions" in notes and notes["content_encoder_model"]
    assert first.metrics["test/cold"]["hr@10"] >= 0  # cold targets exist and are ranked
    second = run_spec(spec, tracker=None)
    assert second.notes["encoder_cache_hit"] is True and second.metrics == first.metrics


@pytest.mark.parametrize(
    ("encoder", "message"),
    [
        ({"kind": "semantic_id"}, "add `content"),
        ({"kind": "semantic_id", "content": {"kind": "text", "mode": "top_k"}}, "must be frozen"),
        ({"kind": "semantic_id", "codes": "file", "content": {"kind": "text"}}, "drop `content`"),
    ],
)
def test_bad_semantic_id_sections_are_refused_with_the_fix(tiny_ml_dir, encoder, message):
    with pytest.raises(RecipeError, match=message):
        sid_spec(tiny_ml_dir, encoder)


def test_file_codes_read_the_cards_declared_file(tmp_path):
    """The LETTER layout through the card's declaration (a tiny s3rec folder with its own index.json)."""
    from conftest import SHARED_DATA

    folder = SHARED_DATA / "amazon-2014-beauty-sports-toys"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    source = sid.FileCodes("amazon-2014-s3rec-beauty", str(folder), [str(i) for i in range(1, 12102)])
    got = source.codes()
    assert got.codes.shape == (12101, 5)  # 4 LETTER levels + the extra code of the 13 collisions
    assert got.facts["collisions"] == 13 and len({tuple(r) for r in got.codes.tolist()}) == 12101
    assert got.sizes[:4] == [256, 256, 256, 256]
