"""Publishing an output at most once (the detector's alerts, exits and statuses), by its deterministic id, and
confirmed on a replica.

One Lua call (:data:`~orderflow_client.bus.scripts.PUBLISH_ONCE_LUA`) does ``SET NX EX`` on
``orderflow:published:<output id>`` and only then XADD (and PUBLISH, for an exit), so an entry delivered twice (a
crash before the ack, a reclaim) never yields a second alert.

Redis replicates asynchronously: an output written in the last moment before its master dies may never reach the
replica promoted in its place. When the output's master has a replica (its ``ROLE`` says so), the
publish is followed, on the same connection, by ``WAIT 1`` (:data:`CONFIRM_MILLISECONDS` at most). An output not
confirmed in time is kept (``order_flow.output_unconfirmed``) and published again by :meth:`PublishOnce.confirm`
(each second, by the detector) until a replica has it: if its master died with it, the new master gets it
(``order_flow.output_republished``); if not, the publish-once mark answers and nothing is written twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoPermissionError, NoScriptError

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.scripts import PUBLISH_ONCE_LUA

CONFIRM_MILLISECONDS = 50
"""How long a publish waits for a replica to acknowledge it (``WAIT``'s timeout) before the output is kept to be
published again: the cost of a dead replica to each output's latency, never to its delivery."""

REPLICAS_ASKED_SECONDS = 10.0
"""How often a master is asked how many replicas it has (one ``ROLE``): a replica added or lost is
noticed within this, a failover at once (a new master is asked first)."""

log = logs.get_logger(__name__)


@dataclass(frozen=True)
class _Publish:
    """One publish, as :meth:`PublishOnce.publish` was called: what :meth:`PublishOnce.confirm` sends again."""

    output_id: str
    keys: list[str]
    args: list[str | int | bytes]


class PublishOnce:
    """Publishing by output id, once per ``remember_seconds``, confirmed on a replica where there is one."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._script = bus.client.register_script(PUBLISH_ONCE_LUA)  # no round trip: EVALSHA loads it when needed
        self._replica_counts: dict[str, tuple[int, float]] = {}  # master ("" single) → (replicas, monotonic when)
        self.unconfirmed: dict[str, _Publish] = {}  # output id → its publish, not yet on a replica

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
        call = _Publish(output_id, keys, args)
        result, confirmed = await self._send(call)
        if result == PUBLISHED and not confirmed:
            self._keep(call)
        return result

    async def confirm(self) -> None:
        """Publish again every output a replica had not acknowledged (see the module docstring), once each."""
        for call in list(self.unconfirmed.values()):
            result, confirmed = await self._send(call)
            if result == FENCED:  # the symbol is another detector's now: it is no longer this one's to deliver
                del self.unconfirmed[call.output_id]
                log.warning("order_flow.output_unconfirmed", output_id=call.output_id, detail="lease lost: given up")
                continue
            if result == PUBLISHED:  # its master had lost it (a failover): written again, to the new one
                log.warning("order_flow.output_republished", output_id=call.output_id, stream=call.keys[1])
            if confirmed:
                del self.unconfirmed[call.output_id]
                log.info("order_flow.output_confirmed", output_id=call.output_id)

    def _keep(self, call: _Publish) -> None:
        if call.output_id not in self.unconfirmed:
            log.warning(
                "order_flow.output_unconfirmed",
                output_id=call.output_id,
                detail=f"no replica acknowledged it within {CONFIRM_MILLISECONDS} ms: kept, published again",
            )
        self.unconfirmed[call.output_id] = call

    async def _send(self, call: _Publish) -> tuple[int, bool]:
        """The script's result, and whether a replica acknowledged it (True when there is no replica to ask)."""
        if not await self._replicas(call.keys[1]):
            async with self.bus.calling("publish_once"):
                return int(await self._script(keys=call.keys, args=call.args)), True
        for attempt in (1, 2):
            try:
                return await self._send_and_wait(call)
            except NoScriptError:  # a cluster's pipeline does not load scripts (nor a promoted replica hold them)
                if attempt == 2:
                    raise
                async with self.bus.calling("publish_once"):
                    await self.bus.client.script_load(PUBLISH_ONCE_LUA)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _send_and_wait(self, call: _Publish) -> tuple[int, bool]:
        """The script and ``WAIT 1`` in one pipeline: one connection, so WAIT waits for this publish's writes."""
        pipeline: Any = self.bus.client.pipeline(transaction=False)
        master = self._master_of(call.keys[1])  # a cluster's: the WAIT goes where the script goes
        async with self.bus.calling("publish_once"):
            await self._script(keys=call.keys, args=call.args, client=pipeline)
            pipeline.execute_command(
                "WAIT", 1, CONFIRM_MILLISECONDS, **({} if master is None else {"target_nodes": master})
            )
            result, acknowledged = await pipeline.execute()
        return int(result), int(acknowledged) >= 1

    def _master_of(self, stream: str) -> Any:
        """On a cluster, the node (redis-py's) of ``stream``'s master by the client's slot map; else None."""
        client: Any = self.bus.client
        return client.get_node_from_key(stream) if self.bus.keys.cluster else None

    async def _replicas(self, stream: str) -> int:
        """How many replicas the master of ``stream`` has (``ROLE``), asked again every
        :data:`REPLICAS_ASKED_SECONDS` or when the master changes (0 embedded, or when the ACL user may not ask)."""
        if self.bus.embedded:
            return 0
        node = self._master_of(stream)
        master = "" if node is None else node.name
        known = self._replica_counts.get(master)
        if known is not None and time.monotonic() - known[1] < REPLICAS_ASKED_SECONDS:
            return known[0]
        client: Any = self.bus.client  # redis-py's single-server stubs have no target_nodes
        try:
            async with self.bus.calling("publish_once"):
                role: Any = await (
                    client.execute_command("ROLE", target_nodes=node)
                    if node is not None
                    else client.execute_command("ROLE")
                )
        except NoPermissionError:
            role = []
        if node is not None and isinstance(role, dict):  # a cluster client may key the reply by node
            role = role.get(node.name, [])
        # ROLE of a master: [b"master", offset, [[host, port, offset], …]], one entry per connected replica
        count = len(role[2]) if len(role) > 2 and role[0] in (b"master", "master") else 0
        self._replica_counts[master] = (count, time.monotonic())
        return count


PUBLISHED, ALREADY_PUBLISHED, FENCED = 1, 0, -1
"""What :meth:`PublishOnce.publish` did: published now; published before (a redelivery); refused, the lease named
being no longer held (a paused owner waking up)."""
