"""Fan-out of the dashboard's events to the open pages: each event is encoded once, numbered and put on every page's
queue (the readers never wait for a browser); the alerts and exit recommendations are also kept in a short history.

An event's id is ``<boot>-<sequence>``. A page that reconnects (the browser resends ``Last-Event-ID``) or that
starts from the snapshot (``/events?after=<id>``) gets the kept events after that id from the history, then (when
anything was published since) the latest header and cards and the whole charts, which stand for every summary and
chart change it missed (those are not kept: a summary of 50 cards is tens of KB). When a kept event after that id
is gone from the history, or the id is from an earlier run of the server, the page gets a ``reset`` event and
reloads the snapshot. A page too slow to take its events (its queue full) is dropped the same way. A summary the
same as the last one sent (but for the wall-clock fields the page does not read) is not sent again.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

HISTORY = 5000  # kept events at most
HISTORY_BYTES = 4 * 1024 * 1024  # and their bytes at most
QUEUE_LIMIT = 2000
RESET = b"event: reset\ndata: {}\n\n"
KEPT_EVENTS = frozenset({"output"})
"""What the dashboard keeps for a page that resumes: the alerts and exit recommendations (the rest is caught up)."""

CatchUp = Callable[[], Iterable[tuple[str, Any]]]
"""What a resuming page gets after the kept events: (event, data) pairs, sent without an id."""


def encoded_data(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


class Hub:
    """``kept``: the events kept for resuming pages (None: every event)."""

    def __init__(
        self,
        history: int = HISTORY,
        queue_limit: int = QUEUE_LIMIT,
        *,
        history_bytes: int = HISTORY_BYTES,
        kept: frozenset[str] | None = None,
    ) -> None:
        self.boot = secrets.token_hex(4)
        self.sequence = 0
        self.history: deque[tuple[int, bytes]] = deque()
        self.history_limit = history
        self.history_bytes_limit = history_bytes
        self.history_bytes = 0
        self.forgotten = 0  # the newest kept event dropped from the history (0: none)
        self.kept = kept
        self.queues: set[asyncio.Queue[bytes]] = set()
        self.queue_limit = queue_limit
        self.published = 0
        self.unchanged = 0  # publications left out as the same as the last of their event
        self.dropped_pages = 0
        self._last_compared: dict[str, str] = {}

    @property
    def last_id(self) -> str:
        return f"{self.boot}-{self.sequence}"

    def publish(self, event: str, data: Any) -> None:
        self.sequence += 1
        encoded = f"id: {self.last_id}\nevent: {event}\ndata: {encoded_data(data)}\n\n".encode()
        if self.kept is None or event in self.kept:
            self._keep(encoded)
        self.published += 1
        for queue in list(self.queues):
            if queue.qsize() >= self.queue_limit:  # a page that cannot keep up starts again from a snapshot
                self.dropped_pages += 1
                self._replace_with_reset(queue)
            else:
                queue.put_nowait(encoded)

    def publish_changed(self, event: str, data: Any, compared: Any) -> bool:
        """Publish ``data`` unless ``compared`` (``data`` without what the page does not read) is the same as the
        last published one's of ``event``; True when published."""
        text = encoded_data(compared)
        if self._last_compared.get(event) == text:
            self.unchanged += 1
            return False
        self._last_compared[event] = text
        self.publish(event, data)
        return True

    def _keep(self, encoded: bytes) -> None:
        self.history.append((self.sequence, encoded))
        self.history_bytes += len(encoded)
        while len(self.history) > self.history_limit or (
            self.history_bytes > self.history_bytes_limit and len(self.history) > 1
        ):
            sequence, dropped = self.history.popleft()
            self.history_bytes -= len(dropped)
            self.forgotten = sequence

    @staticmethod
    def _replace_with_reset(queue: asyncio.Queue[bytes]) -> None:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(RESET)

    def subscribe(self, after: str | None, catch_up: CatchUp | None = None) -> asyncio.Queue[bytes]:
        """A queue for one page, holding first the kept events after ``after`` (an id of this run) and, when any
        event came after it, ``catch_up()``'s events; or a reset when a kept event after it is gone (or ``after`` is
        not of this run). With ``after`` None, only the events from now on."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        if after is not None:
            boot, _, number = after.partition("-")
            foreign = boot != self.boot or not number.isdigit() or int(number) > self.sequence
            if foreign or int(number) < self.forgotten:  # another run's id, or its next kept events are gone
                queue.put_nowait(RESET)
            else:
                for sequence, encoded in self.history:
                    if sequence > int(number):
                        queue.put_nowait(encoded)
                if catch_up is not None and int(number) < self.sequence:
                    for event, data in catch_up():
                        queue.put_nowait(f"event: {event}\ndata: {encoded_data(data)}\n\n".encode())
        self.queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes]) -> None:
        self.queues.discard(queue)
