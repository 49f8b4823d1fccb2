"""Replay benchmark: the full shared AMZN level-5 day into a real Redis.

Prints events published, the normalise+publish rate and peak RSS of the
publishing process and of the parsing worker.

    python -m bench.replay_bench [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import uuid
from pathlib import Path

from orderflow_client.bus.connection import Bus
from services.ingest.replay import SourceSpec, replay_files

DAY = Path(__file__).resolve().parents[2] / "shared" / "data" / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"


async def run(url: str, path: Path) -> None:
    bus = await Bus.connect(url, prefix=f"bench-{uuid.uuid4().hex[:8]}", stream_max_length=400_000)
    try:
        summary = await replay_files(bus, SourceSpec("lobster", (path,)))
        length = await bus.client.xlen(bus.keys.market("AMZN"))
        await bus.client.delete(bus.keys.market("AMZN"))
    finally:
        await bus.close()
    print(f"file: {path.name}")
    print(f"events published: {summary.published:,} ({dict(summary.events_by_kind)}); on the stream: {length:,}")
    print(f"elapsed: {summary.elapsed_seconds:.2f} s (worker start-up included)")
    print(f"normalise+publish rate: {summary.events_per_second:,.0f} events/s   target >= 100,000")
    print(
        f"peak RSS: publisher {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
        f"parsing worker {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB   target < 150 MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--file", type=Path, default=DAY)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.redis_url, arguments.file))


if __name__ == "__main__":
    main()
