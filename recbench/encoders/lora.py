"""LoRA on a pretrained tower (transfer mode `lora`), through peft.

Why peft: low-rank adapters on Hugging Face attention projections are exactly what it implements and keeps
current (initialisation with B = 0 so the adapted tower starts as the transferred one, scaling alpha / r,
the wrapped base layer kept frozen); writing our own would duplicate it. It is an optional dependency
(`pip install recbench[transfer]`, in the dev extra): only this mode imports it.

Only towers that run at every training step can carry LoRA: a text or CLIP encoder in mode `top_k` (the top
layers) or `full`. In `frozen` mode the tower never runs during training (its vectors are cached), so there is
nothing to adapt; the recipe check refuses it.
"""

from __future__ import annotations

from torch import nn

# attention projections of the towers recbench wraps: BERT-family (query/value), CLIP (q_proj/v_proj)
TARGETS = ("query", "value", "q_proj", "v_proj")


def insert_lora(encoder: nn.Module, rank: int, alpha: float) -> list[nn.Parameter]:
    """Low-rank adapters in every attention projection of the encoder's running towers; returns their
    parameters. The towers' own weights are left in place (frozen by the caller)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise RuntimeError(
            "transfer mode lora needs peft: pip install 'recbench[transfer]' (or pip install peft)"
        ) from None
    towers = encoder.lora_modules()
    if not towers:
        raise ValueError(
            "transfer mode lora needs a text or CLIP tower that runs at every step (mode top_k or full)"
        )
    present = {name.rsplit(".", 1)[-1] for tower in towers for name, _ in tower.named_modules()}
    targets = [t for t in TARGETS if t in present]
    if not targets:
        raise ValueError(f"no attention projection named {TARGETS} in the tower: LoRA has nothing to adapt")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, bias="none")
    params: list[nn.Parameter] = []
    for tower in towers:
        inject_adapter_in_model(config, tower)
        params += [p for name, p in tower.named_parameters() if "lora_" in name]
    return params
