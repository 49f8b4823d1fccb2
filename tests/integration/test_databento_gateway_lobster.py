"""The local gateway's LOBSTER records are the converter's: the AMZN 5-level day's MBO stream, written as the gateway
holds it, reads back as ``--format dbn`` does the converted MBO file: no message on an unknown order, the same
books and trades, only the instrument id differing."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import databento_dbn as dbn

from orderflow_client.wire import BookUpdate, Trade
from services.ingest.databento_files import DbnCounts, read_dbn
from services.ingest.rejects import Reject
from services.tools.databento_gateway_market import instrument_id_of, load_market
from services.tools.dbn_writer import metadata_mapping
from services.tools.lobster_to_dbn import open_lobster
from services.tools.lobster_to_mbo import convert_mbo
from tests.support.paths import shared_data

DAY = "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"


def test_the_gateways_mbo_stream_of_a_5_level_day_reads_back_as_the_converted_file(tmp_path: Path) -> None:
    zipped = shared_data("lobster", DAY)
    market = load_market([zipped], lobster_schemas=frozenset({"mbo"}))
    amzn = instrument_id_of("AMZN")
    assert market.instruments == {"AMZN": amzn} and market.schemas == {"mbo"}
    records = [entry.record for entry in market.records]
    metadata = dbn.Metadata(
        dataset="XNAS.ITCH",
        start=records[0].ts_event,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema.MBO,
        symbols=["AMZN"],
        mappings=[metadata_mapping("AMZN", amzn, dt.date(2012, 6, 21), dt.date(2012, 6, 22))],
    )
    streamed = tmp_path / "gateway_mbo.dbn"
    streamed.write_bytes(bytes(metadata.encode()) + b"".join(bytes(record) for record in records))
    counts = DbnCounts()
    events = list(read_dbn([streamed], counts=counts))
    rejects = Counter(event.code for event in events if isinstance(event, Reject))
    assert rejects["unknown_order"] == 0 and not rejects, rejects
    books = sum(isinstance(event, BookUpdate) for event in events)
    trades = sum(isinstance(event, Trade) for event in events)
    assert books > 100_000 and trades > 10_000

    with ExitStack() as stack:
        converted = convert_mbo(open_lobster(zipped, stack), tmp_path, zstd=False).files[0]
    assert events == list(read_dbn([converted]))  # the same events, the symbol named by each file's mapping
    written = dbn.DBNDecoder().write_and_decode(converted.read_bytes())[1:]
    assert len(written) == len(records)
    assert {record.instrument_id for record in written} == {1} and {record.instrument_id for record in records} == {
        amzn
    }
    for record in records:
        record.instrument_id = 1
    assert [bytes(record) for record in records] == [bytes(record) for record in written]
