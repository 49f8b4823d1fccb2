"""Writing a DBN file: its metadata (with :func:`metadata_mapping`, a raw symbol's instrument id over some days), then
records in blocks, plain or zstd-compressed through ``databento_dbn``'s Transcoder; the names the LOBSTER converter
gives its files (``AMZN_2012-06-21_mbp-10.dbn.zst``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from databento_dbn import Compression, Encoding, Metadata, Transcoder
from databento_dbn.metadata import MappingInterval


@dataclass
class SymbolInterval:
    """One interval of a DBN metadata mapping: ``symbol`` is the instrument id (as text) from ``start_date`` to
    ``end_date`` (exclusive, UTC dates), as ``databento_dbn.Metadata`` reads its ``mappings``."""

    start_date: date
    end_date: date
    symbol: str


@dataclass
class SymbolMapping:
    """A raw symbol and its intervals, one entry of ``Metadata(mappings=[…])``."""

    raw_symbol: str
    intervals: Sequence[MappingInterval]


def metadata_mapping(raw_symbol: str, instrument_id: int, start: date, end: date) -> SymbolMapping:
    """``raw_symbol`` is ``instrument_id`` over ``[start, end)``: ``metadata_mapping("AMZN", 1, day, next_day)``."""
    return SymbolMapping(raw_symbol, [SymbolInterval(start, end, str(instrument_id))])


class DbnWriter:
    """Metadata then records into ``path``, zstd-compressed through databento_dbn's Transcoder when ``zstd``;
    records are buffered and written in blocks."""

    def __init__(self, path: Path, first: Metadata, *, zstd: bool) -> None:
        self.handle = path.open("wb")
        self.transcoder = Transcoder(self.handle, Encoding("dbn"), Compression("zstd")) if zstd else None
        self.pending: list[bytes] = [bytes(first)]
        self.records = 0

    def add(self, record: Any) -> None:
        self.pending.append(bytes(record))
        self.records += 1
        if len(self.pending) >= 8192:
            self._flush()

    def _flush(self) -> None:
        block = b"".join(self.pending)
        self.pending.clear()
        if self.transcoder is not None:
            self.transcoder.write(block)
        else:
            self.handle.write(block)

    def close(self) -> None:
        self._flush()
        if self.transcoder is not None:
            self.transcoder.finish()
        self.handle.close()


def output_name(symbol: str, day: date, schema: str, zstd: bool) -> str:
    """``AMZN_2012-06-21_mbp-10.dbn.zst``"""
    return f"{symbol}_{day.isoformat()}_{schema}.dbn{'.zst' if zstd else ''}"
