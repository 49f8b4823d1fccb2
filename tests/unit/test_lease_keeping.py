"""A handler's lease kept while it runs (``HandledMarks.kept``): a renewal that Redis refuses never turns a handled
recommendation into a failed one (which would release it and call the handler again: a second sale)."""

from __future__ import annotations

import asyncio
import uuid

from redis.exceptions import ResponseError
from structlog.testing import capture_logs

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.marks import HandledMarks


async def test_a_refused_renewal_is_logged_and_the_handler_s_block_ends_normally(monkeypatch):
    bus = await Bus.connect(None, prefix=f"keep-{uuid.uuid4().hex[:8]}")
    marks = HandledMarks(bus, "bot")
    renewals: list[str] = []

    async def refused(self: HandledMarks, recommendation_id: str, lease: bytes, seconds: int) -> bool:
        renewals.append(recommendation_id)
        raise ResponseError("READONLY You can't write against a read only replica.")

    monkeypatch.setattr(HandledMarks, "renew", refused)
    try:
        assert await marks.take_lease("AAPL:exit:1", b"lease-1", 30)
        finished = False
        with capture_logs() as logged:
            async with marks.kept(["AAPL:exit:1"], b"lease-1", 1):  # renewals every 1/3 s
                await asyncio.sleep(0.8)  # the broker call: two renewals refused meanwhile
                finished = True
        assert finished and len(renewals) == 2  # the keeper went on after the first refusal
        failed = [line for line in logged if line["event"] == "order_flow.exit_lease_renewal_failed"]
        assert [(line["code"], line["id"]) for line in failed] == [("command_refused", "AAPL:exit:1")] * 2
        assert await marks.holder("AAPL:exit:1") == b"lease-1"  # nothing released by the refusal
    finally:
        await bus.close()
