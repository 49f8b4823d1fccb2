"""Bus integration tests on a real Redis server (and the embedded mode)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
import redis
import redis.asyncio

from orderflow_client import metrics
from orderflow_client.bus.connection import Bus
from orderflow_client.errors import BusUnavailableError, ConsumerGroupMissingError
from orderflow_client.wire import Trade, decode, encode
from tests.support.paths import REPO
from tests.support.redis_server import free_port

pytestmark = pytest.mark.redis


def make_trades(count: int, symbol: str = "AAPL", start: int = 0) -> list[Trade]:
    return [
        Trade(
            symbol=symbol,
            ts_event=1_700_000_000_000_000_000 + i,
            ts_recv=1_700_000_000_000_000_000 + i,
            ts_arrival=1_700_000_000_000_000_000 + i,
            price=187_430_000_000 + i,
            size=100,
            exchange=4,
            trade_id=str(i),
        )
        for i in range(start, start + count)
    ]


async def publish_all(bus: Bus, stream: str, trades: list[Trade], batch: int = 1000) -> None:
    for index in range(0, len(trades), batch):
        await bus.publish([(stream, trade) for trade in trades[index : index + batch]])


async def test_publish_read_ack_round_trip(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stream = bus.keys.market("AAPL")
        assert stream == f"{key_prefix}:md:{{AAPL}}"
        trades = make_trades(10)
        ids = await bus.publish([(stream, trade) for trade in trades])
        assert len(ids) == 10 and ids == sorted(ids)
        assert await bus.ensure_group(stream, "detector") is True
        assert await bus.ensure_group(stream, "detector") is False  # idempotent
        entries = await bus.read_group("detector", "c1", [stream], count=100, block_ms=100)
        assert [decode(entry.payload) for entry in entries] == trades
        assert [entry.entry_id.decode() for entry in entries] == ids
        assert await bus.pending_count(stream, "detector") == 10
        assert await bus.ack(stream, "detector", [entry.entry_id for entry in entries]) == 10
        assert await bus.pending_count(stream, "detector") == 0
        assert await bus.read_group("detector", "c1", [stream], block_ms=50) == []
        raw = await bus.client.xrange(stream, count=1)
        assert list(raw[0][1]) == [b"trade"]  # the field name tells the type in redis-cli


async def test_publish_keeps_order_across_interleaved_streams(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        a, b = bus.keys.market("AAA"), bus.keys.market("BBB")
        trades_a, trades_b = make_trades(6, "AAA"), make_trades(6, "BBB")
        mixed = [
            (a, trades_a[0]),
            (a, trades_a[1]),
            (b, trades_b[0]),
            (a, trades_a[2]),
            (b, trades_b[1]),
            (b, trades_b[2]),
        ]
        ids = await bus.publish(mixed)
        assert len(ids) == 6
        assert [decode(e.payload) for e in await bus.read_range(a)] == trades_a[:3]
        assert [decode(e.payload) for e in await bus.read_range(b)] == trades_b[:3]


async def test_streams_are_trimmed(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix, stream_max_length=1000) as bus:
        stream = bus.keys.market("AAPL")
        await publish_all(bus, stream, make_trades(10_000), batch=500)
        length = await bus.client.xlen(stream)
        assert 1000 <= length < 2000


CONSUMER_THAT_DIES = """
import asyncio, sys
from orderflow_client.bus.connection import Bus
from orderflow_client.wire import decode
async def main(url, prefix, stream):
    bus = await Bus.connect(url, prefix=prefix)
    entries = await bus.read_group("detector", "victim", [stream], count=5000, block_ms=2000)
    for entry in entries[:2500]:   # processes half of its batch, acks nothing
        await bus.client.sadd(prefix + ":processed", decode(entry.payload).trade_id)
    print(len(entries), flush=True)
    await asyncio.sleep(3600)
asyncio.run(main(*sys.argv[1:]))
"""


async def test_100k_events_with_a_killed_consumer_none_lost_none_twice(redis_url, key_prefix):
    total = 100_000
    async with await Bus.connect(redis_url, prefix=key_prefix, stream_max_length=1_000_000) as bus:
        stream = bus.keys.market("AAPL")
        await bus.ensure_group(stream, "detector")
        await publish_all(bus, stream, make_trades(total))
        assert await bus.client.xlen(stream) == total

        victim = subprocess.Popen(
            [sys.executable, "-c", CONSUMER_THAT_DIES, redis_url, key_prefix, stream],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        taken = int(victim.stdout.readline())
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        assert taken == 5000
        assert await bus.pending_count(stream, "detector") == 5000

        processed_key = f"{key_prefix}:processed"
        processed = skipped = 0

        async def handle(entries):
            nonlocal processed, skipped
            for entry in entries:
                trade = decode(entry.payload)
                # deduplicate: a redelivered event that was already processed is skipped
                if await bus.client.sadd(processed_key, trade.trade_id):
                    processed += 1
                else:
                    skipped += 1
            await bus.ack(stream, "detector", [entry.entry_id for entry in entries])

        while entries := await bus.read_group("detector", "survivor", [stream], count=2000, block_ms=100):
            await handle(entries)
        reclaimed, deleted = await bus.reclaim(stream, "detector", "survivor", min_idle_ms=0)
        assert len(reclaimed) == 5000 and deleted == []
        await handle(reclaimed)

        assert processed + 2500 == total  # the victim processed 2500 before it died
        assert skipped == 2500  # its processed-but-unacked entries were not processed twice
        assert await bus.client.scard(processed_key) == total
        assert await bus.pending_count(stream, "detector") == 0


async def test_reclaim_reports_entries_trimmed_while_pending(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stream = bus.keys.market("AAPL")
        await bus.ensure_group(stream, "detector")
        await publish_all(bus, stream, make_trades(10))
        await bus.read_group("detector", "gone", [stream], count=10, block_ms=100)
        await bus.client.xtrim(stream, maxlen=4, approximate=False)
        reclaimed, deleted = await bus.reclaim(stream, "detector", "survivor", min_idle_ms=0)
        assert len(reclaimed) == 4
        assert len(deleted) == 6


async def test_deleted_group_gives_a_typed_error(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stream = bus.keys.market("AAPL")
        await bus.ensure_group(stream, "detector")
        await bus.client.xgroup_destroy(stream, "detector")
        with pytest.raises(ConsumerGroupMissingError):
            await bus.read_group("detector", "c1", [stream], block_ms=10)


async def test_group_lag_counts_undelivered_entries(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stream = bus.keys.market("AAPL")
        await bus.ensure_group(stream, "detector")
        await publish_all(bus, stream, make_trades(30))
        await bus.read_group("detector", "c1", [stream], count=10, block_ms=10)
        assert await bus.group_lag(stream, "detector") == 20


async def test_channel_publish_reaches_a_subscriber(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        pubsub = bus.client.pubsub()
        await pubsub.subscribe(bus.keys.exit_channel)
        await pubsub.get_message(timeout=1)  # subscribe confirmation
        trade = make_trades(1)[0]
        assert await bus.publish_channel(bus.keys.exit_channel, trade) == 1
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert decode(message["data"]) == trade
        await pubsub.aclose()


async def test_unreachable_redis_retries_with_backoff_then_raises_typed_error():
    url = f"redis://:topsecretpw@127.0.0.1:{free_port()}/0"
    retries_before = metrics.BUS_RETRIES._value.get()
    started = time.monotonic()
    with pytest.raises(BusUnavailableError) as raised:
        await Bus.connect(url, retries=3, backoff_base_seconds=0.05, backoff_cap_seconds=0.2)
    assert time.monotonic() - started < 5
    assert metrics.BUS_RETRIES._value.get() - retries_before == 3
    assert "topsecretpw" not in str(raised.value)
    assert "unavailable during ping" in str(raised.value)


async def test_redis_restart_loses_nothing(private_redis):
    bus = await Bus.connect(private_redis.url, retries=2, backoff_base_seconds=0.01, backoff_cap_seconds=0.05)
    stream = bus.keys.market("AAPL")
    first, second = make_trades(100), make_trades(100, start=100)
    await bus.publish([(stream, trade) for trade in first])
    private_redis.stop()
    batch = [(stream, trade) for trade in second]
    with pytest.raises(BusUnavailableError) as raised:
        await bus.publish(batch)
    unpublished = raised.value.unpublished
    assert [(s, payload) for s, _tag, payload in unpublished] == [(s, encode(t)) for s, t in batch]
    private_redis.start()  # same port, empty (no persistence): publish again what was kept
    await bus.publish_encoded(unpublished)
    assert [decode(e.payload) for e in await bus.read_range(stream)] == second
    await bus.close()


async def test_closing_during_an_outage_is_logged_not_raised(private_redis, monkeypatch, capsys):
    """A stop during an outage closes the bus while Redis is away: closing loses nothing, so an error there is
    logged (``order_flow.bus_close_failed``) and the stop stays clean (a raise here was an unlogged exit 1)."""
    bus = await Bus.connect(private_redis.url, retries=1, backoff_base_seconds=0.01, backoff_cap_seconds=0.05)
    private_redis.stop()
    closing = bus.client.aclose

    async def failing_close() -> None:
        await closing()
        raise redis.exceptions.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(bus.client, "aclose", failing_close)
    await bus.close()  # does not raise
    captured = capsys.readouterr()
    assert "order_flow.bus_close_failed" in captured.out + captured.err


async def test_embedded_mode_is_shared_in_process():
    producer = await Bus.connect(None, prefix="embedded-test")
    consumer = await Bus.connect(None, prefix="embedded-test")
    assert producer.embedded and "embedded" in producer.description
    stream = producer.keys.market("MSFT")
    await consumer.ensure_group(stream, "detector")
    trades = make_trades(50, "MSFT")
    await producer.publish([(stream, trade) for trade in trades])
    entries = await consumer.read_group("detector", "c1", [stream], count=100, block_ms=100)
    assert [decode(entry.payload) for entry in entries] == trades
    assert await consumer.ack(stream, "detector", [entry.entry_id for entry in entries]) == 50
    reclaimed, _ = await consumer.reclaim(stream, "detector", "c2", min_idle_ms=0)
    assert reclaimed == []
    await producer.client.delete(stream)
    await producer.close()
    await consumer.close()


async def test_password_and_acl_user_from_the_url(tmp_path):
    from tests.support.redis_server import RedisProcess, redis_server_binary

    server = RedisProcess(port=free_port(), binary=redis_server_binary())
    server.process = None
    import subprocess as sp

    process = sp.Popen(
        [
            server.binary,
            "--port",
            str(server.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "s3cret-pw",
            "--user",
            "bot",
            "on",
            ">bot-pw",
            "~*",
            "&*",
            "+@all",
        ],
        stdout=sp.DEVNULL,
        stderr=sp.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                bus = await Bus.connect(f"redis://:s3cret-pw@127.0.0.1:{server.port}/0", retries=0)
                break
            except BusUnavailableError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert await bus.publish([(bus.keys.market("X"), make_trades(1, "X")[0])])
        assert "s3cret-pw" not in bus.description and bus.description.endswith(f"127.0.0.1:{server.port}/0")
        await bus.close()
        acl = await Bus.connect(f"redis://bot:bot-pw@127.0.0.1:{server.port}/0", retries=0)
        assert await acl.client.xlen(acl.keys.market("X")) == 1
        await acl.close()
        with pytest.raises(Exception, match=r"(?i)auth|password|WRONGPASS"):
            await Bus.connect(f"redis://bot:wrong@127.0.0.1:{server.port}/0", retries=0)
    finally:
        process.kill()
        process.wait()


async def test_tls_with_rediss_url(tmp_path):
    """rediss:// against a real TLS redis-server, certificate checked against the given CA."""
    import shutil
    import subprocess as sp

    from orderflow_client.bus.connection import HiredisSSLConnection
    from tests.support.redis_server import redis_server_binary

    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test certificate"
    sp.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(tmp_path / "cert.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    process = sp.Popen(
        [
            redis_server_binary(),
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-cert-file",
            str(tmp_path / "cert.pem"),
            "--tls-key-file",
            str(tmp_path / "key.pem"),
            "--tls-ca-cert-file",
            str(tmp_path / "cert.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "tls-pw",
        ],
        stdout=sp.DEVNULL,
        stderr=sp.DEVNULL,
    )
    url = f"rediss://:tls-pw@127.0.0.1:{port}/0?ssl_ca_certs={tmp_path / 'cert.pem'}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                bus = await Bus.connect(url, retries=0)
                break
            except BusUnavailableError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert bus.client.connection_pool.connection_class is HiredisSSLConnection
        await bus.publish([(bus.keys.market("TLS"), make_trades(1, "TLS")[0])])
        assert [decode(e.payload).symbol for e in await bus.read_range(bus.keys.market("TLS"))] == ["TLS"]
        assert "tls-pw" not in bus.description
        await bus.close()
        with pytest.raises(BusUnavailableError):  # plain TCP to a TLS port
            await Bus.connect(f"redis://:tls-pw@127.0.0.1:{port}/0", retries=0, socket_timeout_seconds=1.0)
        with pytest.raises(BusUnavailableError):  # a certificate nobody vouched for
            await Bus.connect(f"rediss://:tls-pw@127.0.0.1:{port}/0", retries=0)
    finally:
        process.kill()
        process.wait()


class _Proxy:
    """A TCP proxy to Redis for fault tests: bytes pass both ways; a subclass's :meth:`before` sees each chunk the
    client sends before Redis gets it."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.armed = False

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()

    async def before(self, data: bytes) -> None:
        """Called with each chunk from the client, before it is forwarded."""

    async def after(self, data: bytes, client_writer, server_writer) -> bool:
        """Called once a chunk was forwarded; False ends this connection."""
        return True

    def swallowing(self) -> bool:
        """True while Redis's replies must not reach the client."""
        return False

    async def _connection(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)

        async def upstream() -> None:
            while data := await client_reader.read(65536):
                await self.before(data)
                server_writer.write(data)
                await server_writer.drain()
                if not await self.after(data, client_writer, server_writer):
                    return

        async def downstream() -> None:
            while data := await server_reader.read(65536):
                if self.swallowing() or client_writer.transport.is_closing():
                    continue
                client_writer.write(data)
                await client_writer.drain()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)


class _ReplyCutter(_Proxy):
    """Once armed, forwards the next ``XREADGROUP … >`` and then cuts the connection before its reply reaches the
    client: Redis has delivered the entries (pending for the consumer), the client never saw them and retries."""

    def __init__(self, redis_port: int) -> None:
        super().__init__(redis_port)
        self.cut = 0
        self._cutting = False

    async def before(self, data: bytes) -> None:
        if self.armed and b"XREADGROUP" in data and b"\r\n>\r\n" in data:
            self.armed = False
            self._cutting = True  # its reply never reaches the client

    def swallowing(self) -> bool:
        return self._cutting

    async def after(self, data: bytes, client_writer, server_writer) -> bool:
        if not self._cutting or self.cut:
            return True
        self.cut += 1
        await asyncio.sleep(0.2)  # Redis answers (and marks the entries delivered) meanwhile
        client_writer.transport.abort()
        server_writer.transport.abort()
        self._cutting = False  # the client's next connection gets its replies
        return False


@pytest.mark.redis
async def test_a_read_whose_reply_was_lost_hands_over_its_entries_at_once_and_in_order(redis_url, key_prefix):
    """The soak found it: a reply cut off on the way (a timeout after the detector was stopped for 5 s, a dropped
    connection) left its entries pending, unseen, while the retried read went on with newer ones; 30 s later a
    reclaim handed the old ones over out of order and the symbol was halted (alerts lost). Now the next read
    returns the consumer's pending entries first, oldest first."""
    from urllib.parse import urlparse

    port = urlparse(redis_url).port or 6379
    cutter = _ReplyCutter(port)
    proxy_port = await cutter.start()
    direct = await Bus.connect(redis_url, prefix=key_prefix)
    bus = await Bus.connect(
        f"redis://127.0.0.1:{proxy_port}/{urlparse(redis_url).path.lstrip('/') or 0}",
        prefix=key_prefix,
        retries=3,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.05,
    )
    try:
        stream = f"{key_prefix}:md:{{CUT}}"
        await direct.ensure_group(stream, "g", "0")
        first = await publish_all_ids(direct, stream, make_trades(3, "CUT"))
        cutter.armed = True
        entries = await bus.read_group("g", "c", [stream], count=100, block_ms=None)
        assert cutter.cut == 1
        assert [entry.entry_id for entry in entries] == first  # not [] (left for a reclaim), and in order
        await bus.ack(stream, "g", [entry.entry_id for entry in entries])
        later = await publish_all_ids(direct, stream, make_trades(2, "CUT", start=10))
        assert [entry.entry_id for entry in await bus.read_group("g", "c", [stream], block_ms=None)] == later
        assert await direct.pending_count(stream, "g") == 2
    finally:
        await bus.close()
        await direct.close()
        await cutter.stop()


async def publish_all_ids(bus: Bus, stream: str, trades: list[Trade]) -> list[bytes]:
    return [entry_id.encode() for entry_id in await bus.publish([(stream, trade) for trade in trades])]


class _ScriptFlusher(_Proxy):
    """Once armed, empties Redis's script cache just before forwarding the next EVALSHA: what a Redis restarted
    between the pipeline's script check and its execution looks like to the client."""

    async def before(self, data: bytes) -> None:
        if self.armed and b"EVALSHA" in data:
            self.armed = False
            flusher = redis.asyncio.Redis(port=self.redis_port)
            await flusher.script_flush()
            await flusher.aclose()


@pytest.mark.redis
async def test_a_publish_whose_script_vanished_loads_it_again():
    """The soak found it: Redis restarted while a publish pipeline was being retried; the retry ran EVALSHA on a Redis
    whose script cache was empty (the pipeline checks its scripts only before the first try) and NoScriptError
    killed ingest's publisher. Now the pipeline is sent again, which loads the script."""
    from tests.support.redis_server import RedisProcess, redis_server_binary

    server = RedisProcess(port=free_port(), binary=redis_server_binary()).start()
    flusher = _ScriptFlusher(server.port)
    proxy_port = await flusher.start()
    bus = await Bus.connect(f"redis://127.0.0.1:{proxy_port}/0", prefix="noscript")
    try:
        stream = bus.keys.market("NS")
        await publish_all(bus, stream, make_trades(5, "NS"))  # the script is loaded and its sha remembered
        flusher.armed = True
        ids = await bus.publish([(stream, trade) for trade in make_trades(3, "NS", start=5)])
        assert not flusher.armed and len(ids) == 3 and await bus.client.xlen(stream) == 8
    finally:
        await bus.close()
        await flusher.stop()
        server.stop()
