"""Every offline source behind one call: format name + files → events in order.

``read_events("lobster", [Path("AMZN.zip")])`` yields normalised market
events (not yet deduplicated or classified: see
:mod:`services.ingest.normalise`) and :class:`Reject` values, streaming.

Formats:
* ``capture`` — recorded live frames (:mod:`services.ingest.capture`), several
  files merged by event time (each in its own order);
* ``polygon-flat`` — Polygon/Massive flat files; trades and quotes files
  are merged by SIP time, quotes first on ties;
* ``lobster`` — LOBSTER zips or message CSVs, several merged by event time;
* ``algoseek`` — AlgoSeek trade and quote zips, merged by time (any symbols: an index's trades beside a stock's);
* ``dbn`` — Databento DBN files (``.dbn``, ``.dbn.zst``: MBP-10, MBP-1, TBBO, trades, MBO), merged by receive
  time (:mod:`services.ingest.databento_files`, imported only for this format).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Literal

from orderflow_client.wire import MarketEvent
from services.ingest.algoseek_columns import read_algoseek
from services.ingest.capture import CaptureLine, read_capture
from services.ingest.lobster import read_lobster
from services.ingest.polygon_flat import read_flat_file
from services.ingest.polygon_ws import parse_frame
from services.ingest.rejects import Reject

Format = Literal["capture", "polygon-flat", "lobster", "algoseek", "dbn"]
FORMATS: tuple[str, ...] = ("capture", "polygon-flat", "lobster", "algoseek", "dbn")


def read_events(
    format: str,
    paths: list[Path],
    *,
    symbol: str | None = None,
    day: date | None = None,
    quote_size_multiplier: int = 1,
) -> Iterator[MarketEvent | Reject]:
    """Stream the events of ``paths`` in ``format``, keeping ``symbol`` only when given."""
    if format == "capture":
        return _capture_events(paths, symbol, quote_size_multiplier)
    if format == "polygon-flat":
        ordered = sorted(paths, key=lambda path: 0 if "quote" in path.name.lower() else 1)
        return heapq.merge(
            *(read_flat_file(path, symbol, quote_size_multiplier=quote_size_multiplier) for path in ordered), key=_time
        )
    if format == "lobster":
        return merged(read_lobster(path, symbol=symbol, day=day) for path in paths)
    if format == "algoseek":
        return read_algoseek(paths, symbol)
    if format == "dbn":
        from services.ingest.databento_files import read_dbn  # databento_dbn only when reading DBN

        return read_dbn(paths, symbol)
    raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")


def detect_format(path: Path) -> str:
    """The format of ``path`` from its name: LOBSTER zips and message files, AlgoSeek day zips, Polygon flat
    files (``.csv`` / ``.csv.gz``), Databento files (``.dbn`` / ``.dbn.zst``), else a capture; ValueError when it
    cannot be told."""
    name = path.name.lower()
    if name.endswith((".dbn", ".dbn.zst")):
        return "dbn"
    if "lobster" in name or "_message_" in name:
        return "lobster"
    if re.fullmatch(r"\d{8}_(trade|quote)\.zip", name):
        return "algoseek"
    if name.endswith((".csv", ".csv.gz")):
        return "polygon-flat"
    if name.endswith((".jsonl", ".capture", ".jsonl.gz")):
        return "capture"
    raise ValueError(f"cannot tell the format of {path.name}; give --format")


def _time(item: MarketEvent | Reject) -> int:
    return 0 if isinstance(item, Reject) else item.ts_event


def merged(streams: Iterable[Iterable[MarketEvent | Reject]]) -> Iterator[MarketEvent | Reject]:
    """Time-ordered streams (files, groups of files, formats) as one, by ``ts_event`` (ties: the earlier stream
    first); a reject goes out as soon as it heads its stream. One stream is passed through as it is."""
    streams = list(streams)
    if len(streams) == 1:
        return iter(streams[0])
    return heapq.merge(*streams, key=_time)


def _capture_events(paths: list[Path], symbol: str | None, multiplier: int) -> Iterator[MarketEvent | Reject]:
    return merged(_capture_file(path, symbol, multiplier) for path in paths)


def _capture_file(path: Path, symbol: str | None, multiplier: int) -> Iterator[MarketEvent | Reject]:
    for line in read_capture(path):
        if not isinstance(line, CaptureLine):
            yield line
            continue
        parsed = parse_frame(line.frame, line.ts_recv, quote_size_multiplier=multiplier)
        yield from parsed.rejects
        for event in parsed.events:
            if symbol is None or event.symbol == symbol:
                yield event
