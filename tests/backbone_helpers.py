"""Shared by the backbone tests: a tiny run spec, and one training step through the trainer's own code path
(Recommender.train_states + training.compute_loss) with any encoder kind.

The content encoders (text, CLIP, fusion) are built on the tiny random models of tests/tiny_encoders.py; where
those modules are absent the content kinds skip with the reason, the ID kind always runs.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from recbench.backbones.base import Backbone
from recbench.config import expand, recipe_from_dict
from recbench.model import Recommender, build_encoder
from recbench.training import LossSpec, TrainingCatalogue, batch_loss

ENCODER_KINDS = ["id", "text", "clip", "fusion"]
TITLES = ["red movie", "blue drama", "green story", "movie night", "drama day", "comedy of red and blue"]


def tiny_spec(data_dir, backbone: dict, encoder: dict | None = None, **train):
    """One run on the tiny successor data (tests/conftest.py), full ranking; ID items unless `encoder`."""
    recipe = recipe_from_dict(
        {
            "name": "tiny",
            "experiment": "tiny",
            "dataset": {"name": "movielens-100k", "data_dir": str(data_dir)},
            "encoder": encoder or {"kind": "id"},
            "backbone": backbone,
            "train": {"max_len": 10, "batch_size": 16, "patience": 100, **train},
            "eval": {"ks": [1, 10]},
        }
    )
    (spec,) = expand(recipe)
    return spec


def encoder_section(kind: str, folder: Path):
    """A recipe section of this encoder kind on tiny random models written into `folder` (trainable modes,
    so gradients must flow through the content tower too)."""
    from recbench.config import (
        ClipEncoderSection,
        FusionEncoderSection,
        IdEncoderSection,
        TextEncoderSection,
    )

    if kind == "id":
        return IdEncoderSection()
    pytest.importorskip("recbench.encoders.text", reason="the content encoders are not in this checkout")
    tiny = pytest.importorskip("tiny_encoders", reason="tests/tiny_encoders.py is not in this checkout")
    if kind == "text":
        return TextEncoderSection(model=str(tiny.tiny_bert(folder / "bert", layers=2)), mode="top_k", top_k=1)
    if kind == "clip":
        model = tiny.tiny_clip(folder / "clip", layers=2)
        return ClipEncoderSection(model=str(model), towers="image", mode="full")
    if kind == "fusion":
        text = TextEncoderSection(model=str(tiny.tiny_bert(folder / "bert", layers=2)), mode="frozen")
        return FusionEncoderSection(content=text, combine="add")
    raise ValueError(kind)


def item_content(kind: str, folder: Path):
    from recbench.data.content import ItemContent

    items = pl.DataFrame({"item_id": [str(i + 1) for i in range(len(TITLES))], "title": TITLES})
    if kind == "clip":
        tiny = pytest.importorskip("tiny_encoders")
        paths = tiny.write_images(folder / "images", len(TITLES))
        items = items.with_columns(pl.Series("image_path", paths, dtype=pl.String))
    return ItemContent("tiny", items, "{title}", "empty", "blank")


def one_training_step(backbone: Backbone, encoder_kind: str, loss: str, folder: Path, mask_prob: float = 0.0):
    """Build encoder + backbone as the runner does, run one step as the trainer does; returns the model with
    gradients, the loss value and the step's TrainStates."""
    content = item_content(encoder_kind, folder)
    encoder = build_encoder(encoder_section(encoder_kind, folder), content, backbone.dim)
    encoder.prepare()
    num_items, max_len = content.num_items, 5
    model = Recommender(encoder, backbone, num_items, max_len).train()
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(1, num_items + 1, (4, max_len), generator=g)
    inputs[1, :2] = 0  # left padding
    inputs[3, :4] = 0  # a single item
    if backbone.objective == "causal":
        targets = torch.randint(1, num_items + 1, (4, max_len), generator=g) * (inputs > 0)
    else:
        targets = inputs.clone()  # make_windows(shift=False): the targets are the inputs
    spec = LossSpec(loss, negatives=3)
    value, ts = batch_loss(model, inputs, targets, spec, TrainingCatalogue(num_items), g, mask_prob)
    value.backward()
    return model, value, ts


def text_run(data_dir, backbone: dict, mode: str, folder: Path):
    """A 2-epoch run with the text encoder on a tiny random BERT (skips where the text encoder is absent)."""
    pytest.importorskip("recbench.encoders.text", reason="the text encoder is not in this checkout")
    tiny = pytest.importorskip("tiny_encoders", reason="tests/tiny_encoders.py is not in this checkout")
    from recbench.runner import run_spec

    model = tiny.tiny_bert(folder / "tiny-bert", layers=2)
    encoder = {"kind": "text", "model": str(model), "mode": mode, "top_k": 1}
    spec = tiny_spec(data_dir, backbone, encoder=encoder, max_epochs=2, lr=0.01)
    result = run_spec(spec, tracker=None)
    assert result.encoder_kind == "text" and result.backbone == backbone["kind"]
    assert len(result.history) == 2 and all(0 <= v <= 1 for v in result.metrics["test"].values())
    return result
