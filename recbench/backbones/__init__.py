"""Sequence backbones: item-vector sequences (B, T, D) -> states (B, T, D)."""
