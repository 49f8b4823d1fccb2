"""What the local Databento gateway replays: the records of DBN files, or of LOBSTER days, merged in time order.

``load_market([path, …])`` reads each file whole:

* a **DBN file** (``.dbn``, ``.dbn.zst``; DBN version 1-3, upgraded to 3 as the live gateway sends): its dataset and
  symbols from the metadata (``mappings`` of a file requested by raw symbol or by instrument id) and from any
  ``SymbolMappingMsg`` in the stream (a recorded live session); its MBO, MBP-1, MBP-10, TBBO and trade records. Other
  records (definitions, statistics, status, …) are left out;
* a **LOBSTER day** (zip, or message CSV beside its orderbook CSV): records of dataset XNAS.ITCH made by
  :func:`services.tools.databento_gateway_lobster.lobster_records` (the ``orderflow convert-lobster`` records), for
  the schemas asked (MBP-10 and trades by default), its symbol given instrument id ``instrument_id_of(symbol)``.

Every record keeps the times it was recorded with; the gateway rewrites them as it sends (``ts_recv`` becomes the
time it is sent). A market of the AMZN 1-level sample day, MBP-10 and trades: 77,908 records (66,489 and 11,419),
recorded from 2012-06-21 09:30:00.017 to 15:59:59.959 New York time.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.tools.databento_gateway_lobster import LOBSTER_SCHEMAS, lobster_records, lobster_symbol

LOBSTER_DATASET = "XNAS.ITCH"
DEFAULT_LOBSTER_SCHEMAS = frozenset({"mbp-10", "trades"})
REPLAYED_SCHEMAS = frozenset(LOBSTER_SCHEMAS)
"""The schemas the gateway replays (each record carries ``ts_recv``): mbo, mbp-1, mbp-10, tbbo, trades."""


@dataclass(frozen=True, slots=True)
class MarketRecord:
    """One record to replay. ``ts_index`` (ns, its recorded ``ts_recv``) paces the replay; ``ts_event`` and
    ``ts_recv`` are the recorded times the gateway shifts when it sends ``record`` (a ``databento_dbn`` record)."""

    ts_index: int
    schema: str
    instrument_id: int
    record: Any
    ts_event: int
    ts_recv: int


@dataclass
class Market:
    """Every record of the files, by ``ts_index``; ``instruments`` maps raw symbols to instrument ids."""

    dataset: str
    records: list[MarketRecord]
    instruments: dict[str, int] = field(default_factory=dict)

    @property
    def schemas(self) -> frozenset[str]:
        """The schemas that have records."""
        return frozenset(record.schema for record in self.records)

    def symbol_of(self, instrument_id: int) -> str:
        """The raw symbol of an instrument id (its digits when the files never named it)."""
        for symbol, known in self.instruments.items():
            if known == instrument_id:
                return symbol
        return str(instrument_id)


def instrument_id_of(symbol: str) -> int:
    """The instrument id a LOBSTER symbol gets: its CRC-32, so a symbol keeps its id whatever the files given
    (``instrument_id_of("AMZN")`` is the same in every run); never 0."""
    return zlib.crc32(symbol.encode()) or 1


def is_dbn_file(path: Path) -> bool:
    """``.dbn`` or ``.dbn.zst`` (any case)."""
    name = path.name.lower()
    return name.endswith(".dbn") or name.endswith(".dbn.zst")


def load_market(
    paths: list[Path], *, lobster_schemas: frozenset[str] = DEFAULT_LOBSTER_SCHEMAS, dataset: str | None = None
) -> Market:
    """The records of every file, merged by ``ts_index``. ``ValueError`` (its message names the file) for a file
    that is neither DBN nor LOBSTER or does not decode, datasets that differ, or a symbol with two instrument ids."""
    datasets: set[str] = set() if dataset is None else {dataset}
    instruments: dict[str, int] = {}
    records: list[MarketRecord] = []
    for path in paths:
        if is_dbn_file(path):
            file_dataset, file_instruments, file_records = _read_dbn(path)
        else:
            file_dataset, file_instruments, file_records = _read_lobster(path, lobster_schemas)
        datasets.add(file_dataset)
        if len(datasets) > 1:
            raise ValueError(f"{path.name}: dataset {file_dataset}, but the market is {', '.join(sorted(datasets))}")
        for symbol, instrument_id in file_instruments.items():
            if instruments.setdefault(symbol, instrument_id) != instrument_id:
                raise ValueError(
                    f"{path.name}: {symbol} is instrument {instrument_id}, elsewhere {instruments[symbol]}"
                )
        records.extend(file_records)
    records.sort(key=lambda record: record.ts_index)
    return Market(dataset=next(iter(datasets), LOBSTER_DATASET), records=records, instruments=instruments)


def _read_lobster(path: Path, schemas: frozenset[str]) -> tuple[str, dict[str, int], list[MarketRecord]]:
    try:
        symbol = lobster_symbol(path)
    except (ValueError, OSError) as error:
        raise ValueError(f"{path.name} is neither a DBN file (.dbn, .dbn.zst) nor a LOBSTER day: {error}") from None
    instrument_id = instrument_id_of(symbol)
    try:
        records = [_market_record(schema, record) for schema, record in lobster_records(path, instrument_id, schemas)]
    except ValueError as error:
        raise ValueError(f"{path.name}: {error}") from None
    return LOBSTER_DATASET, {symbol: instrument_id}, records


def _read_dbn(path: Path) -> tuple[str, dict[str, int], list[MarketRecord]]:
    import databento_dbn as dbn

    compression = dbn.Compression.from_str("zstd" if path.name.lower().endswith(".zst") else "none")
    upgrade = dbn.VersionUpgradePolicy.from_int(int(dbn.VersionUpgradePolicy.UPGRADE_TO_V3))
    decoder = dbn.DBNDecoder(upgrade_policy=upgrade, compression=compression)
    items: list[Any] = []
    try:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                items.extend(decoder.write_and_decode(chunk))
    except (dbn.DBNError, ValueError, RuntimeError) as error:  # RuntimeError: a damaged zstd stream
        raise ValueError(f"{path.name} does not decode as DBN: {error}") from None
    if not items or not isinstance(items[0], dbn.Metadata):
        raise ValueError(f"{path.name} holds no DBN metadata")
    metadata = items[0]
    instruments = _mapped_instruments(metadata, dbn)
    schema_of = {
        int(dbn.RType.MBP_0): "trades",
        int(dbn.RType.MBP_1): "tbbo" if str(metadata.schema) == "tbbo" else "mbp-1",
        int(dbn.RType.MBP_10): "mbp-10",
        int(dbn.RType.MBO): "mbo",
    }
    records = []
    for item in items[1:]:
        if isinstance(item, dbn.SymbolMappingMsg):
            instruments[item.stype_out_symbol] = item.instrument_id
            continue
        schema = schema_of.get(int(item.rtype))
        if schema is not None:
            records.append(_market_record(schema, item))
    return str(metadata.dataset), instruments, records


def _mapped_instruments(metadata: Any, dbn: Any) -> dict[str, int]:
    """Raw symbol → instrument id from a DBN file's ``mappings`` (files requested by raw symbol or instrument id;
    other symbologies name no raw symbol, so they map nothing)."""
    instruments: dict[str, int] = {}
    by_raw_symbol = metadata.stype_in == dbn.SType.RAW_SYMBOL
    by_instrument_id = metadata.stype_in == dbn.SType.INSTRUMENT_ID
    for key, intervals in (metadata.mappings or {}).items():
        for interval in intervals:
            symbol, identifier = (key, interval["symbol"]) if by_raw_symbol else (interval["symbol"], key)
            if (by_raw_symbol or by_instrument_id) and identifier.isdigit():
                instruments[symbol] = int(identifier)
    return instruments


def _market_record(schema: str, record: Any) -> MarketRecord:
    return MarketRecord(
        ts_index=record.ts_recv,
        schema=schema,
        instrument_id=record.instrument_id,
        record=record,
        ts_event=record.ts_event,
        ts_recv=record.ts_recv,
    )
