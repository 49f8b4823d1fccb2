"""One check of the bus's blocking ``read_after`` (XREAD BLOCK; a poll on a cluster), run on the embedded bus, a
real single Redis and a real Redis Cluster: it waits for what is not there yet, wakes when it comes, returns at once
what is there, and without ``block_ms`` does not wait."""

from __future__ import annotations

import asyncio
import time

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.streams import as_text


async def check_blocking_read_after(bus: Bus, streams: list[str]) -> None:
    last = dict.fromkeys(streams, "0-0")
    # nothing there: a blocking read waits its time, then returns nothing; a read without block_ms does not wait
    started = time.perf_counter()
    assert await bus.read_after(last, block_ms=300) == []
    assert 0.25 <= time.perf_counter() - started < 2.0
    started = time.perf_counter()
    assert await bus.read_after(last) == []
    assert time.perf_counter() - started < 0.25

    # an entry appended (to the last stream) while the read waits ends the wait, long before its 5 s
    async def append_later() -> list[str]:
        await asyncio.sleep(0.2)
        return await bus.publish_encoded([(streams[-1], b"trade", b"first")])

    appending = asyncio.ensure_future(append_later())
    started = time.perf_counter()
    entries = await bus.read_after(last, block_ms=5000)
    waited = time.perf_counter() - started
    appended = await appending
    assert [(entry.stream, as_text(entry.entry_id), entry.payload) for entry in entries] == [
        (streams[-1], appended[0], b"first")
    ]
    assert 0.15 <= waited < 2.0, waited
    # what is there is returned at once: every stream's entries after its last id, in their order
    await bus.publish_encoded([(stream, b"trade", f"{stream} {n}".encode()) for n in range(3) for stream in streams])
    last[streams[-1]] = appended[0]
    started = time.perf_counter()
    entries = await bus.read_after(last, block_ms=5000)
    assert time.perf_counter() - started < 1.0
    assert sorted((entry.stream, entry.payload) for entry in entries) == sorted(
        (stream, f"{stream} {n}".encode()) for stream in streams for n in range(3)
    )
    for stream in streams:
        assert [entry.payload for entry in entries if entry.stream == stream] == [
            f"{stream} {n}".encode() for n in range(3)
        ]
    # after the last ids read: nothing new, so it waits again
    last = {entry.stream: as_text(entry.entry_id) for entry in entries}
    started = time.perf_counter()
    assert await bus.read_after(last, block_ms=200) == []
    assert time.perf_counter() - started >= 0.15
