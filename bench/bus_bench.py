"""Bus benchmark: 200,000 trade events through a real Redis.

Prints the publish rate, the consume+decode rate and the consume+decode+ack
rate of :class:`orderflow_client.bus.connection.Bus`, next to ``redis-benchmark``'s pipelined
XADD rate on the same machine (the server's own ceiling).

    python -m bench.bus_bench [--redis-url redis://127.0.0.1:6379/0] [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import time
import uuid
from urllib.parse import urlparse

from orderflow_client.bus.connection import Bus
from orderflow_client.wire import Trade, decode


def trades(count: int) -> list[Trade]:
    base = 1_700_000_000_000_000_000
    return [
        Trade(
            symbol="AAPL",
            ts_event=base + i * 1000,
            ts_recv=base + i * 1000 + 500,
            ts_arrival=base + i * 1000 + 500,
            price=187_430_000_000 + (i % 50) * 10_000_000,
            size=100 + i % 400,
            exchange=4 + i % 10,
            trade_id=str(71675577320245 + i),
            conditions=(12, 37),
            sequence=i,
            tape=3,
        )
        for i in range(count)
    ]


async def run(url: str, count: int, batch: int, read_count: int = 1000) -> dict[str, float]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    bus = await Bus.connect(url, prefix=prefix, stream_max_length=count * 2)
    stream = bus.keys.market("AAPL")
    events = trades(count)
    try:
        started = time.perf_counter()
        for index in range(0, count, batch):
            await bus.publish([(stream, trade) for trade in events[index : index + batch]])
        publish_rate = count / (time.perf_counter() - started)

        results = {"publish": publish_rate}
        for group, acknowledge in (("read-decode", False), ("read-decode-ack", True)):
            await bus.ensure_group(stream, group)
            consumed = 0
            started = time.perf_counter()
            while entries := await bus.read_group(group, "bench", [stream], count=read_count, block_ms=None):
                for entry in entries:
                    decode(entry.payload)
                if acknowledge:
                    await bus.ack(stream, group, [entry.entry_id for entry in entries])
                consumed += len(entries)
            results[group] = consumed / (time.perf_counter() - started)
            assert consumed == count, (consumed, count)
        return results
    finally:
        await bus.client.delete(stream)
        await bus.close()


def redis_benchmark_xadd(url: str, count: int) -> float | None:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    parsed = urlparse(url)
    key = f"bench-rb-{uuid.uuid4().hex[:8]}"
    command = [
        binary,
        "-h",
        parsed.hostname or "127.0.0.1",
        "-p",
        str(parsed.port or 6379),
        "-n",
        str(count),
        "-P",
        "100",
        "-c",
        "1",
        "-q",
        "XADD",
        key,
        "*",
        "trade",
        "x" * 150,
    ]
    output = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
    subprocess.run(
        [
            shutil.which("redis-cli") or "redis-cli",
            "-h",
            parsed.hostname or "127.0.0.1",
            "-p",
            str(parsed.port or 6379),
            "DEL",
            key,
        ],
        capture_output=True,
    )
    match = re.search(r"([\d.]+) requests per second", output)
    return float(match.group(1)) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per publish call")
    parser.add_argument("--read-count", type=int, default=1000, help="entries per XREADGROUP")
    arguments = parser.parse_args()
    results = asyncio.run(run(arguments.redis_url, arguments.events, arguments.batch, arguments.read_count))
    reference = redis_benchmark_xadd(arguments.redis_url, arguments.events)
    print(f"events: {arguments.events:,} trades, publish batches of {arguments.batch}")
    print(f"publish (Bus.publish, Lua batch per stream):   {results['publish']:>10,.0f} events/s   target >= 150,000")
    print(
        f"consume + decode (XREADGROUP {arguments.read_count:>5}):        "
        f"{results['read-decode']:>10,.0f} events/s   target >= 300,000"
    )
    print(f"consume + decode + ack:                         {results['read-decode-ack']:>10,.0f} events/s")
    if reference is not None:
        print(f"redis-benchmark XADD, pipeline 100, 1 client:   {reference:>10,.0f} requests/s (server ceiling)")
    else:
        print("redis-benchmark not found: no reference rate")


if __name__ == "__main__":
    main()
