"""Tiny random pretrained models saved with save_pretrained into a folder, for the content-encoder tests.

They load through exactly the code path a hub model does (resolve -> config -> from_pretrained), offline and
in well under a second. A BERT (2-4 layers, hidden 32, a vocab.txt written here) and a CLIP (text and vision
towers, a byte-level BPE tokenizer built here, the PIL image processor at 32x32 pixels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

WORDS = (
    "movie drama comedy action genres the a of and item text red green blue story night day "
    "0 1 2 3 4 5 6 7 8 9 ( ) . , : ; ' - !"
).split()


def tiny_bert(folder: Path, layers: int = 3, seed: int = 0) -> Path:
    """A random BertModel (hidden 32, `layers` layers) and a WordPiece vocab.txt, saved into `folder`."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *[f"##{c}" for c in letters]]
    vocab = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(folder).save_pretrained(folder)  # reads vocab.txt, writes its configs
    return folder


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, n = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


def tiny_clip(folder: Path, layers: int = 3, seed: int = 0) -> Path:
    """A random CLIPModel (both towers hidden 32, `layers` layers, projection 16), a byte-level BPE tokenizer
    (every byte a token, a few merges) and a 32x32 PIL image processor, saved into `folder`."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder.mkdir(parents=True, exist_ok=True)
    byte_chars = list(_bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + byte_chars + [c + "</w>" for c in byte_chars]
    merges = ["m o", "mo v", "mov i", "movi e</w>", "d r", "dr a", "dra m", "dram a</w>"]
    tokens += ["mo", "mov", "movi", "movie</w>", "dr", "dra", "dram", "drama</w>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges])
    tok.save_pretrained(folder)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "max_position_embeddings": 40,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    return folder


def write_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """`n` small random RGB images (PNG), one colour pattern each."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 256, size=(20 + i % 7, 24, 3), dtype=np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def corrupt(path: Path) -> None:
    """Flip bytes in the middle of a file, keeping its size."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8] = bytes(255 - b for b in data[mid : mid + 8])
    path.write_bytes(bytes(data))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
