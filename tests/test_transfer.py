"""The transfer regime: a source stage on mixed catalogues, reused by every target row; weights transfer
except ID tables; zero_shot never steps an optimizer on target data; adapters leave every other frozen weight
bit-identical; the scratch regime is unchanged (hashes of earlier runs stay as they were)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_encoders import WORDS, tiny_bert

import recbench.runner as runner_mod
from recbench.config import RecipeError, recipe_from_dict
from recbench.data.mixing import mix_datasets
from recbench.reporting import Reporter
from recbench.runner import DataMemo, run_recipe

FILES = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "toys": "Toys_and_Games"}


def _category(folder: Path, key: str, users: int, items: int, seed: int) -> None:
    """S3-Rec files for one category: item i is followed by i + 1 (a ring), each with a few-word title."""
    rng = np.random.default_rng(seed)
    name = FILES[key]
    lines = []
    for u in range(1, users + 1):
        start = int(rng.integers(0, items))
        lines.append(" ".join([str(u)] + [str((start + k) % items + 1) for k in range(8)]))
    (folder / "s3rec").mkdir(parents=True, exist_ok=True)
    (folder / "s3rec" / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = ["s3rec_item_id\tasin\tidgenrec_text_id"]
    rows += [f"{i}\tA{i}\t{WORDS[i % 17]} {WORDS[(3 * i) % 17]}" for i in range(1, items + 1)]
    (folder / "text").mkdir(parents=True, exist_ok=True)
    (folder / "text" / f"{name}_s3rec_id2asin_text.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.fixture
def amazon_dir(tmp_path) -> Path:
    folder = tmp_path / "amazon"
    _category(folder, "beauty", 40, 30, 0)
    _category(folder, "sports", 50, 36, 1)
    _category(folder, "toys", 50, 24, 2)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", layers=2)


def _recipe(amazon_dir, bert_dir, runs, encoder=None) -> dict:
    data = str(amazon_dir)
    return {
        "name": "tiny-transfer",
        "experiment": "tiny-transfer",
        "dataset": {"name": "amazon-2014-s3rec-beauty", "data_dir": data},
        "encoder": encoder or {"kind": "text", "model": str(bert_dir), "mode": "frozen", "max_tokens": 8},
        "backbone": {"kind": "sasrec", "dim": 16, "layers": 1, "heads": 1, "inner": 16},
        "train": {"max_len": 8, "batch_size": 64, "max_epochs": 2, "patience": 2, "threads": 1},
        "eval": {"ks": [5, 10]},
        "regime": {
            "kind": "transfer",
            "source": [
                {"name": "amazon-2014-s3rec-sports", "data_dir": data},
                {"name": "amazon-2014-s3rec-toys", "data_dir": data},
            ],
        },
        "runs": runs,
    }


class Keep:
    """Captures the source stage's weights and counts trainings and optimizer steps."""

    def __init__(self, monkeypatch):
        self.sources, self.fits, self.steps = [], 0, 0
        real_stage, real_fit = runner_mod.source_stage, runner_mod.fit

        def stage(*args, **kwargs):
            out = real_stage(*args, **kwargs)
            self.sources.append(out)
            return out

        def fit(*args, **kwargs):
            self.fits += 1
            return real_fit(*args, **kwargs)

        monkeypatch.setattr(runner_mod, "source_stage", stage)
        monkeypatch.setattr(runner_mod, "fit", fit)
        real_step = torch.optim.Adam.step

        def step(opt, *args, **kwargs):
            self.steps += 1
            return real_step(opt, *args, **kwargs)

        monkeypatch.setattr(torch.optim.Adam, "step", step)


def test_mixed_catalogues_never_share_an_index(amazon_dir):
    memo = DataMemo()
    recipe = recipe_from_dict(_recipe(amazon_dir, "minilm", [{"encoder": {"kind": "id"}}]))
    spec = runner_mod.regime_for(runner_mod.expand(recipe)[0]).source_spec()
    prepared = memo.prepare(spec, Reporter())
    mixed = prepared.data
    assert mixed.num_items == 36 + 24 and mixed.num_users == 100
    assert (
        mixed.item_ids[0] == "amazon-2014-s3rec-sports:1" and mixed.item_ids[36] == "amazon-2014-s3rec-toys:1"
    )
    toys_items = {i for s in mixed.sequences[50:] for i in s.tolist()}
    assert min(toys_items) > 36  # toys' item indices are offset past every sports item
    texts = prepared.content().texts()
    assert len(texts) == 60 and all(texts)
    with pytest.raises(ValueError):
        mix_datasets([])


def test_zero_shot_full_and_adapter_share_one_source_stage(amazon_dir, bert_dir, monkeypatch):
    keep = Keep(monkeypatch)
    runs = [
        {"regime": {"mode": "zero_shot"}, "encoder": {"label": "zs"}},
        {"regime": {"mode": "full"}, "encoder": {"label": "ft"}},
        {"regime": {"mode": "adapter", "adapter_dim": 4}, "encoder": {"label": "ad"}},
    ]
    results = run_recipe(recipe_from_dict(_recipe(amazon_dir, bert_dir, runs)))
    zs, ft, ad = results
    assert [s[1] for s in keep.sources] == [False, True, True]  # trained once, then reused
    assert len({r.notes["source_run_id"] for r in results}) == 1
    assert zs.cost.stop_reason == "not_trained" and zs.cost.epochs == 0
    assert ft.cost.stop_reason in ("early_stopping", "max_epochs") and ft.cost.pretrain_s > 0
    assert ad.cost.params_trainable < ft.cost.params_trainable
    assert keep.fits == 1 + 2  # the source stage and the two training target modes; zero_shot trains nothing
    assert zs.name.endswith("/transfer-zero_shot/seed0") and zs.dataset == "amazon-2014-s3rec-beauty"


def test_zero_shot_performs_no_optimizer_step_on_target_data(amazon_dir, bert_dir, monkeypatch):
    keep = Keep(monkeypatch)
    run_recipe(recipe_from_dict(_recipe(amazon_dir, bert_dir, [{"regime": {"mode": "zero_shot"}}])))
    source_steps = keep.steps
    assert source_steps > 0 and keep.fits == 1  # all of them in the source stage
    keep.steps = 0
    (again,) = run_recipe(
        recipe_from_dict(_recipe(amazon_dir, bert_dir, [{"regime": {"mode": "zero_shot"}}]))
    )
    assert keep.steps == 0  # reused run: nothing at all


def _built(amazon_dir, bert_dir, mode, encoder=None):
    """A target model adapted from a real source stage, plus the source weights."""
    recipe = recipe_from_dict(_recipe(amazon_dir, bert_dir, [{"regime": {"mode": mode}}], encoder))
    (spec,) = runner_mod.expand(recipe)
    memo = DataMemo()
    regime = runner_mod.regime_for(spec)
    regime.before(lambda src: runner_mod.source_stage(src, Reporter(), None, memo))
    prepared = memo.prepare(spec, Reporter())
    runner_mod.seed_everything(spec.seed)
    model, _ = runner_mod.build_model(
        spec.encoder,
        spec.backbone,
        prepared.content,
        prepared.data.num_items,
        spec.train.max_len,
        prepared.split.train_item_counts,
    )
    return spec, model, regime, prepared


def test_id_tables_are_never_loaded_across_datasets(amazon_dir, bert_dir):
    fusion = {"kind": "fusion", "content": {"kind": "text", "model": str(bert_dir), "max_tokens": 8}}
    spec, model, regime, _ = _built(amazon_dir, bert_dir, "full", fusion)
    fresh = model.encoder.ids.table.weight.detach().clone()
    notes = regime.adapt(model)
    assert notes["not_transferred"] == ["encoder.ids.table.weight"]
    assert torch.equal(model.encoder.ids.table.weight, fresh)  # the target's own initialisation
    source = regime.source.state
    assert source["encoder.ids.table.weight"].shape[0] == 61  # 60 source items + padding: other items
    for name, tensor in model.state_dict().items():
        if name != "encoder.ids.table.weight":
            assert torch.equal(tensor, source[name]), name  # everything else is the source's


def test_adapter_leaves_every_frozen_weight_bit_identical(amazon_dir, bert_dir):
    from recbench.data.batches import make_windows
    from recbench.training import FitConfig, LossSpec, fit

    spec, model, regime, prepared = _built(amazon_dir, bert_dir, "adapter")
    regime.adapt(model)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        ".adapter." in k or "norm" in k or k.startswith("encoder.projection") for k in trainable
    )
    windows = make_windows(prepared.split.train, 8, 4, shift=True)
    cfg = FitConfig(
        LossSpec("ce"), batch_size=16, max_epochs=2, patience=2, lr=0.05, weight_decay=0.01, optimizer="adamw"
    )
    fit(model, windows, lambda: {"ndcg@10": 0.0}, cfg, torch.Generator().manual_seed(0))
    after = model.state_dict()
    for k in before:
        if k in trainable:
            continue
        assert torch.equal(after[k], before[k]), k
    assert any(not torch.equal(after[k], before[k]) for k in trainable if ".adapter." in k)


def test_transfer_recipes_are_checked():
    base = _recipe(Path("/x"), "minilm", [{"encoder": {"kind": "id"}, "regime": {"mode": "zero_shot"}}])
    with pytest.raises(RecipeError, match="an ID table never transfers"):
        recipe_from_dict(base)
    leak = _recipe(Path("/x"), "minilm", [{"encoder": {"kind": "id"}}])
    leak["regime"]["source"].append({"name": "amazon-2014-s3rec-beauty"})
    with pytest.raises(RecipeError, match="lists the target dataset"):
        recipe_from_dict(leak)


def test_scratch_hashes_are_unchanged_by_the_regime_field():
    """Runs stored before regimes existed must still be found and aggregated: their recipe hash, config hash
    and protocol fingerprint are pinned here as computed by the code of that time (commit 9cc1156)."""
    from recbench.config import expand, fingerprint

    raw = {
        "name": "t",
        "dataset": {"name": "movielens-100k"},
        "encoder": {"kind": "id"},
        "backbone": {"kind": "sasrec"},
    }
    (a,) = expand(recipe_from_dict(raw))
    (b,) = expand(recipe_from_dict({**raw, "regime": {"kind": "scratch"}}))
    assert a.recipe_hash == b.recipe_hash == "cabf227706b30891"
    assert a.config_hash == "4373fbf6dab0fe81"
    assert fingerprint(a.protocol()) == "4cd5f73ea65af1d8"


def test_an_adapter_run_checkpoint_round_trips(amazon_dir, bert_dir):
    from recbench.checkpoints import load_run
    from recbench.evaluation.protocol import Protocol, evaluate

    runs = [{"regime": {"mode": "adapter", "adapter_dim": 4}}]
    (result,) = run_recipe(recipe_from_dict(_recipe(amazon_dir, bert_dir, runs)))
    loaded = load_run(result.run_id)
    prepared = DataMemo().prepare(loaded.spec, Reporter())
    spec = loaded.spec
    protocol = Protocol(
        num_items=prepared.data.num_items, max_len=spec.train.max_len, ks=spec.eval.ks, seed=spec.seed
    )
    assert evaluate(loaded.model.scorer(), prepared.split.test, protocol).metrics == result.metrics["test"]


def test_lora_trains_only_low_rank_updates_in_the_tower(amazon_dir, bert_dir):
    from recbench.data.batches import make_windows
    from recbench.training import FitConfig, LossSpec, fit

    top1 = {"kind": "text", "model": str(bert_dir), "mode": "top_k", "top_k": 1, "max_tokens": 8}
    spec, model, regime, prepared = _built(amazon_dir, bert_dir, "lora", top1)
    regime.adapt(model)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in k for k in trainable) and any("lora_B" in k for k in trainable)
    assert all("lora_" in k or "norm" in k or k.startswith("encoder.projection") for k in trainable)
    tower = [k for k, _ in model.named_parameters() if ".tower." in k and "lora_" not in k]
    assert tower and not set(tower) & trainable  # the tower's own weights (its top layer) are frozen
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    windows = make_windows(prepared.split.train, 8, 4, shift=True)
    cfg = FitConfig(
        LossSpec("ce"), batch_size=16, max_epochs=1, patience=1, lr=0.05, optimizer="adamw", weight_decay=0.01
    )
    fit(model, windows, lambda: {"ndcg@10": 0.0}, cfg, torch.Generator().manual_seed(0))
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k not in trainable)
    assert any(not torch.equal(after[k], before[k]) for k in trainable if "lora_B" in k)


def test_lora_needs_a_running_tower():
    raw = _recipe(Path("/x"), "minilm", [{"regime": {"mode": "lora"}}])  # frozen text: nothing runs
    with pytest.raises(RecipeError, match="mode lora adapts a text or CLIP tower"):
        recipe_from_dict(raw)


def test_data_dir_locates_the_source_datasets_too():
    """`--data-dir DIR` (or CARD=DIR) is where every dataset of a run is read from: its own, and a transfer
    regime's sources (a relative data_dir in the recipe would otherwise resolve from the working folder)."""
    from recbench.regimes import regime_for
    from recbench.runner import RunOptions, parse_data_dirs, select_runs

    raw = _recipe(Path("rel/amazon"), "minilm", [{"regime": {"mode": "full"}}])
    (spec,) = select_runs(recipe_from_dict(raw), RunOptions(data_dirs=parse_data_dirs(["/data/amazon"])))
    assert spec.dataset.data_dir == "/data/amazon"
    assert [d.data_dir for d in spec.regime.source] == ["/data/amazon", "/data/amazon"]
    assert (
        spec.recipe_hash == select_runs(recipe_from_dict(raw), RunOptions())[0].recipe_hash
    )  # where, not what

    # the source stage (a mixture of the sources) is the same stage wherever its files are
    here, there = (
        regime_for(s).source_spec() for s in (spec, select_runs(recipe_from_dict(raw), RunOptions())[0])
    )
    assert here.dataset.mix_with[0].data_dir == "/data/amazon"
    assert here.recipe_hash == there.recipe_hash and here.protocol() == there.protocol()

    dirs = parse_data_dirs(["amazon-2014-s3rec-toys=/data/toys"])
    (spec,) = select_runs(recipe_from_dict(raw), RunOptions(data_dirs=dirs))
    assert spec.dataset.data_dir == "rel/amazon"
    assert [d.data_dir for d in spec.regime.source] == ["rel/amazon", "/data/toys"]
