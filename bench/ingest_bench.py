"""Live ingest benchmark: simulator → polygon-api-client → ingest → Redis.

The simulator runs in its own process; ingest (the real WebSocketClient,
parsing, dedup, classification, publishing) in this one, into a real Redis.

1. Throughput: the simulator sends as fast as it can; events published per
   second of wall time, beside a bare WebSocket client's receive rate from the
   same simulator (the ceiling).
2. Latency at 10,000 events/s: socket receive (``ts_recv``) → on the stream
   (XADD acknowledged), per event: p50/p95/p99.

    python -m bench.ingest_bench [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
import uuid

import msgspec
import websockets

from bench.stats import percentile
from orderflow_client.bus.connection import Bus
from orderflow_client.logs import configure_logging
from orderflow_client.positions import PositionRegistry
from services.ingest.polygon_ws import parse_frame
from services.ingest.service import IngestService
from services.tools.scenarios import frames
from services.tools.simulator import PolygonSimulator
from services.tools.simulator_timeline import polygon_event
from shared.config import OrderFlowConfig

KEY = "bench-key"
configure_logging(service="bench", log_dir=None, level="ERROR", console=False)


def timeline(symbols: list[str]) -> list[tuple[int, dict]]:
    events = []
    for symbol in symbols:
        for ts_recv, frame in frames("quiet", 7, symbol):
            events.extend((event.ts_event, polygon_event(event)) for event in parse_frame(frame, ts_recv).events)
    return sorted(events, key=lambda pair: pair[0])


def _simulate(symbols: list[str], speed: float, port_out, max_frame_events: int) -> None:
    async def main() -> None:
        simulator = await PolygonSimulator(
            timeline(symbols), api_key=KEY, speed=speed, max_frame_events=max_frame_events
        ).start()
        port_out.put(simulator.port)
        await asyncio.Event().wait()

    asyncio.run(main())


def start_simulator(symbols: list[str], speed: float, max_frame_events: int) -> tuple[multiprocessing.Process, int]:
    # spawn, not fork: a fork of this (large) process would make every page ingest writes a
    # copy-on-write fault, stalls a real deployment (separate processes) never has
    context = multiprocessing.get_context("spawn")
    port_out = context.Queue()
    simulator = context.Process(target=_simulate, args=(symbols, speed, port_out, max_frame_events), daemon=True)
    simulator.start()
    return simulator, port_out.get(timeout=120)  # type: ignore[return-value]


async def bare_receive(symbols: list[str], seconds: float) -> float:
    """The ceiling of any ingest: a bare WebSocket client (the ``websockets`` library polygon-api-client uses)
    receiving the same simulator's frames and decoding them with msgspec, nothing else; events/s."""
    simulator, port = start_simulator(symbols, 1e6, 500)
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/stocks", max_size=None) as socket:
            await socket.recv()
            await socket.send(msgspec.json.encode({"action": "auth", "params": KEY}))
            await socket.recv()
            topics = ",".join(f"{kind}.{symbol}" for symbol in symbols for kind in ("T", "Q"))
            await socket.send(msgspec.json.encode({"action": "subscribe", "params": topics}))
            events = 0
            started = None
            while True:
                frame = msgspec.json.decode(await socket.recv())
                if frame and frame[0].get("ev") == "status":
                    continue
                if started is None:
                    started = time.perf_counter()
                events += len(frame)
                if time.perf_counter() - started >= seconds:
                    return events / (time.perf_counter() - started)
    finally:
        simulator.terminate()


async def run(
    url: str, symbols: list[str], speed: float, seconds: float, max_frame_events: int
) -> tuple[int, float, list[float]]:
    simulator, port = start_simulator(symbols, speed, max_frame_events)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    config = OrderFlowConfig(
        key_prefix=prefix,
        polygon_feed=f"127.0.0.1:{port}",
        polygon_secure=False,
        polygon_rest_url=f"http://127.0.0.1:{port}",
        stream_max_length=5_000_000,
    )
    bus = await Bus.connect(url, prefix=prefix, stream_max_length=5_000_000)
    registry = PositionRegistry(bus)
    for symbol in symbols:
        await registry.open(symbol, quantity=1, entry_price="50")
    latencies: list[float] = []
    service = IngestService(config, bus, api_key=KEY, latency_sink=latencies)
    stop = asyncio.Event()
    task = asyncio.ensure_future(service.run(stop))
    try:
        deadline = time.monotonic() + 60
        while service.stats.events == 0:
            if time.monotonic() > deadline or task.done():
                raise RuntimeError("ingest published nothing within 60 s")
            await asyncio.sleep(0.01)
        start_events, started = service.stats.events, time.perf_counter()
        latencies.clear()
        await asyncio.sleep(seconds)
        events, elapsed = service.stats.events - start_events, time.perf_counter() - started
        stop.set()
        await asyncio.wait_for(task, 20)
        return events, elapsed, list(latencies)
    finally:
        simulator.terminate()
        async for key in bus.client.scan_iter(match=f"{prefix}:*"):
            await bus.client.delete(key)
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seconds", type=float, default=8.0)
    arguments = parser.parse_args()
    symbols = [f"S{index:02d}" for index in range(20)]

    events, elapsed, _ = asyncio.run(run(arguments.redis_url, symbols, 1e6, arguments.seconds, 500))
    ceiling = asyncio.run(bare_receive(symbols, arguments.seconds))
    print(
        f"throughput: {events:,} events in {elapsed:.1f} s = "
        f"{events / elapsed:,.0f} events/s through ingest into Redis   target >= 150,000; "
        f"ceiling, a bare WebSocket client decoding the same frames: {ceiling:,.0f} events/s"
    )

    market_rate = len(timeline(symbols)) / 1200  # events per market second (20 minutes of quiet flow)
    speed = 10_000 / market_rate
    events, elapsed, latencies = asyncio.run(run(arguments.redis_url, symbols, speed, arguments.seconds, 500))
    print(
        f"latency at {events / elapsed:,.0f} events/s ({len(latencies):,} events): socket -> stream "
        f"p50 {percentile(latencies, 0.5):.2f} ms, p95 {percentile(latencies, 0.95):.2f} ms, "
        f"p99 {percentile(latencies, 0.99):.2f} ms, max {max(latencies):.2f} ms   target p99 <= 5 ms"
    )


if __name__ == "__main__":
    main()
