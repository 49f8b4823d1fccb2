"""The bus's ``read_after`` with ``block_ms`` on the embedded bus (fakeredis answers XREAD BLOCK in asyncio, woken by
an append of another client of the same in-process server)."""

from __future__ import annotations

import uuid

from orderflow_client.bus.connection import Bus
from tests.support.blocking_reads import check_blocking_read_after


async def test_a_blocking_read_after_waits_wakes_and_returns_what_is_there_on_the_embedded_bus():
    bus = await Bus.connect(None, prefix=f"after-{uuid.uuid4().hex[:8]}")
    try:
        await check_blocking_read_after(bus, [bus.keys.market(symbol) for symbol in ("AAPL", "MSFT", "TSLA")])
    finally:
        await bus.close()
