"""Alert latency on the live path, at real pace: Polygon simulator → ``orderflow ingest`` → Redis →
``orderflow detect`` → Redis → a subscriber, as separate processes (the ingest and detector are the
real commands; the simulator speaks Polygon's protocol to the real ``polygon-api-client``).

Two kinds of symbol trade at the same time:

* **dense** (``--dense``, default 5): a quote every 10 ms and a small print every 20 ms; every 36 s three
  12,000-share sell prints at the bid, 1 s apart (an exit recommendation: the alert window is set to 30 s, so
  each triple is a new episode);
* **sparse** (``--sparse``, default 20): one event every 1.5–3 s. Each 6 s cycle: a quote, a 12,000-share
  sell print at the bid, a quote offering 15,000 shares at a new price, nothing for 3 s. The offer is
  reported by the detector's heartbeat once it has rested 2 s; with no heartbeat it would wait for the
  next quote, a second later.

Printed: p50 / p95 / p99 / max of the time from the triggering event's arrival at ingest (its
``ts_recv``; for an offer, the moment it had rested long enough, so an offer reported only by the next event
counts the wait for it) to the alert read from the alerts
stream and to the exit recommendation received on the channel, per kind of symbol; beside them the
floor measured in the same run: four Redis round trips (ingest's XADD, the detector's read, its
publish, the subscriber's read), p50 and p99 of PING.

    python -m bench.live_latency [--seconds 120] [--dense 5] [--sparse 20] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.stats import percentile
from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import Quote, Trade, decode
from services.tools.simulator import PolygonSimulator
from services.tools.simulator_timeline import polygon_event
from shared.config import OrderFlowConfig
from tests.support.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]
KEY = "latency-bench-key"
S, MS, CENT = 1_000_000_000, 1_000_000, 10_000_000
BID = 50_000_000_000
PERSISTENCE_SECONDS = OrderFlowConfig().book_persistence_seconds


def _quote(symbol: str, ts: int, bid: int, ask_size: int = 500) -> Quote:
    return Quote(
        symbol=symbol,
        ts_event=ts,
        ts_recv=ts,
        ts_arrival=ts,
        bid_price=bid,
        bid_size=500,
        ask_price=bid + CENT,
        ask_size=ask_size,
        bid_exchange=12,
        ask_exchange=12,
    )


def _trade(symbol: str, ts: int, price: int, size: int, number: int) -> Trade:
    return Trade(
        symbol=symbol,
        ts_event=ts,
        ts_recv=ts,
        ts_arrival=ts,
        price=price,
        size=size,
        trade_id=str(number),
        exchange=12,
        conditions=(),
    )


def timeline(seconds: int, dense: list[str], sparse: list[str]) -> list[tuple[int, dict]]:
    """``(market ns, Polygon dict)`` for every symbol, starting at 0 (the simulator re-stamps to now)."""
    events: list[Trade | Quote] = []
    number = 0
    for index, symbol in enumerate(dense):
        offset = index * 3 * MS
        for tick in range(0, seconds * 100):
            ts = tick * 10 * MS + offset
            events.append(_quote(symbol, ts, BID))
            if tick % 2:
                number += 1
                events.append(_trade(symbol, ts + MS, BID + CENT * (tick % 4 == 1), 100 + tick % 300, number))
            if tick % 3600 in (150, 250, 350):  # every 36 s, three large sellers 1 s apart: an exit
                number += 1
                events.append(_trade(symbol, ts + 2 * MS, BID, 12_000, number))
    for index, symbol in enumerate(sparse):
        offset = index * 250 * MS
        for cycle in range(seconds // 6):
            start, bid = cycle * 6 * S + offset, BID + cycle * CENT  # a new price each cycle: a new offer
            number += 1
            events += [
                _quote(symbol, start, bid),
                _trade(symbol, start + 1_500 * MS, bid, 12_000, number),
                _quote(symbol, start + 3 * S, bid, ask_size=15_000),
            ]
    lead = [
        (0, polygon_event(_quote("WARMUP", 0, BID)))
    ]  # the clock starts; the market opens 8 s later, once all listen
    return lead + sorted(((event.ts_event + 8 * S, polygon_event(event)) for event in events), key=lambda pair: pair[0])


async def redis_round_trip_ms(bus: Bus, count: int = 2_000) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter_ns()
        await bus.client.ping()
        times.append((time.perf_counter_ns() - started) / 1e6)
    return times


async def collect(
    bus: Bus, seconds: float, alerts: list[tuple[str, float, str]], exits: list[tuple[str, float]]
) -> None:
    """Read alerts (stream) and exits (channel) as they come, each on its own connection, with the latency
    from their ``ts_recv``."""
    deadline = time.monotonic() + seconds

    async def read_alerts() -> None:
        last_id = "$"
        while time.monotonic() < deadline:
            for _stream, entries in await bus.client.xread({bus.keys.alerts: last_id}, block=100) or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    alert = decode(next(iter(fields.values())))
                    late_ms = 0.0  # an offer: how long after it had rested long enough the event that reported it came
                    if alert.source == "book":
                        late_ms = (alert.evidence["rested_seconds"] - PERSISTENCE_SECONDS) * 1000
                    alerts.append((alert.symbol, (now_ns() - alert.ts_recv) / 1e6 + late_ms, alert.source))

    async def read_exits() -> None:
        pubsub = bus.client.pubsub()
        await pubsub.subscribe(bus.keys.exit_channel)
        try:
            while time.monotonic() < deadline:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    recommendation = decode(message["data"])
                    exits.append((recommendation.symbol, (now_ns() - recommendation.ts_recv) / 1e6))
        finally:
            await pubsub.aclose()

    await asyncio.gather(read_alerts(), read_exits())


def _line(label: str, values: list[float]) -> str:
    if not values:
        return f"{label:<34} none"
    return (
        f"{label:<34} n={len(values):>4}  p50 {percentile(values, 0.50):7.2f}  p95 {percentile(values, 0.95):7.2f}  "
        f"p99 {percentile(values, 0.99):7.2f}  max {max(values):7.2f} ms"
    )


async def run(arguments: argparse.Namespace) -> None:
    prefix = f"latency-{uuid.uuid4().hex[:8]}"
    dense = [f"DENSE{index}" for index in range(arguments.dense)]
    sparse = [f"SPARSE{index}" for index in range(arguments.sparse)]
    simulator = await PolygonSimulator(
        timeline(arguments.seconds, dense, sparse), api_key=KEY, loop_forever=False
    ).start()
    env = {
        **os.environ,
        "REDIS_URL": arguments.redis_url,
        "ORDER_FLOW_KEY_PREFIX": prefix,
        "POLYGON_API_KEY": KEY,
        "ORDER_FLOW_POLYGON_FEED": f"127.0.0.1:{simulator.port}",
        "ORDER_FLOW_POLYGON_SECURE": "false",
        "ORDER_FLOW_POLYGON_REST_URL": f"http://127.0.0.1:{simulator.port}",
        "ORDER_FLOW_THRESHOLD_MODE": "absolute",
        "ORDER_FLOW_ALERT_WINDOW_SECONDS": "30",
        "ORDER_FLOW_LOG_DIR": f"/tmp/{prefix}-logs",
        "ORDER_FLOW_LOG_LEVEL": "ERROR",
        "PYTHONPATH": str(REPO),
    }
    bus = await Bus.connect(arguments.redis_url, prefix=prefix)
    processes = []
    try:
        registry = PositionRegistry(bus)
        for symbol in dense + sparse:
            await registry.open(symbol, quantity=100, entry_price="50.05")
        for command in ("ingest", "detect"):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.cli", command],
                    cwd=REPO,
                    env={**env, "ORDER_FLOW_METRICS_PORT": str(free_port())},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        await asyncio.sleep(5)  # both start, connect and subscribe (the simulator's market opens at 8 s)
        floor = [4 * value for value in await redis_round_trip_ms(bus)]
        alerts: list[tuple[str, float, str]] = []
        exits: list[tuple[str, float]] = []
        await collect(bus, arguments.seconds + 5, alerts, exits)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        await simulator.stop()
        async for key in bus.client.scan_iter(match=f"{prefix}:*"):
            await bus.client.delete(key)
        await bus.close()

    print(
        f"live path at real pace, {arguments.seconds} s: {len(dense)} dense symbols (~150 events/s each), "
        f"{len(sparse)} sparse (1 event per 2 s)"
    )
    print(_line("floor: 4 Redis round trips", floor))
    for kind, symbols in (("dense", dense), ("sparse", sparse)):
        print(
            _line(
                f"{kind}: tape alert", [ms for symbol, ms, source in alerts if symbol in symbols and source == "tape"]
            )
        )
        print(
            _line(
                f"{kind}: book alert (heartbeat)",
                [ms for symbol, ms, source in alerts if symbol in symbols and source == "book"],
            )
        )
        print(_line(f"{kind}: exit on the channel", [ms for symbol, ms in exits if symbol in symbols]))
    print("goal: p99 <= 25 ms from the print's arrival")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--dense", type=int, default=5)
    parser.add_argument("--sparse", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
