"""A LOBSTER day as the local gateway's records: the records ``orderflow convert-lobster`` writes, of the gateway's
instrument id for the symbol.

:func:`lobster_records` is the one function :mod:`services.tools.databento_gateway_market` calls for a LOBSTER day.
It makes the records with the converter's own logic, a row at a time (the mapping is in
:mod:`services.tools.lobster_to_dbn` and :mod:`services.tools.lobster_to_mbo`), so replaying a LOBSTER day sends what
replaying its converted DBN files sends, except the instrument id (the converter writes 1, one symbol a file; the
gateway gives each symbol its own id so several days make one market):

=========  ==========================================================================================================
schema     records (dataset XNAS.ITCH, publisher 2; ``ts_recv`` = ``ts_event``; ``sequence`` the row number)
=========  ==========================================================================================================
mbo        the MBO file's: a clear (``R``) first, each message's order actions, and the stand-in orders that keep
           the rebuilt book level with LOBSTER's rows; a halt a StatusMsg
mbp-10     the MBP-10 file's (prints included, action ``T``); a halt a StatusMsg
trades     the trades file's
mbp-1      the MBP-1 file's (the top of the book, prints included); a halt a StatusMsg
tbbo       the MBP-1 file's prints (action ``T``, the top they met)
=========  ==========================================================================================================

Per row the schemas come in name order. A real sample: the AMZN 5-level day's first add (row 2, 09:30:00.189607670
New York time), as MBP-10::

    MBP10Msg(publisher_id=2, instrument_id=2879268766, ts_event=1340285400189607670, action='A', side='B', depth=0,
             price=223810000000, size=21, flags=F_LAST, sequence=2,
             levels=[BidAskPair(bid_px=223810000000, bid_sz=21, ask_px=223950000000, ask_sz=100), …])
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from services.ingest.lobster import describe, open_lobster_streams

LOBSTER_SCHEMAS = ("mbo", "mbp-1", "mbp-10", "tbbo", "trades")


def lobster_symbol(path: Path) -> str:
    """The symbol a LOBSTER zip or message CSV holds, from its name (``AMZN`` for ``…_AMZN_2012-06-21_5.zip``);
    ValueError when it is not a LOBSTER day."""
    with ExitStack() as stack:
        return describe(open_lobster_streams(path, stack).message_file)[0]


def lobster_records(path: Path, instrument_id: int, schemas: frozenset[str]) -> Iterator[tuple[str, Any]]:
    """``(schema, record)`` for each record of ``schemas`` the LOBSTER day at ``path`` makes, in row order.
    ValueError for a schema a LOBSTER day has no records of, files of different lengths, or unreadable rows (the
    error names the file and the first such rows)."""
    from databento_dbn import MBP1Msg, TradeMsg

    from services.tools.lobster_to_dbn import TRADE, ConversionReport, Mbp10Records, TopOfBookRecords, open_lobster
    from services.tools.lobster_to_mbo import MboConverter

    unknown = schemas - set(LOBSTER_SCHEMAS)
    if unknown:
        raise ValueError(f"a LOBSTER day makes no {', '.join(sorted(unknown))} records")
    ordered = sorted(schemas)
    books = Mbp10Records(instrument_id) if schemas & {"mbp-10", "trades"} else None
    tops = TopOfBookRecords(instrument_id) if schemas & {"mbp-1", "tbbo"} else None
    orders = MboConverter(ConversionReport("mbo"), instrument_id) if "mbo" in schemas else None
    with ExitStack() as stack:
        lobster = open_lobster(path, stack)
        for number, row in enumerate(lobster.rows):
            if orders is not None and number == 0:
                yield "mbo", orders.clear_record(row.ts_event)
            book_records = books.records(row) if books is not None else []
            top_records = tops.records(row) if tops is not None else []
            for schema in ordered:
                if schema == "mbo" and orders is not None:
                    yield from (("mbo", record) for record in orders.records(row))
                elif schema == "mbp-10":
                    yield from (("mbp-10", record) for record in book_records if not isinstance(record, TradeMsg))
                elif schema == "trades":
                    yield from (("trades", record) for record in book_records if isinstance(record, TradeMsg))
                elif schema == "mbp-1":
                    yield from (("mbp-1", record) for record in top_records)
                elif schema == "tbbo":
                    prints = (
                        record for record in top_records if isinstance(record, MBP1Msg) and record.action == TRADE
                    )
                    yield from (("tbbo", record) for record in prints)
        if lobster.invalid_rows:
            rows = ", ".join(map(str, lobster.invalid_rows[:5]))
            raise ValueError(f"{len(lobster.invalid_rows):,} rows are not LOBSTER rows (rows {rows}…)")
