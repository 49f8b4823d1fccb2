"""Publishing an output at most once (the detector's alerts, exits and statuses), by its deterministic id.

One Lua call (:data:`~orderflow_client.bus.scripts.PUBLISH_ONCE_LUA`) does ``SET NX EX`` on
``orderflow:published:<output id>`` and only then XADD (and PUBLISH, for an exit), so an entry delivered twice (a
crash before the ack, a reclaim) never yields a second alert.
"""

from __future__ import annotations

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.scripts import PUBLISH_ONCE_LUA


class PublishOnce:
    """Publishing by output id, once per ``remember_seconds``."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._script = bus.client.register_script(PUBLISH_ONCE_LUA)  # no round trip: EVALSHA loads it when needed

    async def publish(
        self, output_id: str, stream: str, tag: str, payload: bytes, *, channel: str = "", remember_seconds: int
    ) -> bool:
        """Append ``payload`` (a wire message of type ``tag``) to ``stream``, and publish it on ``channel`` when one
        is given, unless ``output_id`` was published in the last ``remember_seconds``. True when published now."""
        async with self.bus.calling("publish_once"):
            result = await self._script(
                keys=[self.bus.keys.published(output_id), stream], args=[remember_seconds, tag, payload, channel]
            )
        return bool(result)
