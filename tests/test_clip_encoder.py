"""The CLIP item encoder on a tiny random CLIP (text + vision towers, own tokenizer, PIL image processor) saved
into a temporary folder, over a few generated images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import torch
from tiny_encoders import tiny_clip, write_images

import recbench.runner as runner_module
from recbench.config import ClipEncoderSection, expand, recipe_from_dict
from recbench.data.content import ItemContent
from recbench.data.schema import DataError
from recbench.model import build_encoder
from recbench.runner import run_spec


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip", layers=3)


@pytest.fixture
def images(tmp_path):
    return write_images(tmp_path / "images", 5)


def content(images, missing_image="blank", drop=(2,)) -> ItemContent:
    paths = [None if i in drop else p for i, p in enumerate(images)]
    items = pl.DataFrame(
        {
            "item_id": [str(i + 1) for i in range(len(images))],
            "title": ["red movie", "blue drama", "green", "movie night", "drama day"],
            "image_path": paths,
        }
    )
    return ItemContent("tiny", items, "{title}", "empty", missing_image)


def build(model, c, dim=8, **kw):
    torch.manual_seed(0)
    enc = build_encoder(ClipEncoderSection(model=str(model), **kw), c, dim)
    return enc, enc.prepare()


def clip_reference(model_dir, texts=None, image_paths=None):
    """CLIP's own text / image features (pooled + projected), straight from transformers."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        if texts is not None:
            batch = AutoTokenizer.from_pretrained(model_dir)(texts, padding=True, return_tensors="pt")
            return model.get_text_features(**batch).pooler_output  # (N, P)
        processor = AutoImageProcessor.from_pretrained(model_dir, backend="pil")
        imgs = [
            Image.open(p).convert("RGB") if p else Image.new("RGB", (224, 224), "white") for p in image_paths
        ]
        return model.get_image_features(
            pixel_values=processor(images=imgs, return_tensors="pt")["pixel_values"]
        ).pooler_output


def test_image_tower_frozen_vectors_are_clips_image_features(clip_dir, images):
    c = content(images)
    enc, report = build(clip_dir, c, towers="image")
    want = clip_reference(clip_dir, image_paths=c.image_paths())  # item 3 has no image: blank (white)
    assert torch.allclose(enc.runners[0].table, want, atol=1e-5)
    assert report.cache_hit is False and build(clip_dir, c, towers="image")[1].cache_hit is True


def test_text_tower_frozen_vectors_are_clips_text_features(clip_dir, images):
    c = content(images)
    enc, _ = build(clip_dir, c, towers="text")
    assert torch.allclose(enc.runners[0].table, clip_reference(clip_dir, texts=c.texts()), atol=1e-5)


@pytest.mark.parametrize("fuse,width", [("mean", 16), ("concat", 32)])
def test_both_towers_fuse(clip_dir, images, fuse, width):
    enc, _ = build(clip_dir, content(images), towers="both", fuse=fuse)
    assert enc.projection.in_features == width
    rows = torch.arange(5)
    text, image = enc.runners[0](rows), enc.runners[1](rows)
    want = (text + image) / 2 if fuse == "mean" else torch.cat([text, image], -1)
    assert torch.allclose(enc.encode_rows(rows), want)


@pytest.mark.parametrize("towers", ["text", "image"])
@pytest.mark.parametrize("mode", ["top_k", "full"])
def test_trainable_modes_match_frozen_at_start(clip_dir, images, towers, mode):
    c = content(images)
    frozen, _ = build(clip_dir, c, towers=towers)
    other, report = build(clip_dir, c, towers=towers, mode=mode, top_k=2, encode_batch_size=2)
    frozen.eval(), other.eval()
    ids = torch.tensor([4, 1, 5, 2, 3])
    with torch.no_grad():
        assert torch.allclose(frozen(ids), other(ids), atol=1e-5)
    if mode == "top_k":
        layers = other.runners[0].tower.layers
        assert len(layers) == 2 and report.extra["frozen_params"] > 0


def test_top_k_trains_only_the_top_layers_of_each_tower(clip_dir, images):
    enc, _ = build(clip_dir, content(images), towers="both", mode="top_k", top_k=1, lr=1e-3)
    held = {n: p.detach().clone() for n, p in enc.named_parameters()}
    assert not any("embeddings" in n for n in held)  # token / patch embeddings are below the cut
    lower = [r.hidden.clone() for r in enc.runners]
    optimiser = torch.optim.Adam(enc.param_groups(1e-2))
    enc.train()
    enc(torch.arange(1, 6)).pow(2).sum().backward()
    optimiser.step()
    changed = {n for n, p in enc.named_parameters() if not torch.equal(p, held[n])}
    assert changed == set(held)
    assert all(torch.equal(r.hidden, h) for r, h in zip(enc.runners, lower))


def test_missing_image_blank_or_a_clear_error(clip_dir, images):
    enc, _ = build(clip_dir, content(images, "blank"), towers="image")
    blank = clip_reference(clip_dir, image_paths=[None])[0]
    assert torch.allclose(enc.runners[0].table[2], blank, atol=1e-5)
    with pytest.raises(DataError, match="missing_image: error"):
        build_encoder(ClipEncoderSection(model=str(clip_dir)), content(images, "error"), 8)


def test_unreadable_image_fails_before_training(clip_dir, images, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    c = content([*images[:4], str(bad)], drop=())
    enc = build_encoder(ClipEncoderSection(model=str(clip_dir), mode="full"), c, 8)
    with pytest.raises(DataError, match="cannot be read"):
        enc.prepare()


def test_a_changed_image_misses_the_cache(clip_dir, images):
    c = content(images)
    assert build(clip_dir, c, towers="image")[1].cache_hit is False
    write_images(Path(images[0]).parent, 5, seed=1)  # same paths, new pixels
    assert build(clip_dir, c, towers="image")[1].cache_hit is False


def test_a_non_clip_model_is_refused(tmp_path, images):
    from tiny_encoders import tiny_bert

    bert = tiny_bert(tmp_path / "bert", layers=2)
    with pytest.raises(ValueError, match="not CLIP"):
        build_encoder(ClipEncoderSection(model=str(bert)), content(images), 8)


@pytest.mark.parametrize("towers,mode", [("both", "frozen"), ("image", "top_k")])
def test_end_to_end_clip_run(tiny_ml_dir, clip_dir, tmp_path, monkeypatch, towers, mode):
    """The tiny MovieLens fixture with a generated image for every other item (the rest blank)."""
    paths = write_images(tmp_path / "posters", 40)
    original = ItemContent.from_data

    def with_images(data, template, missing_text="empty", missing_image="blank", **kwargs):
        c = original(data, template, missing_text, missing_image, **kwargs)
        n = c.items.height
        col = pl.Series(
            "image_path", [paths[i % 40] if i % 2 == 0 else None for i in range(n)], dtype=pl.String
        )
        return replace(c, items=c.items.with_columns(col))

    monkeypatch.setattr(runner_module.ItemContent, "from_data", staticmethod(with_images))
    recipe = recipe_from_dict(
        {
            "name": "clip-e2e",
            "dataset": {"name": "movielens-100k", "data_dir": str(tiny_ml_dir)},
            "encoder": {"kind": "clip", "model": str(clip_dir), "towers": towers, "mode": mode, "top_k": 1},
            "backbone": {"kind": "sasrec", "dim": 16, "layers": 1, "heads": 1, "inner": 32},
            "train": {"max_len": 12, "batch_size": 16, "max_epochs": 2, "patience": 5, "lr": 0.01},
            "eval": {"ks": [1, 10]},
        }
    )
    (spec,) = expand(recipe)
    result = run_spec(spec, tracker=None)
    assert result.encoder_kind == "clip" and result.encoder_revision.startswith("sha256:")
    assert 0 <= result.metrics["test"]["ndcg@10"] <= 1 and len(result.history) == 2
