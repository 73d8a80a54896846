"""MoRec's text item encoder: a BERT-family model over each item's text, pooled and projected.

Deviation from MoRec: MoRec fine-tunes end to end (or the top layers) with in-batch sampled losses on GPUs;
here the loss is whatever the recipe declares for every encoder alike, and `top_k` caches the frozen lower
layers' token states on disk so a CPU can afford it (each step runs only the top k layers).
"""

from __future__ import annotations

from recbench.config import TextEncoderSection
from recbench.data.content import ItemContent
from recbench.encoders.feeds import TextFeed
from recbench.encoders.modality import ModalityEncoder, TowerSource, encoder_from_section
from recbench.encoders.pretrained import load_config, load_model, load_tokenizer, resolve_model
from recbench.encoders.towers import BertTower


def build_text_encoder(section: TextEncoderSection, content: ItemContent, dim: int) -> ModalityEncoder:
    """Everything is checked here, before training: the texts render (or the card's missing-text policy
    raises), the model resolves, and top_k fits its depth. Weights load later, in prepare()."""
    texts = content.texts()
    resolved = resolve_model(section.model, section.revision)
    config = load_config(resolved, section.trust_remote_code)
    limit = getattr(config, "max_position_embeddings", None) or section.max_tokens
    if not hasattr(config, "num_hidden_layers") or not hasattr(config, "hidden_size"):
        raise ValueError(f"{resolved.name} ({config.model_type}) is not a BERT-family text encoder")

    def load() -> BertTower:
        from transformers import AutoModel

        return BertTower(load_model(AutoModel, resolved, section.trust_remote_code), section.pooling)

    source = TowerSource(
        name="text",
        width=config.hidden_size,
        num_layers=config.num_hidden_layers,
        load=load,
        feed=TextFeed(
            texts, lambda: load_tokenizer(resolved, section.trust_remote_code), min(section.max_tokens, limit)
        ),
        key={"tower_class": "BertTower", "pooling": section.pooling},
    )
    return encoder_from_section(section, [source], resolved, content, dim)
