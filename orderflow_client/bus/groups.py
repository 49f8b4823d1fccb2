"""Consumer groups of the bus: create and remove them, and see where one stands (pending entries, lag, trimming)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from redis.exceptions import ResponseError

from orderflow_client.bus.calls import RedisCalls
from orderflow_client.bus.streams import BusEntry, as_text, stream_id
from orderflow_client.errors import ConsumerGroupMissingError


class GroupPosition(NamedTuple):
    """A consumer group on a stream (XINFO): ``lag`` undelivered entries (None when Redis cannot tell),
    ``last_delivered`` id, ``entries_read`` (None: unknown), and the stream's ``entries_added``, ``length``
    and ``first_entry`` id ("" when empty)."""

    lag: int | None
    last_delivered: str
    entries_read: int | None
    entries_added: int
    length: int
    first_entry: str

    def trimmed_unread(self) -> int | None:
        """Entries trimmed from the stream before the group read them: 0 when none; None when some were
        but Redis cannot say how many (the group's read count is unknown)."""
        if not self.first_entry or stream_id(self.last_delivered) >= stream_id(self.first_entry):
            return 0
        if self.entries_read is not None:
            return max(0, self.entries_added - self.entries_read - self.length)
        if self.last_delivered == "0-0":
            return max(0, self.entries_added - self.length)
        return None

    def trimmed_interval_ns(self) -> tuple[int, int]:
        """When (Redis clock, ns) the entries trimmed unread were added: after the last one delivered (0 when
        none was) and before the stream's first entry."""
        return stream_id(self.last_delivered)[0] * 1_000_000, stream_id(self.first_entry)[0] * 1_000_000


class GroupOperations(RedisCalls):
    """Consumer groups on the bus's streams."""

    async def ensure_group(self, stream: str, group: str, start_id: str = "0") -> bool:
        """Create ``group`` on ``stream`` (and the stream) unless it exists.
        Returns True when it was created. A group created at ``0`` delivers
        the stream's backlog to its first reader."""
        async with self.calling("ensure_group"):
            try:
                await self.client.xgroup_create(stream, group, id=start_id, mkstream=True)
            except ResponseError as error:
                if str(error).startswith("BUSYGROUP"):
                    return False
                raise
        return True

    async def destroy_group(self, stream: str, group: str) -> bool:
        """XGROUP DESTROY (the demo's group of one run); True when it existed."""
        async with self.calling("destroy_group"):
            return bool(await self.client.xgroup_destroy(stream, group))

    async def delivery_counts(self, group: str, consumer: str, entries: Sequence[BusEntry]) -> dict[bytes, int]:
        """How many times each of ``entries`` (pending in ``group`` for ``consumer``) has been delivered: XPENDING
        over each stream's id range, one round trip (a pipeline). Entries no longer pending are absent."""
        spans: dict[str, list[bytes]] = {}
        for entry in entries:
            spans.setdefault(entry.stream, []).append(entry.entry_id)
        async with self.calling("delivery_counts"):
            pipeline = self.client.pipeline(transaction=False)
            for stream, ids in spans.items():
                order = sorted(ids, key=lambda entry_id: stream_id(as_text(entry_id)))
                pipeline.xpending_range(
                    stream, group, min=order[0], max=order[-1], count=len(ids) * 2 + 100, consumername=consumer
                )
            replies = await pipeline.execute()
        counts: dict[bytes, int] = {}
        for reply in replies:
            for pending in reply:
                entry_id = pending["message_id"]
                counts[entry_id if isinstance(entry_id, bytes) else entry_id.encode()] = int(pending["times_delivered"])
        return counts

    async def pending_count(self, stream: str, group: str) -> int:
        """Entries delivered to the group but not acknowledged."""
        async with self.calling("pending_count"):
            summary = await self.client.xpending(stream, group)
        return int(summary["pending"])

    async def processed_until(self, stream: str, group: str) -> str | None:
        """How far ``group`` has processed ``stream``, as an XREVRANGE ``end``: strictly before its oldest pending
        entry (``"(1718890000123-0"``), else its last delivered entry; None when it has processed nothing.
        XPENDING, then XINFO GROUPS when nothing is pending."""
        async with self.calling("processed_until"):
            summary = await self.client.xpending(stream, group)
            if summary["pending"]:
                return f"({as_text(summary['min'])}"
            groups = await self.client.xinfo_groups(stream)
        for info in groups:
            if as_text(info["name"]) == group:
                last = as_text(info["last-delivered-id"])
                return None if last == "0-0" else last
        return None

    async def group_lag(self, stream: str, group: str) -> int | None:
        """Entries not yet delivered to ``group`` (XINFO GROUPS ``lag``; Redis ≥ 7)."""
        return (await self.group_positions([stream], group))[stream].lag

    async def group_positions(self, streams: Sequence[str], group: str) -> dict[str, GroupPosition]:
        """Where ``group`` stands on each stream, all in one round trip (a pipeline of XINFO GROUPS and
        XINFO STREAM)."""
        async with self.calling("group_positions"):
            pipeline = self.client.pipeline(transaction=False)
            for stream in streams:
                pipeline.xinfo_groups(stream)
                pipeline.xinfo_stream(stream)
            replies = await pipeline.execute()
        positions: dict[str, GroupPosition] = {}
        for index, stream in enumerate(streams):
            groups, info = replies[2 * index], replies[2 * index + 1]
            found = next((entry for entry in groups if as_text(entry["name"]) == group), None)
            if found is None:
                raise ConsumerGroupMissingError(f"group {group} missing on {stream}")
            first = info.get("first-entry")
            positions[stream] = GroupPosition(
                lag=None if found.get("lag") is None else int(found["lag"]),
                last_delivered=as_text(found["last-delivered-id"]),
                entries_read=None if found.get("entries-read") is None else int(found["entries-read"]),
                entries_added=int(info.get("entries-added") or 0),
                length=int(info["length"]),
                first_entry=as_text(first[0]) if first else "",
            )
        return positions
