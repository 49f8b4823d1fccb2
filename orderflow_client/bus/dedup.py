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
        self,
        output_id: str,
        stream: str,
        tag: str,
        payload: bytes,
        *,
        channel: str = "",
        remember_seconds: int,
        fence: tuple[str, str] | None = None,
    ) -> int:
        """Append ``payload`` (a wire message of type ``tag``) to ``stream``, and publish it on ``channel`` when one
        is given, unless ``output_id`` was published in the last ``remember_seconds``. ``fence``: ``(lease key,
        value held)`` — publish only while that lease holds that value (:mod:`orderflow_client.bus.leases`).
        Returns :data:`PUBLISHED`, :data:`ALREADY_PUBLISHED` or :data:`FENCED`."""
        keys = [self.bus.keys.published(output_id), stream]
        args: list[str | int | bytes] = [remember_seconds, tag, payload, channel]
        if fence is not None:
            keys.append(fence[0])
            args.append(fence[1])
        async with self.bus.calling("publish_once"):
            return int(await self._script(keys=keys, args=args))


PUBLISHED, ALREADY_PUBLISHED, FENCED = 1, 0, -1
"""What :meth:`PublishOnce.publish` did: published now; published before (a redelivery); refused, the lease named
being no longer held (a paused owner waking up)."""
