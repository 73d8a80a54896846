"""Datasets: cards, downloads, adapters (raw files -> canonical polars frames), preprocessing, splits."""
