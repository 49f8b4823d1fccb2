"""Stream operations of the bus: read through a consumer group, acknowledge, reclaim, read ranges (appending is
in :mod:`orderflow_client.bus.appends`).

An entry has one field: its name is the message type (``trade``, ``quote``, ``book``, ``status``, ``alert``,
``exit``, or ``events`` for several market events: :mod:`orderflow_client.bus.entries`) and its value the msgpack
payload, so ``redis-cli XRANGE`` shows what each entry is without decoding,
at no cost on the read path (a second header field cost 25% of consume speed)::

    XRANGE orderflow:md:{AAPL} - + COUNT 1
    1) 1) "1718890000123-0"
       2) 1) "trade"
          2) "\\xde\\x00\\x11\\xa4type\\xa5trade…"
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.typing import KeyT, StreamIdT

from orderflow_client import metrics
from orderflow_client.bus.calls import RedisCalls
from orderflow_client.bus.keys import Keys
from orderflow_client.bus.scripts import ACK_BATCH_LUA
from orderflow_client.errors import BusUnavailableError

CLUSTER_POLL_FIRST_SECONDS = 0.001
CLUSTER_POLL_MAX_SECONDS = 0.01
"""On a cluster a blocking read of many streams is a poll (see ``_read_group_at``): a quiet stream's first entry
waits at most this long (s), and an idle reader sends a command a stream every 10 ms."""


class BusEntry(NamedTuple):
    """One stream entry as read: its stream, id, raw wire payload and field name (the message type it claims)."""

    stream: str
    entry_id: bytes
    payload: bytes
    field: bytes = b""


class StreamOperations(RedisCalls):
    """Reading streams (alone, or through a consumer group), acknowledging and reclaiming entries."""

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        keys: Keys,
        *,
        description: str,
        stream_max_length: int,
        **options: Any,
    ) -> None:
        super().__init__(client, keys, description=description, stream_max_length=stream_max_length, **options)
        self._unsure_reads: dict[tuple[str, str], dict[str, str]] = {}  # (group, consumer) -> how far re-read
        self._ack_batch = client.register_script(ACK_BATCH_LUA)
        # Raw XREADGROUP replies: the entries are walked once, in _entries,
        # instead of being turned into dicts by redis-py first.
        client.set_response_callback("XREADGROUP", _raw_reply)

    # --- reading through a consumer group -------------------------------------------
    async def read_group(
        self,
        group: str,
        consumer: str,
        streams: Iterable[str],
        *,
        count: int = 1000,
        block_ms: int | None = 1000,
    ) -> list[BusEntry]:
        """XREADGROUP new entries (``>``) for ``consumer``; empty list on timeout.

        A reply lost on the way (a timeout, a dropped connection, a Redis restart: the client retries the command)
        leaves the entries Redis delivered with it pending for ``consumer``, unseen; reading on with ``>`` would
        hand over newer entries first and leave those for a reclaim, out of order. So after any failure during or
        since the last read, this consumer's pending entries (``0``: in order, the retried reply's included) are
        returned first, until there are none."""
        streams = list(streams)
        unsure = (group, consumer)
        cursor = self._unsure_reads.get(unsure)
        if cursor is not None:  # one pass over the pending entries, oldest first (some may be waiting on purpose)
            positions = {stream: cursor.get(stream, "0") for stream in streams}
            pending = await self._read_group_at(group, consumer, positions, count=count)
            for entry in pending:
                cursor[entry.stream] = as_text(entry.entry_id)
            pending = [entry for entry in pending if entry.payload]
            if pending:
                return pending
            del self._unsure_reads[unsure]
        failures = self.failures_seen()
        try:
            newest = dict.fromkeys(streams, ">")
            entries = await self._read_group_at(group, consumer, newest, count=count, block_ms=block_ms)
        except BusUnavailableError:
            self._unsure_reads[unsure] = {}
            raise
        if self.failures_seen() != failures:  # retried inside the client: what the first try delivered is pending
            self._unsure_reads[unsure] = {}
            return await self.read_group(group, consumer, streams, count=count, block_ms=block_ms)
        self.masters_changed()
        return entries

    async def _read_group_at(
        self, group: str, consumer: str, positions: dict[str, str], *, count: int, block_ms: int | None = None
    ) -> list[BusEntry]:
        """XREADGROUP from ``positions`` (stream → ``>`` or an id). One command on one server. On a cluster a
        command reaches one hash slot, and each symbol's stream has its own: one command a stream, in a pipeline
        (each node's commands in one round trip, the nodes in parallel), polled again after a pause growing from
        1 ms to :data:`CLUSTER_POLL_MAX_SECONDS` until ``block_ms`` has passed when nothing came."""
        if not self.keys.cluster:
            every: dict[KeyT, StreamIdT] = dict(positions.items())
            async with self.calling("read_group"):
                return _entries(await self.client.xreadgroup(group, consumer, every, count=count, block=block_ms))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (block_ms or 0) / 1000
        pause = CLUSTER_POLL_FIRST_SECONDS
        while True:
            async with self.calling("read_group"):
                pipeline = self.client.pipeline(transaction=False)
                for stream, position in positions.items():
                    pipeline.xreadgroup(group, consumer, {stream: position}, count=count)
                replies = await pipeline.execute()
            entries = [entry for reply in replies for entry in _entries(reply)]
            left = deadline - loop.time()
            if entries or not block_ms or left <= 0:
                return entries
            await asyncio.sleep(min(pause, left))
            pause = min(2 * pause, CLUSTER_POLL_MAX_SECONDS)

    async def read_own_pending(self, group: str, consumer: str, stream: str, *, count: int = 1000) -> list[BusEntry]:
        """Entries delivered to ``consumer`` and not acknowledged (XREADGROUP ``0``),
        e.g. after a crash between processing and ack. Trimmed ones are skipped."""
        async with self.calling("read_own_pending"):
            response = await self.client.xreadgroup(group, consumer, {stream: "0"}, count=count)
        return [entry for entry in _entries(response) if entry.payload]

    async def ack(self, stream: str, group: str, entry_ids: Sequence[bytes]) -> int:
        """XACK; returns how many entries were pending and are now acknowledged."""
        if not entry_ids:
            return 0
        async with self.calling("ack"):
            if self.embedded:  # fakeredis runs Lua slowly and packs nothing over a socket
                return int(await self.client.xack(stream, group, *entry_ids))
            return int(await self._ack_batch(keys=[stream], args=[group, b" ".join(entry_ids)]))

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 1000
    ) -> tuple[list[BusEntry], list[bytes]]:
        """Take over entries pending longer than ``min_idle_ms`` (XAUTOCLAIM,
        following the cursor to the end). Returns ``(entries, deleted_ids)``:
        deleted ids were trimmed from the stream while pending and are gone."""
        return (await self.reclaim_all([stream], group, consumer, min_idle_ms=min_idle_ms, count=count))[stream]

    async def reclaim_all(
        self, streams: Sequence[str], group: str, consumer: str, *, min_idle_ms: int, count: int = 1000
    ) -> dict[str, tuple[list[BusEntry], list[bytes]]]:
        """:meth:`reclaim` for many streams: one round trip for all of them (a pipeline), more only for a
        stream with over ``count`` entries to take over."""
        found: dict[str, tuple[list[BusEntry], list[bytes]]] = {stream: ([], []) for stream in streams}
        cursors = dict.fromkeys(streams, "0-0")
        async with self.calling("reclaim"):
            while cursors:
                pipeline = self.client.pipeline(transaction=False)
                for stream, cursor in cursors.items():
                    pipeline.xautoclaim(
                        stream, group, consumer, min_idle_time=min_idle_ms, start_id=cursor, count=count
                    )
                replies = await pipeline.execute()
                following = {}
                for (stream, _), response in zip(cursors.items(), replies, strict=False):
                    claimed, deleted = found[stream]
                    claimed.extend(_stream_entries(stream, response[1]))
                    if len(response) > 2:
                        deleted.extend(response[2])
                    if as_text(response[0]) != "0-0":
                        following[stream] = as_text(response[0])
                cursors = following
        metrics.RECLAIMED_ENTRIES.inc(sum(len(claimed) for claimed, _ in found.values()))
        return found

    async def take_over(self, stream: str, group: str, consumer: str) -> int:
        """Make every entry of ``stream`` pending in ``group`` for another consumer ``consumer``'s (XPENDING, then
        XCLAIM ``JUSTID``: their delivery counts unchanged), e.g. a symbol's new owner taking what its previous
        owner left; they are then read as this consumer's own pending entries. Returns how many were claimed."""
        claimed, start = 0, "-"
        async with self.calling("take_over"):
            while True:
                pending = await self.client.xpending_range(stream, group, min=start, max="+", count=1000)
                others: list[Any] = [entry["message_id"] for entry in pending if entry["consumer"] != consumer.encode()]
                if others:
                    await self.client.xclaim(stream, group, consumer, min_idle_time=0, message_ids=others, justid=True)
                    claimed += len(others)
                if len(pending) < 1000:
                    return claimed
                start = f"({as_text(pending[-1]['message_id'])}"  # type: ignore[arg-type]  # an id: bytes

    # --- reading a stream alone ----------------------------------------------------
    async def read_range(
        self, stream: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[BusEntry]:
        """XRANGE: history of a stream, oldest first (warm-up, audits, a bot's recent alerts, tests)."""
        async with self.calling("read_range"):
            response = await self.client.xrange(stream, min=start, max=end, count=count)
        return list(_stream_entries(stream, response or []))

    async def read_range_reverse(
        self, stream: str, end: str = "+", start: str = "-", count: int | None = None
    ) -> list[BusEntry]:
        """XREVRANGE: history of a stream, newest first (the last trade, a watch's first screen, the detector's
        warm-up). ``end`` may be exclusive: ``"(1718890000123-0"``."""
        async with self.calling("read_range_reverse"):
            response = await self.client.xrevrange(stream, max=end, min=start, count=count)
        return list(_stream_entries(stream, response or []))

    async def read_after(self, last_ids: Mapping[str, str], *, count: int = 100, block_ms: int = 0) -> list[BusEntry]:
        """XREAD: up to ``count`` entries per stream after each stream's ``last_ids`` entry (``"0-0"``: from the
        start), oldest first, stream by stream; with ``block_ms`` > 0, waiting up to that long for one when none is
        there (XREAD BLOCK; empty list on timeout). On a cluster: one command a stream, polled as ``_read_group_at``."""
        positions: dict[KeyT, StreamIdT] = dict(last_ids.items())
        deadline, pause = asyncio.get_running_loop().time() + block_ms / 1000, CLUSTER_POLL_FIRST_SECONDS
        while True:
            async with self.calling("read_after"):
                if not self.keys.cluster:
                    return _entries(await self.client.xread(positions, count=count, block=block_ms or None))
                pipeline = self.client.pipeline(transaction=False)
                for stream, position in positions.items():
                    pipeline.xread({stream: position}, count=count)
                entries = [entry for reply in await pipeline.execute() for entry in _entries(reply)]
            left = deadline - asyncio.get_running_loop().time()
            if entries or not block_ms or left <= 0:
                return entries
            await asyncio.sleep(min(pause, left))
            pause = min(2 * pause, CLUSTER_POLL_MAX_SECONDS)


def as_text(value: bytes | str) -> str:
    """A Redis reply value as text (replies are bytes unless decoded)."""
    return value.decode() if isinstance(value, bytes) else value


def stream_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id as ``(milliseconds, sequence)``, e.g. ``"1718890000123-4"`` → ``(1718890000123, 4)``."""
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _stream_entries(stream: str, response: Iterable[Any]) -> Iterable[BusEntry]:
    for entry_id, fields in response:
        if fields is None:  # trimmed while pending (Redis < 7 reports it so)
            continue
        field, payload = next(iter(fields.items()), (b"", b""))
        yield BusEntry(stream, entry_id, payload, field)


def _raw_reply(response: Any, **_options: Any) -> Any:
    return response


def _entries(response: dict[Any, Any] | list[Any] | None) -> list[BusEntry]:
    """Flatten a raw XREADGROUP reply: ``{stream: [[id, [type, payload]], …]}``
    (RESP3 map) or ``[[stream, [...]], …]`` (RESP2)."""
    if not response:
        return []
    entries: list[BusEntry] = []
    append = entries.append
    new = tuple.__new__  # a NamedTuple's own __new__ is Python code: 1/8 of the consume time
    for stream, stream_entries in response.items() if isinstance(response, dict) else response:
        name = as_text(stream)
        for entry_id, fields in stream_entries:
            if not fields:  # trimmed while pending
                continue
            if isinstance(fields, list):
                append(new(BusEntry, (name, entry_id, fields[1], fields[0])))
            else:
                field, payload = next(iter(fields.items()))
                append(new(BusEntry, (name, entry_id, payload, field)))
    return entries
