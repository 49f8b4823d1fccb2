"""Reading the JSON-lines files the commands write: ``analyze``'s outputs and the logs (one object a line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every object of one file (e.g. ``alerts.jsonl`` of ``orderflow analyze``); none if it does not exist."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def log_lines(folder: Path) -> list[dict[str, Any]]:
    """Every line of the JSONL logs in ``folder`` (``<UTC date>.jsonl``, e.g. ``{"event": "order_flow.bus_recovered",
    ...}``), the files in name order."""
    return [line for path in sorted(folder.glob("*.jsonl")) for line in read_jsonl(path)]
