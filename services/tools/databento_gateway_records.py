"""The DBN the local Databento gateway writes besides market data: the session's metadata, symbol mappings, system
and error records, ``ts_out``, and the malformed records its fault hook injects.

All are bytes of DBN version 3, as the live gateway sends, e.g. a heartbeat (320 bytes, ``rtype`` 0x17)::

    SystemMsg(ts_event=1733149800000000000, msg='Heartbeat', code=SystemCode.HEARTBEAT)
"""

from __future__ import annotations

import struct
from typing import Any

DBN_VERSION = 3
HEARTBEAT_TEXT = "Heartbeat"
MALFORMED_KINDS = ("bad_side", "undefined_price", "unknown_record_type")
"""``bad_side``: a trade whose side byte is ``Z`` (it decodes; a normaliser must refuse it); ``undefined_price``: a
trade at ``UNDEF_PRICE`` (decodes, no price); ``unknown_record_type``: a 16-byte record of ``rtype`` 0xEE, on which the
client's DBN decoder fails (the official client then closes the connection)."""
_SIDE_OFFSET = 29  # header 16, price 8, size 4, action 1 (TradeMsg)


def session_metadata(dataset: str, start_ns: int, *, ts_out: bool) -> bytes:
    """The DBN metadata opening a live session: mixed schemas and symbology (``schema`` and ``stype_in`` None),
    ``stype_out`` instrument_id, ``start`` the session start (ns), no end, no symbols."""
    import databento_dbn as dbn

    metadata = dbn.Metadata(
        dataset=dataset,
        start=start_ns,
        stype_in=None,
        stype_out=dbn.SType.from_str("instrument_id"),
        schema=None,
        ts_out=ts_out,
        version=DBN_VERSION,
    )
    return bytes(metadata.encode())


def system_message(ts_ns: int, text: str, code: str) -> bytes:
    """A ``SystemMsg`` (``code`` a ``SystemCode`` name: ``HEARTBEAT``, ``SUBSCRIPTION_ACK``, ``UNSUBSCRIBE_ACK``)."""
    import databento_dbn as dbn

    return bytes(dbn.SystemMsg(ts_event=ts_ns, msg=text, code=dbn.SystemCode.from_str(code.lower())))


def heartbeat(ts_ns: int) -> bytes:
    """A heartbeat ``SystemMsg`` (``is_heartbeat()`` is true on the client)."""
    return system_message(ts_ns, HEARTBEAT_TEXT, "HEARTBEAT")


def error_message(ts_ns: int, text: str, code: str, *, is_last: bool = True) -> bytes:
    """An ``ErrorMsg`` (``code`` an ``ErrorCode`` name, e.g. ``SYMBOL_RESOLUTION_FAILED``)."""
    import databento_dbn as dbn

    return bytes(dbn.ErrorMsg(ts_event=ts_ns, err=text, code=dbn.ErrorCode.from_str(code.lower()), is_last=is_last))


def symbol_mapping(
    ts_ns: int, *, instrument_id: int, publisher_id: int, symbol_type: str, requested: str, raw_symbol: str
) -> bytes:
    """A ``SymbolMappingMsg``: the subscription's symbol (``stype_in_symbol``) → its raw symbol and instrument id,
    from ``ts_ns`` with no end (``UNDEF_TIMESTAMP``)."""
    import databento_dbn as dbn

    return bytes(
        dbn.SymbolMappingMsg(
            publisher_id=publisher_id,
            instrument_id=instrument_id,
            ts_event=ts_ns,
            stype_in=dbn.SType.from_str(symbol_type),
            stype_in_symbol=requested,
            stype_out=dbn.SType.from_str("raw_symbol"),
            stype_out_symbol=raw_symbol,
            start_ts=ts_ns,
            end_ts=dbn.UNDEF_TIMESTAMP,
        )
    )


def shifted_record(record: Any, ts_event: int, ts_recv: int, shift_ns: int) -> bytes:
    """A market record's bytes with its recorded ``ts_event``/``ts_recv`` moved by ``shift_ns``."""
    record.ts_event = ts_event + shift_ns
    record.ts_recv = ts_recv + shift_ns
    return bytes(record)


def with_ts_out(data: bytes, ts_out_ns: int) -> bytes:
    """One record with the send time appended (a session asked ``ts_out=1``): 8 more bytes, and the header's
    length (in 4-byte words) grown by 2."""
    return bytes((data[0] + 2,)) + data[1:] + struct.pack("<Q", ts_out_ns)


def malformed_record(kind: str, instrument_id: int, publisher_id: int, ts_ns: int) -> bytes:
    """One malformed record of ``kind`` (see :data:`MALFORMED_KINDS`) for ``instrument_id``."""
    import databento_dbn as dbn

    if kind == "unknown_record_type":
        return struct.pack("<BBHIQ", 4, 0xEE, publisher_id, instrument_id, ts_ns)
    if kind not in MALFORMED_KINDS:
        raise ValueError(f"unknown malformed kind {kind!r}; choose one of {', '.join(MALFORMED_KINDS)}")
    trade = dbn.TradeMsg(
        publisher_id=publisher_id,
        instrument_id=instrument_id,
        ts_event=ts_ns,
        ts_recv=ts_ns,
        price=dbn.UNDEF_PRICE if kind == "undefined_price" else 100 * 10**9,
        size=100,
        action=dbn.Action.from_str("T"),
        side=dbn.Side.from_str("A"),
        depth=0,
        flags=dbn.F_LAST,
    )
    data = bytes(trade)
    if kind == "bad_side":
        data = data[:_SIDE_OFFSET] + b"Z" + data[_SIDE_OFFSET + 1 :]
    return data
