"""Databento's historical API for a live gap, without a socket: the ``get_range`` request ingest builds (held to the
official client's), the reply decoded into backfilled trades, and the local stand-in's parsing and answers
(:mod:`services.ingest.databento_history`, :mod:`services.tools.databento_history_server`)."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import UTC, datetime, timedelta

import databento_dbn as dbn
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.databento_history import (
    HistoricalError,
    ReplyDecoder,
    error_message,
    get_range_form,
)
from services.tools.databento_gateway import DatabentoGateway
from services.tools.databento_gateway_market import Market, MarketRecord
from services.tools.databento_history_server import (
    GET_RANGE_PATH,
    HistoricalStandIn,
    Refusal,
    parse_request,
    parse_time,
)

KEY = "db-UNITtestKEY0123456789ABCDEF"
T0 = 1_781_011_800_000_000_000  # 2026-06-09 13:30:00 UTC
AMZN, AAPL = 11, 22


def trade(instrument_id: int, sequence: int, side: str = "A", price: int = 220_300_000_000) -> MarketRecord:
    record = dbn.TradeMsg(
        publisher_id=2,
        instrument_id=instrument_id,
        ts_event=T0 + sequence * 1_000_000 - 500,
        price=price,
        size=100,
        action=dbn.Action("T"),
        side=dbn.Side(side),
        depth=0,
        ts_recv=T0 + sequence * 1_000_000,
        flags=dbn.F_LAST,
        sequence=sequence,
    )
    return MarketRecord(record.ts_recv, "trades", instrument_id, record, record.ts_event, record.ts_recv)


@pytest.fixture
def stand_in() -> HistoricalStandIn:
    """Ten trades of AMZN and AAPL, 1 ms apart; a gateway at speed 0 (times as recorded), never started."""
    records = [trade(AMZN if n % 2 else AAPL, n, "AB"[n % 3 == 0] if n != 7 else "N") for n in range(1, 11)]
    market = Market("XNAS.ITCH", records, {"AMZN": AMZN, "AAPL": AAPL})
    return HistoricalStandIn(DatabentoGateway(market, api_key=KEY, speed=0), api_key=KEY)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def form(**overrides: str) -> dict[str, str]:
    return {**get_range_form("XNAS.ITCH", ["AMZN"], "trades", T0, T0 + 10**9), **overrides}


def post(stand_in: HistoricalStandIn, fields: dict[str, str], key: str = KEY) -> tuple[int, dict[str, str], bytes]:
    body = "&".join(f"{name}={value}" for name, value in fields.items()).encode()
    return stand_in.answer("POST", GET_RANGE_PATH, basic(key), body)


# --- the request -----------------------------------------------------------------------------------------------------


def test_the_request_is_the_official_clients(monkeypatch):
    """databento.Historical().timeseries.get_range builds these form fields (caught before it sends them)."""
    import databento

    sent: dict = {}

    def caught(self, url, data, basic_auth, path=None):
        sent.update(url=url, data=data, basic_auth=basic_auth)

    monkeypatch.setattr(databento.historical.api.timeseries.TimeseriesHttpAPI, "_stream", caught)
    client = databento.Historical(key=KEY)
    client.timeseries.get_range("XNAS.ITCH", start=T0, end=T0 + 3_400_000_000, symbols=["AMZN", "AAPL"])
    ours = get_range_form("XNAS.ITCH", ["AMZN", "AAPL"], "trades", T0, T0 + 3_400_000_000)
    assert sent["data"] == ours and sent["basic_auth"] is True
    assert sent["url"] == "https://hist.databento.com/v0/timeseries.get_range"


def test_a_request_without_symbols_or_with_an_empty_range_is_never_sent():
    with pytest.raises(ValueError, match="at least one symbol"):
        get_range_form("XNAS.ITCH", [], "trades", T0, T0 + 1)
    with pytest.raises(ValueError, match="start < end"):
        get_range_form("XNAS.ITCH", ["AMZN"], "trades", T0, T0)


def test_databentos_error_bodies_are_read_as_its_clients_read_them():
    body = b'{"detail": {"case": "auth_invalid_api_key", "message": "Invalid API key.", "docs": null}}'
    assert error_message(body) == "auth_invalid_api_key: Invalid API key."
    assert error_message(b'{"detail": "Too many requests."}') == "Too many requests."
    assert error_message(b"<html>502 Bad Gateway</html>") == "<html>502 Bad Gateway</html>"
    assert error_message(b"") == ""


def test_the_stand_ins_error_bodies_read_in_the_official_client_as_in_ours(stand_in):
    from databento.common.error import BentoClientError

    status, _, body = stand_in.answer("POST", GET_RANGE_PATH, basic("db-wrongWRONGwrong0123456789ABC"), b"")
    official = BentoClientError(http_status=status, json_body=json.loads(body))
    assert str(official).startswith("401 auth_authentication_failed\nAuthentication failed.")
    assert error_message(body) == "auth_authentication_failed: Authentication failed."


# --- the reply -----------------------------------------------------------------------------------------------------


def test_the_stand_ins_reply_becomes_the_asked_symbols_trades_with_sides(stand_in):
    status, headers, body = post(stand_in, form(end=str(T0 + 8_000_000)))
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert body[:4] == b"\x28\xb5\x2f\xfd"  # zstd, as asked
    decoder = ReplyDecoder({"AMZN"})
    batch = decoder.feed(body, received=T0 + 5 * 10**9)
    decoder.finish()
    assert [t.sequence for t in batch.trades] == [1, 3, 5, 7]  # AMZN's, before the exclusive end
    assert [t.side for t in batch.trades] == ["sell", "buy", "sell", "unknown"]  # A, B, A, N
    assert [t.side_source for t in batch.trades] == ["feed", "feed", "feed", "none"]
    first = batch.trades[0]
    assert (first.symbol, first.price, first.size, first.exchange, first.trade_id) == (
        "AMZN",
        220_300_000_000,
        100,
        12,
        "1",
    )
    assert first.backfilled and first.ts_recv == first.ts_arrival == T0 + 5 * 10**9
    assert first.ts_event == T0 + 1_000_000 - 500 and batch.rejects == []


def test_a_reply_that_ends_inside_a_record_or_is_not_dbn_is_an_error(stand_in):
    body = post(stand_in, form(compression="none"))[2]
    decoder = ReplyDecoder({"AMZN"})
    decoder.feed(body[:-10], T0)
    with pytest.raises(HistoricalError, match="ended inside"):
        decoder.finish()
    with pytest.raises(HistoricalError, match="does not decode as DBN"):
        ReplyDecoder({"AMZN"}).feed(b"HTTP/1.1 this is not DBN at all" * 4, T0)


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12), zstd=st.booleans())
def test_a_reply_read_in_any_pieces_gives_the_same_trades(cuts, zstd):
    stand_in = _stand_in()
    body = post(stand_in, form(symbols="AMZN,AAPL", compression="zstd" if zstd else "none"))[2]
    whole = ReplyDecoder({"AMZN", "AAPL"}).feed(body, T0).trades
    decoder, pieced = ReplyDecoder({"AMZN", "AAPL"}), []
    points = sorted({min(cut, len(body)) for cut in cuts} | {0, len(body)})
    for start, end in itertools.pairwise(points):
        pieced.extend(decoder.feed(body[start:end], T0).trades)
    decoder.finish()
    assert pieced == whole and [t.sequence for t in whole] == list(range(1, 11))


def _stand_in() -> HistoricalStandIn:
    records = [trade(AMZN if n % 2 else AAPL, n) for n in range(1, 11)]
    market = Market("XNAS.ITCH", records, {"AMZN": AMZN, "AAPL": AAPL})
    return HistoricalStandIn(DatabentoGateway(market, api_key=KEY, speed=0), api_key=KEY)


# --- the stand-in's parsing and answers -----------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_a_time_in_ns_reads_as_itself(ns):
    assert parse_time(str(ns)) == ns


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(min_value=0, max_value=999),
    st.sampled_from(["Z", "+00:00", "", "-05:00"]),
)
def test_an_iso_time_reads_to_the_nanosecond(moment, extra_ns, zone):
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}{extra_ns:03d}" + zone
    offset = timedelta(hours=-5) if zone == "-05:00" else timedelta(0)
    expected = moment.replace(tzinfo=UTC) - offset
    seconds = int((expected - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() // 1)
    assert parse_time(text) == seconds * 10**9 + moment.microsecond * 1000 + extra_ns


@given(st.dictionaries(st.sampled_from([*sorted(form()), "limit"]), st.text(max_size=30)))
def test_any_fields_are_a_request_or_a_422_never_a_crash(fields):
    try:
        request = parse_request(fields, "XNAS.ITCH")
    except Refusal as refusal:
        assert refusal.status == 422 and str(refusal)
    else:
        assert request.start < request.end and request.schema == "trades"


def test_the_stand_in_refuses_as_databento_does(stand_in):
    status, _, body = stand_in.answer("POST", GET_RANGE_PATH, "", b"")
    assert status == 401 and json.loads(body)["detail"]["case"] == "auth_authentication_failed"
    assert post(stand_in, form(), key="db-wrongWRONGwrong0123456789ABC")[0] == 401
    status, _, body = post(stand_in, form(dataset="GLBX.MDP3"))
    detail = json.loads(body)["detail"]
    assert (status, detail["case"], detail["status_code"]) == (422, "dataset_not_available", 422)
    assert stand_in.answer("GET", "/v0/metadata.list_datasets", basic(KEY), b"")[0] == 404
    stand_in.fail_next, stand_in.retry_after_seconds = [429, 503], 1.5
    status, headers, _ = post(stand_in, form())
    assert (status, headers["Retry-After"]) == (429, "1.5")
    assert post(stand_in, form())[0] == 503 and post(stand_in, form())[0] == 200
    assert all(KEY not in json.dumps(fields) for _, fields in stand_in.requests)


def test_a_get_with_the_fields_in_the_query_is_answered_too(stand_in):
    query = "&".join(f"{name}={value}" for name, value in form(compression="none", symbols="ALL_SYMBOLS").items())
    status, _, body = stand_in.answer("GET", f"{GET_RANGE_PATH}?{query}", basic(KEY), b"")
    assert status == 200
    trades = ReplyDecoder({"AMZN", "AAPL"}).feed(body, T0).trades
    assert {t.symbol for t in trades} == {"AMZN", "AAPL"} and len(trades) == 10
