"""Ingest: market-data sources normalised onto the per-symbol Redis streams."""
