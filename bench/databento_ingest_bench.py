"""Live ingest from Databento: the local gateway (its own process) → the real ``databento.Live`` client → ingest
(records → events, publish) → Redis, beside the Polygon path measured in the same run.

1. Throughput: the gateway replays AMZN's 5-level and AAPL's 1-level LOBSTER days (2012-06-21) as MBP-10 or MBO
   records as fast as it can; events published per second of wall time, from the first event until the
   streams stop growing.
2. Latency at about 10,000 records/s (the gateway paced): receive → on the stream (XADD acknowledged), per event.
3. The Polygon path (``bench.ingest_bench``: simulator → polygon client → ingest) at its own rate, the same run.

    python -m bench.databento_ingest_bench [--redis-url redis://127.0.0.1:6379/0] [--schemas mbp-10,mbo]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
import uuid
from pathlib import Path

from bench.ingest_bench import run as polygon_run
from bench.stats import percentile
from orderflow_client.bus.connection import Bus
from orderflow_client.logs import configure_logging
from orderflow_client.positions import PositionRegistry
from services.ingest.service import IngestService
from shared.config import OrderFlowConfig

KEY = "db-BENCHMARKkey0123456789ABCDE"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lobster"
DAYS = [DATA / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip", DATA / "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"]
MARKET_SECONDS = 6.5 * 3600
configure_logging(service="bench", log_dir=None, level="ERROR", console=False)


def _serve(schema: str, speed: float, port_out) -> None:
    from services.tools.databento_gateway import DatabentoGateway
    from services.tools.databento_gateway_market import load_market

    async def main() -> None:
        market = load_market(DAYS, lobster_schemas=frozenset({schema}))
        gateway = await DatabentoGateway(market, api_key=KEY, speed=speed).start()
        port_out.put((gateway.port, len(market.records)))
        await asyncio.Event().wait()

    asyncio.run(main())


async def run(url: str, schema: str, speed: float, seconds: float) -> tuple[int, float, list[float], int, float]:
    """(events, seconds, latencies in ms, records the gateway holds, this process's CPU seconds meanwhile: ingest's
    own cost, whatever the gateway's pace)."""
    context = multiprocessing.get_context("spawn")
    port_out = context.Queue()
    gateway = context.Process(target=_serve, args=(schema, speed, port_out), daemon=True)
    gateway.start()
    port, records = await asyncio.to_thread(port_out.get, timeout=300)  # the gateway loads its market first
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    config = OrderFlowConfig(
        key_prefix=prefix,
        data_source="databento",
        databento_schema=schema,  # type: ignore[arg-type]
        databento_gateway=f"127.0.0.1:{port}",
        stream_max_length=5_000_000,
    )
    bus = await Bus.connect(url, prefix=prefix, stream_max_length=5_000_000)
    for symbol in ("AMZN", "AAPL"):
        await PositionRegistry(bus).open(symbol, quantity=1, entry_price="100")
    latencies: list[float] = []
    service = IngestService(config, bus, api_key=KEY, latency_sink=latencies, market_hours_only=False)
    stop = asyncio.Event()
    task = asyncio.ensure_future(service.run(stop))
    try:
        return await _measure(service, task, stop, latencies, seconds, records)
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait({task}, timeout=20)
        gateway.terminate()
        gateway.join(10)
        async for key in bus.client.scan_iter(match=f"{prefix}:*"):
            await bus.client.delete(key)
        await bus.close()


async def _measure(
    service: IngestService,
    task: asyncio.Future,
    stop: asyncio.Event,
    latencies: list[float],
    seconds: float,
    records: int,
) -> tuple[int, float, list[float], int, float]:
    """From the first event published until the streams stop growing (the day is over) or ``seconds`` pass."""
    deadline = time.monotonic() + 60
    while service.stats.events == 0:
        if time.monotonic() > deadline or task.done():
            raise RuntimeError("ingest published nothing within 60 s")
        await asyncio.sleep(0.001)
    started, start_events, start_cpu = time.perf_counter(), service.stats.events, time.process_time()
    latencies.clear()
    last, last_change = service.stats.events, time.perf_counter()
    while time.perf_counter() - started < seconds:
        await asyncio.sleep(0.05)
        if service.stats.events != last:
            last, last_change = service.stats.events, time.perf_counter()
        elif time.perf_counter() - last_change > 1.0:
            break  # the day is over
    events, elapsed, cpu = last - start_events, last_change - started, time.process_time() - start_cpu
    stop.set()
    await asyncio.wait_for(task, 20)
    return events, elapsed, list(latencies), records, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--schemas", default="mbp-10,mbo")
    arguments = parser.parse_args()
    for schema in arguments.schemas.split(","):
        events, elapsed, _, records, cpu = asyncio.run(run(arguments.redis_url, schema, 0, arguments.seconds))
        print(
            f"databento {schema}: throughput {events:,} events in {elapsed:.2f} s = {events / elapsed:,.0f} events/s "
            f"({records:,} records in the gateway); ingest's own CPU {cpu / events * 1e6:.1f} µs an event "
            f"(one core's worth: {events / cpu:,.0f} events/s)"
        )
        speed = 10_000 / (records / MARKET_SECONDS)
        events, elapsed, latencies, _, _ = asyncio.run(run(arguments.redis_url, schema, speed, arguments.seconds))
        print(
            f"databento {schema}: latency at {events / elapsed:,.0f} events/s ({len(latencies):,} events): receive -> "
            f"stream p50 {percentile(latencies, 0.5):.2f} ms, p95 {percentile(latencies, 0.95):.2f} ms, "
            f"p99 {percentile(latencies, 0.99):.2f} ms, max {max(latencies):.2f} ms   target p99 <= 5 ms"
        )
    symbols = [f"S{index:02d}" for index in range(20)]
    events, elapsed, _ = asyncio.run(polygon_run(arguments.redis_url, symbols, 1e6, arguments.seconds, 500))
    print(f"polygon (the same run): throughput {events / elapsed:,.0f} events/s")


if __name__ == "__main__":
    main()
