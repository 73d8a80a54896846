"""recbench: ID-based vs modality-based sequential recommenders under one declared protocol."""

__version__ = "0.1.0"
