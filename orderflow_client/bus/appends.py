"""Appending to streams: publish messages and market events, each stream's batch in one script call, exactly once.

A batch is one pipeline of script calls, one a stream (:data:`~orderflow_client.bus.scripts.APPEND_BATCH_LUA`).
A try can fail after some masters took their part: a cluster master failing over refuses its streams, or the whole
pipeline raises when one master stays unreachable past redis-py's retries. Every stream not known to be appended is
tried again for up to :data:`APPEND_RETRY_SECONDS`, and a stream whose batch an earlier try appended (its reply
lost) is recognised by its last entry, so nothing is appended twice (a test kills a cluster master under a
replay)::

    ids = await bus.publish([(bus.keys.market("AAPL"), trade)])   # ['1718890000123-0']
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from orderflow_client import logs
from orderflow_client.bus.calls import FAILOVER_ERRORS, RedisCalls, refused_credentials
from orderflow_client.bus.entries import pack_market_events
from orderflow_client.bus.keys import Keys
from orderflow_client.bus.scripts import APPEND_BATCH_LUA, APPEND_FENCED_LUA
from orderflow_client.bus.streams import as_text
from orderflow_client.wire import MarketEvent, WireMessage, encode

log = logs.get_logger(__name__)

APPEND_RETRY_SECONDS = 15.0
"""How long an append retries the streams a failing-over cluster slot (or a master without the scripts, or one
unreachable) refused, before the failure is raised (the services then wait the outage out)."""


def _passing(error: Exception) -> bool:
    """Whether a stream's error passes with a try again (a master without the scripts, or failing over): not refused
    credentials, nor a lasting cluster error."""
    return isinstance(error, (NoScriptError, *FAILOVER_ERRORS)) and not refused_credentials(error)


class Appends(RedisCalls):
    """Appending to streams (plain or under a lease) and deleting them."""

    def __init__(self, client: redis.Redis | RedisCluster, keys: Keys, **options: Any) -> None:
        super().__init__(client, keys, **options)  # (the options of RedisCalls)
        self._scripts_loaded = False  # a cluster's masters get the append scripts at this process's first append
        self._append_batch = client.register_script(APPEND_BATCH_LUA)
        self._append_fenced = client.register_script(APPEND_FENCED_LUA)

    async def publish(self, entries: Sequence[tuple[str, WireMessage]]) -> list[str]:
        """XADD each ``(stream, message)`` in one pipeline, trimming every
        stream with ``MAXLEN ~ stream_max_length``. Returns the entry ids.

        On failure after all retries raises :class:`~orderflow_client.errors.BusUnavailableError` with
        ``unpublished`` = ``entries``; publishing the same entries again appends only the streams' batches that
        were not appended (see the module's docstring). So a batch whose last entry is byte for byte the stream's
        last entry is taken as appended already, by design: give a message meant to be appended again a new
        timestamp.
        """
        return await self.publish_encoded([(stream, _tag(message), encode(message)) for stream, message in entries])

    async def publish_market_events(self, entries: Sequence[tuple[str, MarketEvent]]) -> list[str]:
        """Publish market events on their streams, each stream's packed into entries of up to
        ``EVENTS_PER_ENTRY`` (:mod:`orderflow_client.bus.entries`). Returns the entry ids, one per entry written
        (fewer than events). Failures as :meth:`publish`."""
        return await self.publish_encoded(pack_market_events(entries))

    async def publish_market_events_fenced(
        self, entries: Sequence[tuple[str, MarketEvent]], fences: Mapping[str, tuple[str, str]]
    ) -> set[str]:
        """:meth:`publish_market_events` with each stream's entries appended only while ``fences[stream]`` =
        ``(lease key, value held)`` holds (:data:`~orderflow_client.bus.scripts.APPEND_FENCED_LUA`); the streams
        refused (their lease is another's now), whose events were not appended."""
        _ids, refused = await self._append(pack_market_events(entries), fences)
        return refused

    async def publish_encoded(self, entries: Sequence[tuple[str, bytes, bytes]]) -> list[str]:
        """:meth:`publish` for already encoded ``(stream, type tag, payload)``.

        Each stream's entries go in one script call, in their order; all calls go
        in one pipeline. Returned ids follow the order of ``entries``.
        """
        ids, _refused = await self._append(entries, {})
        return ids

    async def delete_streams(self, streams: Sequence[str]) -> int:
        """DEL whole streams (the demo starts its scenarios' streams afresh); returns how many existed."""
        if not streams:
            return 0
        async with self.calling("delete_streams"):
            return int(await self.client.delete(*streams))

    async def _append(
        self, entries: Sequence[tuple[str, bytes, bytes]], fences: Mapping[str, tuple[str, str]]
    ) -> tuple[list[str], set[str]]:
        """Append ``entries`` (a script call a stream, fenced where ``fences`` names the stream's lease): the ids in
        the order of ``entries`` (``""`` where refused) and the streams refused."""
        if not entries:
            return [], set()
        per_stream: dict[str, list[Any]] = {}
        positions: dict[str, list[int]] = {}
        for index, (stream, tag, payload) in enumerate(entries):
            arguments = per_stream.get(stream)
            if arguments is None:
                arguments = per_stream[stream] = [self.stream_max_length]
                positions[stream] = []
            arguments.append(tag)
            arguments.append(payload)
            positions[stream].append(index)
        replies: dict[str, Any] = {}
        async with self.calling("publish", unpublished=list(entries)):
            waiting, loop = list(per_stream), asyncio.get_running_loop()
            deadline, pause = loop.time() + APPEND_RETRY_SECONDS, 0.05
            loaded = False  # the scripts loaded during this append: a NOSCRIPT after it waits a pause
            while waiting:
                try:
                    async with self.client.pipeline(transaction=False) as pipe:
                        for stream in waiting:
                            arguments, fence = per_stream[stream], fences.get(stream)
                            # redis-py's stubs omit pipelines, which the script call takes (it queues EVALSHA)
                            if fence is None:
                                await self._append_batch(keys=[stream], args=arguments, client=pipe)  # type: ignore[arg-type]
                            else:
                                fenced = [arguments[0], fence[1], *arguments[1:]]
                                await self._append_fenced(keys=[stream, fence[0]], args=fenced, client=pipe)  # type: ignore[arg-type]
                        results = await pipe.execute(raise_on_error=False)
                except FAILOVER_ERRORS as error:  # the whole pipeline failed: a master unreachable past the retries
                    one_server = not self.keys.cluster  # (down: an outage, not a failover)
                    if one_server or refused_credentials(error) or loop.time() > deadline:
                        raise
                    results = [error] * len(waiting)  # every stream goes again: one appended already is recognised
                replies.update(zip(waiting, results, strict=True))
                failed = [stream for stream in waiting if isinstance(replies[stream], Exception)]
                lasting = [error for error in (replies[stream] for stream in failed) if not _passing(error)]
                if lasting or (failed and loop.time() > deadline):
                    raise (lasting or [replies[failed[0]]])[0]
                # Only the streams that failed go again: a master without the scripts (a first append, Redis
                # restarted, a replica promoted), one failing over, or one that did not answer (given time first)
                reload = any(isinstance(replies[stream], NoScriptError) for stream in failed)
                wait = (reload and loaded) or any(not isinstance(replies[stream], NoScriptError) for stream in failed)
                if reload:
                    if not loaded and (self._scripts_loaded or not self.keys.cluster):  # (a cluster's first: expected)
                        log.warning("order_flow.bus_scripts_reloaded", detail="Redis lost its scripts (restarted?)")
                    self._scripts_loaded = loaded = True
                    if self.keys.cluster:  # on every master (a single server's pipeline loads them itself)
                        try:
                            await self.client.script_load(APPEND_BATCH_LUA)
                            await self.client.script_load(APPEND_FENCED_LUA)
                        except FAILOVER_ERRORS:
                            wait = True  # a master not answering: the next try after a pause
                if wait:
                    await asyncio.sleep(pause)
                    pause = min(2 * pause, 1.0)
                waiting = failed
        self.masters_changed()
        ids: list[str] = [""] * len(entries)
        refused: set[str] = set()
        for stream, reply in replies.items():
            if reply == -1:
                refused.add(stream)
                continue
            for index, entry_id in zip(positions[stream], reply, strict=False):
                ids[index] = as_text(entry_id)
        return ids, refused


def _tag(message: WireMessage) -> bytes:
    return type(message).__struct_config__.tag.encode()  # type: ignore[union-attr]
