"""The local Databento gateway through the real ``databento.Live`` client (0.88), pointed at it with its own
``gateway=``/``port=`` arguments: authentication, subscriptions, pacing, heartbeats, dropped connections and malformed
records as the client sees them; malformed control lines on a raw socket; and ``orderflow simulate-databento``.

The gateway runs on its own event loop in a thread (the client blocks the test's thread and runs its own loop).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import threading
import time
from collections.abc import Iterator

import databento as db
import databento_dbn as dbn
import pytest
from databento.common import cram
from databento.common.error import BentoError

from services.ingest.databento_history import DatabentoHistorical, HistoricalError
from services.tools.databento_gateway import DatabentoGateway
from services.tools.databento_gateway_market import Market, instrument_id_of, load_market
from tests.support.cli import orderflow_environment, run_orderflow, start_orderflow
from tests.support.paths import shared_data
from tests.support.redis_server import free_port
from tests.support.waiting import wait_for

KEY = "db-EXAMPLEexample0123456789ABCDE"
AMZN, AAPL = instrument_id_of("AMZN"), instrument_id_of("AAPL")


class RunningGateway:
    """A gateway serving on a free loopback port from its own thread."""

    def __init__(self, market: Market, speed: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.gateway = self.run(DatabentoGateway(market, api_key=KEY, speed=speed).start())

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def client(self, **options) -> db.Live:
        return db.Live(key=options.pop("key", KEY), gateway="127.0.0.1", port=self.gateway.port, **options)

    def stop(self) -> None:
        self.run(self.gateway.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def market() -> Market:
    """AMZN's and AAPL's level-1 sample days as trades and MBP-10 (made once for the module)."""
    days = [shared_data("lobster", f"LOBSTER_SampleFile_{symbol}_2012-06-21_1.zip") for symbol in ("AMZN", "AAPL")]
    return load_market(days, lobster_schemas=frozenset({"trades", "mbp-10"}))


@pytest.fixture
def fastest(market) -> Iterator[RunningGateway]:
    running = RunningGateway(market, speed=0)
    yield running
    running.stop()


def collect(client: db.Live) -> list:
    records: list = []
    client.add_callback(records.append)
    return records


def of_type(records: list, kind: type) -> list:
    return [record for record in records if isinstance(record, kind)]


def original_trades(market: Market, instrument_id: int) -> list:
    return [r.record for r in market.records if r.schema == "trades" and r.instrument_id == instrument_id]


def test_the_client_authenticates_and_receives_only_the_subscribed_symbol(fastest, market):
    client = fastest.client()
    records = collect(client)
    client.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
    client.start()
    expected = original_trades(market, AMZN)
    wait_for(lambda: len(of_type(records, dbn.TradeMsg)) == len(expected), 30, "every AMZN trade")
    metadata = client.metadata
    client.terminate()
    assert (metadata.dataset, metadata.schema, metadata.stype_in, metadata.version) == ("XNAS.ITCH", None, None, 3)
    mapping, acknowledgement = records[:2]
    assert isinstance(mapping, dbn.SymbolMappingMsg)
    assert (mapping.instrument_id, mapping.stype_in_symbol, mapping.stype_out_symbol) == (AMZN, "AMZN", "AMZN")
    assert client.symbology_map[AMZN] == "AMZN"
    assert acknowledgement.code == dbn.SystemCode.SUBSCRIPTION_ACK
    trades = of_type(records, dbn.TradeMsg)
    assert {trade.instrument_id for trade in trades} == {AMZN}
    assert [(t.sequence, t.price, t.size, str(t.side)) for t in trades] == [
        (t.sequence, t.price, t.size, str(t.side)) for t in expected
    ]
    assert abs(trades[0].ts_recv - time.time_ns()) < 60 * 10**9  # sent as fresh data


def test_a_wrong_key_is_refused_with_the_gateways_message(fastest):
    wrong = fastest.client(key="db-WRONGwrongwrong0123456789ABCDE")
    with pytest.raises(BentoError, match=r"^Authentication failed\.$"):
        wrong.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
    right = fastest.client()
    records = collect(right)
    right.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
    right.start()
    wait_for(lambda: of_type(records, dbn.TradeMsg), 20, "trades after a refused client")
    right.terminate()


def test_an_unknown_dataset_is_refused_at_authentication(fastest):
    with pytest.raises(BentoError, match=r"dataset GLBX\.MDP3 is not served here"):
        fastest.client().subscribe(dataset="GLBX.MDP3", schema="trades", symbols=["ESZ6"])


def test_two_symbols_and_two_schemas_on_one_session(fastest, market):
    client = fastest.client()
    records = collect(client)
    client.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN", "AAPL", "MSFT"])
    client.subscribe(dataset="XNAS.ITCH", schema="mbp-10", symbols=["AAPL"])
    client.start()
    books = [r.record for r in market.records if r.schema == "mbp-10" and r.instrument_id == AAPL]
    wait_for(lambda: len(of_type(records, dbn.MBP10Msg)) == len(books), 60, "every AAPL MBP-10 record")
    all_trades = sum(1 for r in market.records if r.schema == "trades")
    wait_for(lambda: len(of_type(records, dbn.TradeMsg)) == all_trades, 30, "every trade of both")
    client.terminate()
    mappings = {(r.stype_in_symbol, r.instrument_id) for r in of_type(records, dbn.SymbolMappingMsg)}
    assert mappings == {("AMZN", AMZN), ("AAPL", AAPL)}
    (unresolved,) = of_type(records, dbn.ErrorMsg)
    assert unresolved.code == dbn.ErrorCode.SYMBOL_RESOLUTION_FAILED and "MSFT" in unresolved.err
    acknowledgements = [r.msg for r in of_type(records, dbn.SystemMsg) if r.code == dbn.SystemCode.SUBSCRIPTION_ACK]
    assert acknowledgements == [
        "Subscription request 0 for trades data succeeded",
        "Subscription request 1 for mbp-10 data succeeded",
    ]
    assert {r.instrument_id for r in of_type(records, dbn.MBP10Msg)} == {AAPL}
    for instrument_id in (AMZN, AAPL):
        sequences = [t.sequence for t in of_type(records, dbn.TradeMsg) if t.instrument_id == instrument_id]
        assert sequences == [t.sequence for t in original_trades(market, instrument_id)]


@pytest.mark.parametrize("kind", ["reset", "error"])
def test_a_dropped_connection_is_reconnected_by_the_clients_policy(fastest, kind):
    fastest.gateway.drop_after(200, kind=kind)
    client = fastest.client(reconnect_policy="reconnect")
    records = collect(client)
    gaps: list = []
    client.add_reconnect_callback(lambda start, end: gaps.append((start, end)))
    client.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
    client.start()
    wait_for(lambda: gaps and len(of_type(records, dbn.TradeMsg)) > 1000, 30, "a reconnect, then trades")
    client.terminate()
    assert len(gaps) == 1 and gaps[0][0] <= gaps[0][1]
    first, second = (index for index, r in enumerate(records) if isinstance(r, dbn.SymbolMappingMsg))
    assert 0 < len(of_type(records[first:second], dbn.TradeMsg)) <= 200  # RST may discard what was still in flight
    assert len(of_type(records[first:second], dbn.ErrorMsg)) == (kind == "error")
    assert of_type(records[second:], dbn.TradeMsg)[0].sequence == 1  # at speed 0 a session starts at the files' start


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [("reset", "Connection reset by peer"), ("error", "Gateway fault injected: closing"), ("close", None)],
)
def test_a_dropped_connection_without_a_policy_ends_the_session(fastest, kind, outcome):
    fastest.gateway.drop_after(50, kind=kind)
    client = fastest.client()
    records = collect(client)
    client.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
    client.start()
    if outcome is None:
        client.block_for_close(timeout=20)  # a clean close: no error
    else:
        with pytest.raises(BentoError, match=outcome):
            client.block_for_close(timeout=20)
    assert not client.is_connected()
    assert len(of_type(records, dbn.TradeMsg)) <= 50


def test_heartbeats_arrive_while_nothing_else_does(fastest):
    fastest.gateway.paused = True
    client = fastest.client(heartbeat_interval_s=5)
    records = collect(client)
    client.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
    started = time.monotonic()
    client.start()
    wait_for(lambda: any(isinstance(r, dbn.SystemMsg) and r.is_heartbeat() for r in records), 12, "a heartbeat")
    waited = time.monotonic() - started
    client.terminate()
    assert 4.5 <= waited <= 10, waited  # due 5 s after the acknowledgement
    assert not of_type(records, dbn.TradeMsg)


def test_malformed_records_as_the_client_receives_them(fastest):
    fastest.gateway.inject_after(20, kind="bad_side")
    client = fastest.client()
    records = collect(client)
    client.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
    client.start()
    wait_for(lambda: len(of_type(records, dbn.TradeMsg)) > 100, 20, "trades past the malformed one")
    client.terminate()
    trades = of_type(records, dbn.TradeMsg)
    assert [index for index, trade in enumerate(trades) if str(trade.side) not in "ABN"] == [20]
    # A record the client cannot decode: the official client closes the connection as if the gateway had, losing
    # the records read with it, and does not reconnect even with its reconnect policy (a consumer must notice).
    fastest.gateway.inject_after(20, kind="unknown_record_type")
    broken = fastest.client(reconnect_policy="reconnect")
    received = collect(broken)
    broken.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
    broken.start()
    broken.block_for_close(timeout=20)
    assert len(of_type(received, dbn.TradeMsg)) < 20


def test_ts_out_is_the_send_time(fastest):
    client = fastest.client(ts_out=True)
    records = collect(client)
    client.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AAPL"])
    client.start()
    wait_for(lambda: len(of_type(records, dbn.TradeMsg)) > 100, 20, "trades")
    client.terminate()
    assert all(0 <= trade.ts_out - trade.ts_recv < 10**9 for trade in of_type(records, dbn.TradeMsg))


def test_paced_replay_keeps_the_markets_spacing_and_joins_where_it_is(market):
    speed = 500
    running = RunningGateway(market, speed=speed)
    try:
        first, later = running.client(), running.client()
        early, late = collect(first), collect(later)
        first.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
        first.start()
        time.sleep(1.0)
        later.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
        later.start()
        wait_for(lambda: len(of_type(late, dbn.TradeMsg)) > 50, 30, "paced trades")
        received_at = time.time_ns()
        first.terminate()
        later.terminate()
    finally:
        running.stop()
    recorded = {  # the times recorded (the gateway rewrites the records' own as it sends them)
        r.record.sequence: r.ts_recv for r in market.records if r.schema == "trades" and r.instrument_id == AMZN
    }
    trades = of_type(early, dbn.TradeMsg)
    assert len(trades) > 100
    for before, after in itertools.pairwise(trades):
        market_spacing = recorded[after.sequence] - recorded[before.sequence]
        assert abs((after.ts_recv - before.ts_recv) * speed - market_spacing) <= 2 * speed
    assert abs(trades[-1].ts_recv - received_at) < 3 * 10**9
    assert of_type(late, dbn.TradeMsg)[0].sequence > trades[0].sequence  # joined the market later on


def read_line(stream) -> bytes:
    return stream.readline(70_000)


def authenticated(port: int) -> tuple[socket.socket, object]:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    stream = connection.makefile("rwb")
    read_line(stream)
    challenge = read_line(stream).decode().strip().removeprefix("cram=")
    stream.write(f"auth={cram.get_challenge_response(challenge, KEY)}|dataset=XNAS.ITCH|encoding=dbn\n".encode())
    stream.flush()
    assert read_line(stream).startswith(b"success=1|session_id=")
    return connection, stream


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"\xff\xfe|||\n", b"success=0|error=line is not ASCII text\n"),
        (b"schema=trades|stype_in=raw_symbol|symbols=AMZN\n", b"success=0|error=the first request must be an "),
        (b"auth=" + b"0" * 64 + b"-ABCDE|dataset=XNAS.ITCH\n", b"success=0|error=Authentication failed.\n"),
        (b"auth=x|" * 20_000 + b"\n", b"success=0|error=line longer than 65,536 bytes\n"),
    ],
)
def test_a_malformed_line_before_authentication_is_answered_and_closed(fastest, line, reply):
    with socket.create_connection(("127.0.0.1", fastest.gateway.port), timeout=10) as connection:
        stream = connection.makefile("rwb")
        assert read_line(stream) == b"lsg_version=0.1.0-orderflow\n"
        assert read_line(stream).startswith(b"cram=")
        stream.write(line)
        stream.flush()
        assert read_line(stream).startswith(reply)
        assert stream.read() == b""  # closed


def test_malformed_lines_after_authentication_end_only_their_session(fastest):
    connection, stream = authenticated(fastest.gateway.port)
    with connection:
        stream.write(b"schema=trades|stype_in=raw_symbol|symbols=AMZN|colour=red\n")
        stream.flush()
        assert stream.read() == b""  # not streaming yet: closed without a word (the client already reads DBN)
    connection, stream = authenticated(fastest.gateway.port)
    with connection:
        stream.write(b"start_session=0\n")
        stream.flush()
        stream.write(b"schema=mbp-11|stype_in=raw_symbol|symbols=AMZN\n")
        stream.flush()
        decoded = dbn.DBNDecoder().write_and_decode(stream.read())
    assert isinstance(decoded[0], dbn.Metadata) and decoded[0].dataset == "XNAS.ITCH"
    (error,) = of_type(decoded, dbn.ErrorMsg)
    assert error.err == "schema 'mbp-11' is not a Databento schema"
    client = fastest.client()
    records = collect(client)
    client.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
    client.start()
    wait_for(lambda: of_type(records, dbn.TradeMsg), 20, "trades for the next client")
    client.terminate()


def test_the_command_serves_the_client_and_never_shows_the_key(tmp_path):
    day = shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip")
    key_file = tmp_path / "databento.key"
    key_file.write_text(KEY + "\n")
    port, history_port = free_port(), free_port()
    environment = orderflow_environment()
    arguments = ("simulate-databento", "--port", str(port), "--key-file", str(key_file), "--speed", "0")
    history = ("--history-port", str(history_port))
    gateway = start_orderflow(*arguments, *history, "--schema", "trades", str(day), env=environment)
    try:
        wait_for(lambda: "simulating Databento's historical API" in gateway.output()[0], 60, "the gateway listening")
        # the historical stand-in beside it takes the same key, and only it
        url = f"http://127.0.0.1:{history_port}"
        assert list(DatabentoHistorical(KEY, url).trades(["AMZN"], 0, 10**9)) == []  # served: nothing played in 1970
        with pytest.raises(HistoricalError) as refused:
            list(DatabentoHistorical("db-WRONGwrongWRONGwrong12345", url, attempts=1).trades(["AMZN"], 0, 10**9))
        assert refused.value.status == 401
        client = db.Live(key=KEY, gateway="127.0.0.1", port=port)
        records = collect(client)
        client.subscribe(dataset="XNAS.ITCH", schema="trades", symbols=["AMZN"])
        client.start()
        wait_for(lambda: len(of_type(records, dbn.TradeMsg)) > 1000, 30, "trades from the command")
        client.terminate()
        gateway.send_signal(signal.SIGTERM)
        gateway.expect_exit(0, timeout=20)
    finally:
        gateway.stop_if_running()
    stdout, stderr = gateway.output()
    assert f"on 127.0.0.1:{port}: 11,419 records of AMZN (trades) as fast as possible" in stdout
    assert f"ORDER_FLOW_DATABENTO_HISTORICAL_URL=http://127.0.0.1:{history_port}" in stdout
    assert "databento_gateway_authenticated session_id=1" in stderr  # its log, on the console
    assert KEY not in stdout + stderr


def test_the_command_refuses_a_missing_or_unusable_key(tmp_path):
    day = shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip")
    environment = orderflow_environment(ORDER_FLOW_LOG_DIR=str(tmp_path / "logs"))
    missing = run_orderflow("simulate-databento", str(day), env=environment)
    assert missing.returncode == 2 and "--key-file" in missing.stderr
    blank = tmp_path / "blank.key"
    blank.write_text("   \n")
    unusable = run_orderflow("simulate-databento", "--key-file", str(blank), str(day), env=environment)
    assert unusable.returncode == 2
    assert "must hold one key of 5 or more characters without blanks" in unusable.stderr
    assert run_orderflow("simulate-databento", "--help", env=environment).returncode == 0
