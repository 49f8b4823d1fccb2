"""Detector benchmarks through a real Redis.

1. Throughput: events of several scenarios (one symbol each) are published
   first; the detector then consumes, runs the rules, publishes and acks
   them as fast as it can, on one core.
2. Latency: the same scenarios merged and replayed at 20,000 events/s while
   the detector runs in another process; every event's ingest ``ts_recv`` →
   processed-and-acknowledged time gives p50/p95/p99 (and the alerts'
   ``latency_ms`` the alert-logged figure), beside three Redis round trips
   (publish, read, ack) measured in the same run. ``--latency-symbols 52``:
   the same with 13 copies of each scenario.
3. Memory: RSS of a detector process before and after monitoring 50 symbols
   (the quiet scenario on each: 20 minutes of flow, windows full).

    python -m bench.detector_bench [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import multiprocessing
import resource
import statistics
import time
import uuid

from bench.stats import percentile
from orderflow_client.bus.connection import Bus
from orderflow_client.logs import configure_logging
from orderflow_client.wire import BookUpdate, Quote, decode, unbatched
from services.cli.common import collect_garbage_less_often
from services.detector.service import DetectorService
from services.ingest.polygon_ws import parse_frame
from services.ingest.replay import replay
from services.tools.scenarios import SCENARIOS, frames
from shared.config import OrderFlowConfig

configure_logging(service="bench", log_dir=None, level="ERROR", console=False)


def scenario_events(name: str, symbol: str) -> list:
    events = []
    for ts_recv, frame in frames(name, 7, symbol):
        events.extend(parse_frame(frame, ts_recv).events)
    return events


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bare_read(bus: Bus, streams: list[str]) -> float:
    """The ceiling of any consumer of these streams: XREADGROUP (1,000 entries a read), decode every entry and
    unpack its events, XACK — no rules; events/s. Through its own group, so the detector's is untouched."""
    for stream in streams:
        await bus.ensure_group(stream, "bare", "0")
    events = 0
    started = time.perf_counter()
    while entries := await bus.read_group(
        "bare", "bench", streams, count=max(20, 1_000 // len(streams)), block_ms=None
    ):
        for entry in entries:
            events += len(unbatched(decode(entry.payload)))
        by_stream: dict[str, list[bytes]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        for stream, ids in by_stream.items():
            await bus.ack(stream, "bare", ids)
    return events / (time.perf_counter() - started)


async def throughput(url: str, copies: int) -> tuple[int, float, int, float]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    config = OrderFlowConfig(key_prefix=prefix, stream_max_length=2_000_000)
    bus = await Bus.connect(url, prefix=prefix, stream_max_length=2_000_000)
    symbols = []
    try:
        for copy in range(copies):
            for name in SCENARIOS:
                symbol = f"{name.replace('-', '')[:6].upper()}{copy}"
                symbols.append(symbol)
                await replay(bus, scenario_events(name, symbol))
        ceiling = await bare_read(bus, [bus.keys.market(symbol) for symbol in symbols])
        service = DetectorService(config, bus, symbols=symbols, consumer="bench")
        await service.refresh()
        collect_garbage_less_often()  # as `orderflow detect` does
        started = time.perf_counter()
        await service.drain()
        elapsed = time.perf_counter() - started
        return service.stats.events, elapsed, service.stats.alerts, ceiling
    finally:
        await bus.client.delete(
            *(bus.keys.market(s) for s in symbols), bus.keys.alerts, bus.keys.exits, bus.keys.status
        )
        async for key in bus.client.scan_iter(match=f"{prefix}:*"):
            await bus.client.delete(key)
        await bus.close()


def _latency_detector(url: str, prefix: str, symbols: list[str], ready, stop, results) -> None:
    collect_garbage_less_often()  # as `orderflow detect` does

    async def main() -> None:
        config = OrderFlowConfig(key_prefix=prefix, stream_max_length=2_000_000)
        bus = await Bus.connect(url, prefix=prefix)
        service = DetectorService(config, bus, symbols=symbols, consumer="bench", keep_latencies=True)
        await service.refresh()
        ready.set()
        done = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.05)
            done.set()

        watcher = asyncio.ensure_future(watch())
        await service.run(done)
        await watcher
        await bus.close()
        results.put((service.stats.latencies_ms, service.stats.events))

    asyncio.run(main())


async def latency(url: str, rate: float, copies: int = 1) -> tuple[list[float], int, float, list[float], list[float]]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    names = ["large-sellers", "red-burst", "two-sided", "quiet"] * copies
    symbols = [f"{name.replace('-', '').upper()}{index}" for index, name in enumerate(names)]
    merged = list(
        heapq.merge(*(scenario_events(n, s) for n, s in zip(names, symbols, strict=True)), key=lambda e: e.ts_event)
    )
    span = (merged[-1].ts_event - merged[0].ts_event) / 1e9
    speed = rate * span / len(merged)
    # spawn, not fork: a child forked from this process (half a million events in memory) would scan and
    # copy-on-write that heap at every full collection — stalls of 100 ms a real detector never has
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    detector = context.Process(target=_latency_detector, args=(url, prefix, symbols, ready, stop, results))
    detector.start()
    ready.wait(30)
    bus = await Bus.connect(url, prefix=prefix, stream_max_length=2_000_000)
    try:
        round_trips = []
        for _ in range(2_000):
            sent = time.perf_counter_ns()
            await bus.client.ping()
            round_trips.append((time.perf_counter_ns() - sent) / 1e6)
        started = time.perf_counter()
        summary = await replay(bus, merged, speed=speed, batch_size=100)
        achieved = summary.published / (time.perf_counter() - started)
        await asyncio.sleep(1.0)
        stop.set()
        latencies, processed = results.get(timeout=60)
        detector.join(30)
        alert_latencies = []
        for _id, fields in await bus.client.xrange(bus.keys.alerts):
            alert_latencies.append(decode(next(iter(fields.values()))).latency_ms)
        return latencies, processed, achieved, alert_latencies, round_trips
    finally:
        async for key in bus.client.scan_iter(match=f"{prefix}:*"):
            await bus.client.delete(key)
        await bus.close()


def _memory_detector(url: str, prefix: str, symbols: list[str], results) -> None:
    async def main() -> None:
        config = OrderFlowConfig(key_prefix=prefix, stream_max_length=2_000_000)
        bus = await Bus.connect(url, prefix=prefix)
        service = DetectorService(config, bus, symbols=symbols, consumer="bench")
        before = rss_mb()
        await service.refresh()
        await service.drain()
        after = rss_mb()
        await bus.close()
        results.put((before, after, service.stats.events))

    asyncio.run(main())


CENT = 10_000_000  # nano-dollars


def as_book(event, levels: int):
    """A quote as a book of ``levels`` levels a side, a cent apart, each deeper level larger (bench input only)."""
    if not isinstance(event, Quote) or levels <= 0:
        return event
    return BookUpdate(
        symbol=event.symbol,
        ts_event=event.ts_event,
        ts_recv=event.ts_recv,
        ts_arrival=event.ts_arrival,
        bids=tuple((event.bid_price - level * CENT, event.bid_size * (level + 1)) for level in range(levels)),
        asks=tuple((event.ask_price + level * CENT, event.ask_size * (level + 1)) for level in range(levels)),
        venue="XNAS",
    )


async def memory(url: str, count: int, book_levels: int = 0) -> tuple[float, float, int]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    symbols = [f"SYM{index:02d}" for index in range(count)]
    bus = await Bus.connect(url, prefix=prefix, stream_max_length=2_000_000)
    try:
        for symbol in symbols:
            await replay(bus, [as_book(event, book_levels) for event in scenario_events("quiet", symbol)])
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        process = context.Process(target=_memory_detector, args=(url, prefix, symbols, results))
        process.start()
        before, after, events = results.get(timeout=600)
        process.join(30)
        return before, after, events
    finally:
        async for key in bus.client.scan_iter(match=f"{prefix}:*"):
            await bus.client.delete(key)
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--copies", type=int, default=4, help="copies of the six scenarios for the throughput run")
    parser.add_argument("--rate", type=float, default=20_000.0, help="events/s of the latency run")
    parser.add_argument("--symbols", type=int, default=50, help="symbols of the memory run")
    parser.add_argument(
        "--book-levels", type=int, default=0, help="memory run: quotes turned into books of this depth (0: quotes)"
    )
    parser.add_argument("--latency-symbols", type=int, default=4, help="symbols of the latency run (a multiple of 4)")
    parser.add_argument("--only", choices=("throughput", "latency", "memory"), help="run one measure only")
    arguments = parser.parse_args()

    if arguments.only in (None, "throughput"):
        events, elapsed, alerts, ceiling = asyncio.run(throughput(arguments.redis_url, arguments.copies))
        print(
            f"throughput: {events:,} events ({alerts} alerts) in {elapsed:.2f} s = "
            f"{events / elapsed:,.0f} events/s   target >= 250,000; "
            f"ceiling, the same entries read, decoded and acknowledged without rules: {ceiling:,.0f} events/s"
        )

    if arguments.only in (None, "latency"):
        copies = max(1, arguments.latency_symbols // 4)
        latencies, processed, achieved, alert_latencies, round_trips = asyncio.run(
            latency(arguments.redis_url, arguments.rate, copies)
        )
        print(
            f"latency, {4 * copies} symbols, at {achieved:,.0f} events/s replay ({processed:,} events): "
            f"p50 {percentile(latencies, 0.50):.2f} ms, p95 {percentile(latencies, 0.95):.2f} ms, "
            f"p99 {percentile(latencies, 0.99):.2f} ms, max {max(latencies):.2f} ms   target p99 <= 25 ms; "
            f"floor, 3 Redis round trips: p99 {3 * percentile(round_trips, 0.99):.2f} ms"
        )
        if alert_latencies:
            print(
                f"alert latency_ms ({len(alert_latencies)} alerts): "
                f"median {statistics.median(alert_latencies):.2f}, max {max(alert_latencies):.2f}"
            )

    if arguments.only in (None, "memory"):
        before, after, events = asyncio.run(memory(arguments.redis_url, arguments.symbols, arguments.book_levels))
        depth = f"{arguments.book_levels}-level books" if arguments.book_levels else "quotes"
        print(
            f"memory with {arguments.symbols} symbols, {depth} ({events:,} events): "
            f"RSS {before:.0f} MB -> {after:.0f} MB, growth {after - before:.1f} MB   target <= 50 MB"
        )


if __name__ == "__main__":
    main()
