"""ID + content fusion: add and concat, padding, parameter groups, and a tiny end-to-end run."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from tiny_encoders import tiny_bert

from recbench.config import FusionEncoderSection, expand, recipe_from_dict
from recbench.data.content import ItemContent
from recbench.encoders.fusion import FusionEncoder
from recbench.model import build_encoder
from recbench.runner import run_spec


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", layers=2)


def content() -> ItemContent:
    items = pl.DataFrame({"item_id": ["1", "2", "3"], "title": ["red movie", "blue drama", "green day"]})
    return ItemContent("tiny", items, "{title}")


def fusion(model, combine: str, mode: str = "frozen") -> FusionEncoder:
    torch.manual_seed(0)
    section = FusionEncoderSection(
        content={"kind": "text", "model": str(model), "mode": mode, "top_k": 1, "lr": 1e-4}, combine=combine
    )
    enc = build_encoder(section, content(), 8)
    enc.prepare()
    return enc


def test_add_is_the_sum_of_id_and_content(bert_dir):
    enc = fusion(bert_dir, "add")
    ids = torch.tensor([[0, 1, 3], [2, 2, 0]])
    out = enc(ids)  # (2, 3, 8)
    assert torch.allclose(out, enc.ids(ids) + enc.content(ids))
    assert torch.all(out[0, 0] == 0) and torch.all(out[1, 2] == 0)


def test_concat_projects_and_keeps_padding_zero(bert_dir):
    enc = fusion(bert_dir, "concat")
    ids = torch.tensor([0, 1, 2, 3])
    out = enc(ids)
    want = enc.merge(torch.cat([enc.ids(ids), enc.content(ids)], -1))
    assert torch.allclose(out[1:], want[1:]) and torch.all(out[0] == 0)


def test_param_groups_cover_every_parameter_once(bert_dir):
    enc = fusion(bert_dir, "concat", mode="top_k")
    groups = enc.param_groups(1e-3)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len([p for p in enc.parameters() if p.requires_grad])
    lrs = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lrs[id(enc.ids.table.weight)] == 1e-3
    tower = enc.content.runners[0].tower
    assert all(lrs[id(p)] == 1e-4 for p in tower.parameters())


def test_fusion_end_to_end(tiny_ml_dir, bert_dir):
    recipe = recipe_from_dict(
        {
            "name": "fusion-e2e",
            "dataset": {"name": "movielens-100k", "data_dir": str(tiny_ml_dir)},
            "encoder": {
                "kind": "fusion",
                "combine": "add",
                "content": {"kind": "text", "model": str(bert_dir)},
            },
            "backbone": {"kind": "sasrec", "dim": 16, "layers": 1, "heads": 1, "inner": 32},
            "train": {"max_len": 12, "batch_size": 16, "max_epochs": 2, "patience": 5, "lr": 0.01},
            "eval": {"ks": [1, 10]},
        }
    )
    (spec,) = expand(recipe)
    result = run_spec(spec, tracker=None)
    assert result.encoder == "id+text-tiny-bert-frozen-add" and result.encoder_kind == "fusion"
    assert result.notes["encoder_cache_hit"] is False and result.encoder_revision.startswith("sha256:")
    assert 0 <= result.metrics["test"]["ndcg@10"] <= 1
