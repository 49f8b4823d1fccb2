"""Detector: rules over the per-symbol streams; alerts and exit recommendations."""
