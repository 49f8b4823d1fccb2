"""Offline tools over files: ``analyze`` (the rules over a day), ``backtest`` (what the exits would have saved),
``calibrate`` (thresholds from history). They use both ingest's parsers and the detector's rules, in one process."""
