"""Dead letters: entries their reader cannot handle, copied to ``<stream>:dead`` with the reason.

A dead letter (``XRANGE orderflow:md:{AAPL}:dead - +``) holds the original ``entry_id``, its ``field`` (the type it
claimed), a ``code`` (``wire_undecodable``, ``wrong_type``, ``handler_failed``…), the ``reason``, the ``payload`` and,
when known, the ``reader`` (a consumer group). At most about 10,000 are kept per stream.
"""

from __future__ import annotations

from redis.typing import EncodableT, FieldT

from orderflow_client import logs, metrics
from orderflow_client.bus.calls import RedisCalls
from orderflow_client.bus.streams import BusEntry, as_text

log = logs.get_logger(__name__)

DEAD_LETTERS_KEPT = 10_000
"""About how many dead letters each ``<stream>:dead`` keeps (MAXLEN ~)."""


class DeadLetters(RedisCalls):
    """Parking entries that cannot be handled, so they never stall a reader."""

    async def dead_letter(self, entry: BusEntry, code: str, reason: str, *, reader: str = "", source: str = "") -> str:
        """Move a copy of ``entry``, which its reader cannot handle, to ``<stream>:dead`` with the reason (the
        caller acknowledges the original); counted and logged. Returns the entry id."""
        entry_id = as_text(entry.entry_id)
        fields: dict[FieldT, EncodableT] = {
            "entry_id": entry_id,
            "field": entry.field,
            "code": code,
            "reason": reason[:500],
            "payload": entry.payload,
        }
        if reader:
            fields["reader"] = reader
        async with self.calling("dead_letter"):
            await self.client.xadd(
                self.keys.dead_letters(entry.stream), fields, maxlen=DEAD_LETTERS_KEPT, approximate=True
            )
        metrics.DEAD_LETTERS.labels(code=code).inc()
        log.error(
            "order_flow.entry_dead_lettered",
            code=code,
            stream=entry.stream,
            entry_id=entry_id,
            reason=reason[:200],
            **({"source": source} if source else {}),
        )
        return entry_id
