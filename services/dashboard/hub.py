"""Fan-out of the dashboard's events to the open pages: each event is encoded once, numbered, kept in a short
history and put on every page's queue (the readers never wait for a browser).

An event's id is ``<boot>-<sequence>``. A page that reconnects (the browser resends ``Last-Event-ID``) or that
starts from the snapshot (``/events?after=<id>``) gets the events after that id from the history; when that id is
older than the history, or from an earlier run of the server, it gets a ``reset`` event and reloads the snapshot.
A page too slow to take its events (its queue full) is dropped the same way.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from typing import Any

HISTORY = 5000
QUEUE_LIMIT = 2000
RESET = b"event: reset\ndata: {}\n\n"


class Hub:
    def __init__(self, history: int = HISTORY, queue_limit: int = QUEUE_LIMIT) -> None:
        self.boot = secrets.token_hex(4)
        self.sequence = 0
        self.history: deque[tuple[int, bytes]] = deque(maxlen=history)
        self.queues: set[asyncio.Queue[bytes]] = set()
        self.queue_limit = queue_limit
        self.published = 0
        self.dropped_pages = 0

    @property
    def last_id(self) -> str:
        return f"{self.boot}-{self.sequence}"

    def publish(self, event: str, data: Any) -> None:
        self.sequence += 1
        encoded = f"id: {self.last_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        self.history.append((self.sequence, encoded))
        self.published += 1
        for queue in list(self.queues):
            if queue.qsize() >= self.queue_limit:  # a page that cannot keep up starts again from a snapshot
                self.dropped_pages += 1
                self._replace_with_reset(queue)
            else:
                queue.put_nowait(encoded)

    @staticmethod
    def _replace_with_reset(queue: asyncio.Queue[bytes]) -> None:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(RESET)

    def subscribe(self, after: str | None) -> asyncio.Queue[bytes]:
        """A queue for one page, holding first the events after ``after`` (an id of this run), or a reset when they
        are no longer kept (or ``after`` is not of this run); with ``after`` None, only the events from now on."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        if after is not None:
            boot, _, number = after.partition("-")
            oldest = self.history[0][0] if self.history else self.sequence + 1
            foreign = boot != self.boot or not number.isdigit() or int(number) > self.sequence
            if foreign or int(number) + 1 < oldest:  # another run's id, or its next events are gone
                queue.put_nowait(RESET)
            else:
                for sequence, encoded in self.history:
                    if sequence > int(number):
                        queue.put_nowait(encoded)
        self.queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes]) -> None:
        self.queues.discard(queue)
