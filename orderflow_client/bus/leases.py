"""Leases in Redis: which process owns a symbol, renewed while it lives, fenced so a paused owner cannot act on one
it lost; and the members of a kind of process (detectors, ingests) that are alive.

A lease is ``orderflow:lease:<kind>:<SYM>`` (see :meth:`~orderflow_client.bus.keys.Keys.lease` for where each kind's
lies on a cluster), its value the holder's
name and a fencing token, ``detector-a#17``: the token comes from one counter (``…:lease-tokens``), so a later
holder always has a larger one. It expires after its time unless renewed. A publish names the lease value it holds
(:class:`~orderflow_client.bus.dedup.PublishOnce`): Redis refuses the publish when the lease holds another value,
atomically, so a holder that was paused past its lease (a stop, a long GC, a network partition) publishes nothing
when it wakes. Members are a sorted set ``…:members:<kind>`` of names scored by their last heartbeat (Redis's own
clock, ms). A detector's leases share the outputs' hash slot, an ingest's its stream's: one script checks a lease
and writes.

    leases = Leases(bus)
    held = await leases.acquire("detector", "AAPL", "detector-a", ttl_ms=5000)   # "detector-a#17", or another's
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError

from orderflow_client.bus.calls import RedisCalls
from orderflow_client.bus.streams import as_text

ACQUIRE_LUA = """
local held = redis.call('GET', KEYS[1])
if held then
  local holder = string.match(held, '^(.*)#%d+$')
  if holder ~= ARGV[1] then return held end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return held
end
local value = ARGV[1] .. '#' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
"""
"""KEYS = lease, token counter; ARGV = holder name, ttl (ms). Takes a free lease with a new token, keeps (and renews)
one this name holds already (a restarted process of the same name), else returns the other holder's value."""

RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
"""KEYS = lease; ARGV = the value held, ttl (ms). 1 when renewed, 0 when the lease is no longer that value."""

RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""KEYS = lease; ARGV = the value held. Deletes it only if still held with that value."""

HEARTBEAT_LUA = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[2]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
"""KEYS = members; ARGV = name, ttl (ms). Records the member's heartbeat on Redis's clock, forgets members silent for
longer than ttl, and returns the members alive (names, sorted)."""


class Leases:
    """Leases and members on a bus (see the module docstring)."""

    def __init__(self, calls: RedisCalls) -> None:
        self.calls = calls
        self.keys = calls.keys
        client = calls.client
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._renew = client.register_script(RENEW_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._heartbeat = client.register_script(HEARTBEAT_LUA)

    async def acquire(self, kind: str, symbol: str, holder: str, *, ttl_ms: int) -> str:
        """The lease's value after trying to take it for ``holder``: ``"<holder>#<token>"`` when it is now
        ``holder``'s, else the other holder's value."""
        async with self.calls.calling("acquire_lease"):
            value = await self._acquire(
                keys=[self.keys.lease(kind, symbol), self.keys.lease_tokens(kind, symbol)], args=[holder, ttl_ms]
            )
        return value.decode() if isinstance(value, bytes) else str(value)

    async def renew(self, kind: str, held: dict[str, str], *, ttl_ms: int) -> dict[str, bool]:
        """Extend each lease of ``held`` (symbol → the value held) by ``ttl_ms``, in one round trip (a pipeline:
        the leases share a hash slot); False for one no longer held so (lost)."""
        if not held:
            return {}
        async with self.calls.calling("renew_leases"):
            for attempt in (1, 2):
                try:
                    pipeline = self.calls.client.pipeline(transaction=False)
                    for symbol, value in held.items():
                        lease = [self.keys.lease(kind, symbol)]
                        # redis-py's stubs omit pipelines, which the script call takes (it queues EVALSHA)
                        await self._renew(keys=lease, args=[value, ttl_ms], client=pipeline)  # type: ignore[arg-type]
                    replies = await pipeline.execute()
                    break
                except NoScriptError:  # a cluster's pipeline does not load scripts (nor a restarted Redis hold them)
                    if attempt == 2:
                        raise
                    await self.calls.client.script_load(RENEW_LUA)
        return {symbol: bool(reply) for symbol, reply in zip(held, replies, strict=True)}

    async def release(self, kind: str, symbol: str, value: str) -> bool:
        """Give the lease up if still held as ``value``."""
        async with self.calls.calling("release_lease"):
            return bool(await self._release(keys=[self.keys.lease(kind, symbol)], args=[value]))

    async def holders(self, kind: str, symbols: list[str]) -> dict[str, str]:
        """Each symbol's lease value now (``""``: nobody holds it), in one round trip (a pipeline: on a cluster
        ingest's leases lie in their symbols' slots)."""
        if not symbols:
            return {}
        async with self.calls.calling("lease_holders"):
            pipeline = self.calls.client.pipeline(transaction=False)
            for symbol in symbols:
                pipeline.get(self.keys.lease(kind, symbol))
            values = await pipeline.execute()
        return {
            symbol: (value.decode() if isinstance(value, bytes) else value or "")
            for symbol, value in zip(symbols, values, strict=True)
        }

    async def heartbeat(self, kind: str, name: str, *, ttl_ms: int) -> list[str]:
        """Say ``name`` is alive; the members of ``kind`` alive now (heard from within ``ttl_ms``), sorted."""
        async with self.calls.calling("member_heartbeat"):
            members = await self._heartbeat(keys=[self.keys.members(kind)], args=[name, ttl_ms])
        return [member.decode() if isinstance(member, bytes) else str(member) for member in members]

    async def members_seen(self, kind: str) -> dict[str, float]:
        """Every member of ``kind`` still listed, with the seconds since its last heartbeat (Redis's clock), e.g.
        ``{"detector-a": 0.4, "detector-b": 7.9}``; one past the lease time is dead (dropped at the next heartbeat)."""
        async with self.calls.calling("members_seen"):
            clock: tuple[int, int] = await self.calls.client.time()  # (s, µs) since the epoch, Redis's
            members: list[Any] = await self.calls.client.zrange(self.keys.members(kind), 0, -1, withscores=True)
        now_ms = clock[0] * 1000 + clock[1] // 1000
        return {as_text(name): round((now_ms - float(score)) / 1000, 3) for name, score in members}

    async def leave(self, kind: str, name: str) -> None:
        """``name`` stops (a clean stop: the others need not wait for its heartbeat to age out)."""
        async with self.calls.calling("member_leave"):
            await self.calls.client.zrem(self.keys.members(kind), name)


def holder_of(value: str) -> str:
    """The holder's name in a lease value: ``"detector-a#17"`` → ``"detector-a"`` (``""`` for no lease)."""
    return value.rpartition("#")[0]
