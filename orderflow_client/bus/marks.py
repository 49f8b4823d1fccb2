"""A bot's marks on the exit recommendations it handles: ``orderflow:riskmanager:<bot>:handled:<id>``.

The value says where a recommendation (or, for a market-scope one, one position of it: ``<id>@<symbol>``) stands
for that bot name: a process's lease ``working:<hex>`` while its handler runs (``SET NX``, expiring, so a crashed
process's lease lapses; :meth:`HandledMarks.kept` renews it while the handler runs, however long), then ``done``
or ``parked``, kept for ``remember_seconds`` so it is never handled again. Only GET, SET and DEL, and a WATCH/MULTI/EXEC
transaction to renew a lease: the bot's Redis user runs no scripts (shared/acl.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Literal

from redis.exceptions import RedisError, WatchError

from orderflow_client import logs
from orderflow_client.bus.calls import OUTAGE_ERRORS
from orderflow_client.bus.connection import Bus
from orderflow_client.errors import BusUnavailableError, OrderflowError

log = logs.get_logger(__name__)

RENEW_TRIES = 3
"""How many times a lease renewal is tried when the connection drops while its key is watched."""


class HandledMarks:
    """The handled marks of one bot name."""

    def __init__(self, bus: Bus, bot_name: str) -> None:
        self.bus = bus
        self.bot_name = bot_name

    def key(self, recommendation_id: str) -> str:
        return self.bus.keys.handled(self.bot_name, recommendation_id)

    async def take_lease(self, recommendation_id: str, lease: bytes, seconds: int) -> bool:
        """SET NX EX: True when this process now holds the recommendation (no lease or mark was there)."""
        async with self.bus.calling("take_lease"):
            return bool(await self.bus.client.set(self.key(recommendation_id), lease, nx=True, ex=seconds))

    async def holder(self, recommendation_id: str) -> bytes | None:
        """What the mark holds: another process's lease, ``b"done"``, ``b"parked"``; None when none (lapsed)."""
        async with self.bus.calling("lease_holder"):
            value = await self.bus.client.get(self.key(recommendation_id))
        return value if value is None or isinstance(value, bytes) else value.encode()

    async def renew(self, recommendation_id: str, lease: bytes, seconds: int) -> bool:
        """Extend this process's lease to ``seconds`` from now, only while it is still ``lease``: WATCH, GET, then
        SET XX EX in MULTI/EXEC, so a lease that lapsed and was taken by another process between the GET and the SET
        is never overwritten (EXEC refuses it). False when it is no longer held so (lapsed, taken, or marked).

        redis-py reports a connection dropped while the key is watched as a changed key (WatchError): the key is then
        read again, and the renewal tried again while it still holds ``lease``; :class:`BusUnavailableError` after
        :data:`RENEW_TRIES` such drops (the keeper tries again at its next turn)."""
        key = self.key(recommendation_id)
        for _ in range(RENEW_TRIES):
            async with self.bus.calling("renew_lease"), self.bus.client.pipeline(transaction=True) as transaction:
                try:
                    await transaction.watch(key)
                    held = await transaction.get(key)
                    if (held.encode() if isinstance(held, str) else held) != lease:
                        return False
                    transaction.multi()
                    transaction.set(key, lease, xx=True, ex=seconds)
                    [renewed] = await transaction.execute()
                    return bool(renewed)
                except WatchError:
                    pass  # the key changed after the GET, or the connection dropped while it was watched
            if await self.holder(recommendation_id) != lease:
                return False  # another process's now, or marked
        log.warning(
            "order_flow.exit_lease_renewal_failed",
            code="connection_dropped",
            id=recommendation_id,
            bot=self.bot_name,
            reason=f"the connection dropped {RENEW_TRIES} times while the lease's key was watched",
            source="risk_manager",
        )
        raise BusUnavailableError(
            f"renewing the lease on {recommendation_id}: the connection dropped {RENEW_TRIES} times"
        )

    @contextlib.asynccontextmanager
    async def kept(self, recommendation_ids: Sequence[str], lease: bytes, seconds: int) -> AsyncIterator[None]:
        """Renews this process's leases at ``recommendation_ids`` every third of ``seconds`` while the block runs
        (a handler that takes longer than the lease: a broker call of 60 s), so no other process of the bot takes
        them over meanwhile. A lease found lost is logged (``order_flow.exit_lease_lost``); an outage is waited out
        by the next renewal."""

        async def keep() -> None:
            lost: set[str] = set()
            while True:
                await asyncio.sleep(seconds / 3)
                for identifier in (identifier for identifier in recommendation_ids if identifier not in lost):
                    try:
                        held = await self.renew(identifier, lease, seconds)
                    except OUTAGE_ERRORS:
                        continue  # the client's run reports the outage; the next renewal tries again
                    except (OrderflowError, RedisError) as error:  # e.g. READONLY mid-failover: try again later
                        log.warning(
                            "order_flow.exit_lease_renewal_failed",
                            code=error.code if isinstance(error, OrderflowError) else "command_refused",
                            id=identifier,
                            bot=self.bot_name,
                            reason=str(error),
                            source="risk_manager",
                        )
                        continue
                    if not held:
                        lost.add(identifier)
                        log.warning(
                            "order_flow.exit_lease_lost",
                            code="lease_lost",
                            id=identifier,
                            bot=self.bot_name,
                            source="risk_manager",
                        )

        keeper = asyncio.ensure_future(keep())
        try:
            yield
        finally:
            keeper.cancel()
            # the handler's outcome is what counts: a renewal's own failure never turns a handled recommendation into
            # a failed one (that would release it and call the handler again: a second sale)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(keeper, return_exceptions=True)

    async def release(self, recommendation_id: str, lease: bytes | None = None) -> None:
        """DEL the lease: the handler failed, the recommendation is free to be tried again. With ``lease``: only if
        the mark is still that lease (never another process's lease, nor a final mark)."""
        if lease is not None and await self.holder(recommendation_id) != lease:
            return
        async with self.bus.calling("release_lease"):
            await self.bus.client.delete(self.key(recommendation_id))

    async def finish(self, recommendation_id: str, outcome: Literal[b"done", b"parked"], seconds: int) -> None:
        """SET the final mark for ``seconds``: never handled again by this bot name."""
        async with self.bus.calling("finish_lease"):
            await self.bus.client.set(self.key(recommendation_id), outcome, ex=seconds)
