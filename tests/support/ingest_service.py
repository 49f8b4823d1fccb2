"""Live ingest in a test: an ``IngestService`` running as a task of the test's loop, stopped (and awaited) on exit::

async with RunningIngest(IngestService(config, bus, api_key=KEY)) as service:
    await wait_for_async(lambda: has_trades(bus, "AAA"), what="first trades")
"""

from __future__ import annotations

import asyncio

from services.ingest.service import IngestService


class RunningIngest:
    """An IngestService running as a task, stopped on exit (15 s at most, else the test fails)."""

    def __init__(self, service: IngestService) -> None:
        self.service, self.stop = service, asyncio.Event()

    async def __aenter__(self) -> IngestService:
        self.task = asyncio.ensure_future(self.service.run(self.stop))
        return self.service

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=15)
