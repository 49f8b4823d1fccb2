"""The bounded queue between the Polygon socket and the pipeline: frames, in order, with the feed's ups and downs.

The socket's callback only stamps a frame's receive time (ns) and appends it here: a slow pipeline would get the
socket killed by Polygon. The inbox holds at most ``max_frames`` frames and ``max_bytes`` bytes of them; a frame past
either cap is dropped and the dropped interval remembered, to be published as a ``queue_overflow`` gap once the
pipeline has caught up (never silent). Entries are ``(kind, stamp ns, payload)``::

    ("connected", 1700000000125000000, None)
    ("frame", 1700000000125000000, '[{"ev":"T","sym":"AAPL","p":187.43,"s":200,"t":1700000000123}]')
    ("disconnected", 1700000000900000000, "ConnectionClosedError")

With the Databento source a frame is a :class:`~services.ingest.databento_live.RecordChunk` (the DBN records of one
socket read), whose ``len()`` is its records' bytes (368 an MBP-10 record, 56 an MBO record), so the byte cap
bounds it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sized
from typing import Any

InboxEntry = tuple[str, int, Any]


class Inbox:
    """Frames and connection markers waiting for the pipeline, bounded in frames and in bytes."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.entries: deque[InboxEntry] = deque()
        self.frames = 0
        self.bytes = 0  # the frames' own size: with frames, what bounds the inbox
        self.wakeup = asyncio.Event()
        self.dropped_since: int | None = None  # receive time (ns) of the first frame dropped since the last report
        self.dropped_until = 0  # and of the last
        self.feed_running = False  # a feed that sets this while it runs gets its last entries (a stop's
        # "disconnected") published before the pipeline ends (SHUTDOWN_DRAIN_SECONDS at most)

    def put_frame(self, received: int, frame: Sized) -> bool:
        """Queue a frame received at ``received`` (ns); False when the inbox is full and the frame was dropped."""
        if self.frames >= self.max_frames or self.bytes >= self.max_bytes:
            self.dropped_since = self.dropped_since or received
            self.dropped_until = received
            return False
        self.entries.append(("frame", received, frame))
        self.frames += 1
        self.bytes += len(frame)
        self.wakeup.set()
        return True

    def put_connected(self, stamp: int) -> None:
        """The socket delivered its first frame at ``stamp`` (ns)."""
        self.entries.append(("connected", stamp, None))

    def put_disconnected(self, stamp: int, reason: str) -> None:
        """The socket was lost; ``stamp`` is its last frame's receive time (ns)."""
        self.entries.append(("disconnected", stamp, reason))
        self.wakeup.set()

    def pop_oldest(self) -> InboxEntry:
        """The oldest entry (there must be one)."""
        entry = self.entries.popleft()
        if entry[0] == "frame":
            self.frames -= 1
            self.bytes -= len(entry[2])
        return entry

    def clear(self) -> None:
        """Drop everything waiting."""
        self.entries.clear()
        self.frames = self.bytes = 0

    def wake(self) -> None:
        """End a :meth:`wait` now."""
        self.wakeup.set()

    async def wait(self, timeout: float) -> None:
        """Until something is queued (or :meth:`wake`), at most ``timeout`` seconds."""
        self.wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), timeout=timeout)

    def overflow_ended(self) -> tuple[int, int] | None:
        """``(first, last)`` receive times (ns) of the frames dropped, once the inbox is below half of both caps
        again (then forgotten: each interval is reported once); None while nothing was dropped or it is still full."""
        if self.dropped_since is not None and self.frames < self.max_frames // 2 and self.bytes < self.max_bytes // 2:
            start, end = self.dropped_since, self.dropped_until
            self.dropped_since = None
            return start, end
        return None
