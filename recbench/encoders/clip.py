"""CLIP item encoder: the text tower over item text, the vision tower over item images, or both fused.

Each tower's output is CLIP's own embedding (pooled state + CLIP's projection), so the two towers live in one
space and `fuse: mean` is meaningful; `concat` keeps both. The image processor is the model's own, PIL backend.
"""

from __future__ import annotations

from recbench.config import ClipEncoderSection
from recbench.data.content import ItemContent
from recbench.encoders.feeds import ImageFeed, TextFeed
from recbench.encoders.modality import ModalityEncoder, TowerSource, encoder_from_section
from recbench.encoders.pretrained import (
    ResolvedModel,
    load_config,
    load_image_processor,
    load_model,
    load_tokenizer,
    resolve_model,
)
from recbench.encoders.towers import ClipTextTower, ClipVisionTower


class _SharedClip:
    """Loads the CLIP model once for both towers during prepare(), then lets it go (each tower keeps only
    its own modules)."""

    def __init__(self, resolved: ResolvedModel, trust_remote_code: bool):
        self.resolved, self.trust_remote_code = resolved, trust_remote_code
        self.model = None

    def __call__(self):
        if self.model is None:
            from transformers import CLIPModel

            self.model = load_model(CLIPModel, self.resolved, self.trust_remote_code)
        return self.model

    def release(self) -> None:
        self.model = None


def build_clip_encoder(section: ClipEncoderSection, content: ItemContent, dim: int) -> ModalityEncoder:
    """Content problems (no text template, missing images under `missing_image: error`, unreadable files)
    raise here or in prepare(), before training."""
    resolved = resolve_model(section.model, section.revision)
    config = load_config(resolved, section.trust_remote_code)
    if getattr(config, "model_type", None) != "clip":
        raise ValueError(f"{resolved.name} is a '{config.model_type}' model, not CLIP (kind: clip)")
    clip = _SharedClip(resolved, section.trust_remote_code)
    sources = []
    if section.towers in ("text", "both"):
        limit = config.text_config.max_position_embeddings
        sources.append(
            TowerSource(
                name="text",
                width=config.projection_dim,
                num_layers=config.text_config.num_hidden_layers,
                load=lambda: ClipTextTower(clip()),
                feed=TextFeed(
                    content.texts(),
                    lambda: load_tokenizer(resolved, section.trust_remote_code),
                    min(section.max_tokens, limit),
                ),
                key={"tower_class": "ClipTextTower"},
                release=clip.release,
            )
        )
    if section.towers in ("image", "both"):
        sources.append(
            TowerSource(
                name="image",
                width=config.projection_dim,
                num_layers=config.vision_config.num_hidden_layers,
                load=lambda: ClipVisionTower(clip()),
                feed=ImageFeed(
                    content.image_paths(),
                    lambda: load_image_processor(resolved, section.trust_remote_code),
                    (config.vision_config.image_size // config.vision_config.patch_size) ** 2 + 1,
                    content.dataset,
                ),
                key={"tower_class": "ClipVisionTower"},
                release=clip.release,
            )
        )
    return encoder_from_section(
        section, sources, resolved, content, dim, fuse=section.fuse, towers=section.towers
    )
