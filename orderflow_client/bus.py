"""The Redis Streams bus both services use (redis.asyncio).

Layout (design.md §5; prefix ``orderflow`` by default):

=============================== ================================================
``orderflow:md:{AAPL}``         per-symbol market stream: trades, quotes, book
                                updates, feed status, in arrival order (the
                                braces are a Redis Cluster hash tag)
``orderflow:alerts``            every OrderFlowAlert (durable stream)
``orderflow:exits``             every ExitRecommendation (durable stream)
``orderflow:exit-signals``      pub/sub channel the risk manager subscribes to
``orderflow:status``            FeedStatus events (feed and monitoring state)
``orderflow:positions``         position registry (hash)
=============================== ================================================

An entry has one field: its name is the message type (``trade``, ``quote``,
``book``, ``status``, ``alert``, ``exit``) and its value the msgpack payload,
so ``redis-cli XRANGE`` shows what each entry is without decoding, at no
cost on the read path (a second header field cost 25% of consume speed).

Connection errors are retried by redis-py with exponential backoff and
jitter; when the retries run out a :class:`BusUnavailableError` carries what
was not published, so nothing is dropped silently. With no ``REDIS_URL``
the same API runs on an in-process fakeredis server (embedded mode) that
every Bus in the process shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import hiredis
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orderflow_client import logs, metrics
from orderflow_client.errors import BusAuthenticationError, BusUnavailableError, ConsumerGroupMissingError
from orderflow_client.logs import mask_url
from orderflow_client.wire import WireMessage, encode

log = logs.get_logger(__name__)

# Appends a batch to one stream in a single round trip: ARGV = max length,
# then (type tag, payload) pairs; the tag is the entry's one field name. One reply per stream instead of one per
# entry is what lets a Python publisher pass 150,000 entries/s.
_APPEND_BATCH_LUA = """
local ids = {}
for i = 2, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[i], ARGV[i + 1])
end
return ids
"""

# XACK for many ids passed as one space-separated argument: redis.asyncio
# packs every argument in Python, so thousands of separate ids cost more
# than the acknowledgement itself. ARGV = group, "id id id ...".
_ACK_BATCH_LUA = """
local acknowledged = 0
for entry_id in string.gmatch(ARGV[2], '%S+') do
  acknowledged = acknowledged + redis.call('XACK', KEYS[1], ARGV[1], entry_id)
end
return acknowledged
"""

_embedded_server: Any = None  # a fakeredis.FakeServer, made on first use


def embedded_server() -> Any:
    """The process-wide in-memory server of embedded mode."""
    global _embedded_server
    if _embedded_server is None:
        import fakeredis  # the embedded bus only: a bot's slim install has no fakeredis

        _embedded_server = fakeredis.FakeServer()
    return _embedded_server


@dataclass(frozen=True)
class Keys:
    """Redis key names under one prefix."""

    prefix: str = "orderflow"

    def market(self, symbol: str) -> str:
        return f"{self.prefix}:md:{{{symbol}}}"

    def symbol_of(self, market_stream: str) -> str:
        """Inverse of :meth:`market`."""
        return market_stream.rsplit("{", 1)[1].rstrip("}")

    @property
    def alerts(self) -> str:
        return f"{self.prefix}:alerts"

    @property
    def exits(self) -> str:
        return f"{self.prefix}:exits"

    @property
    def exit_channel(self) -> str:
        return f"{self.prefix}:exit-signals"

    @property
    def status(self) -> str:
        return f"{self.prefix}:status"

    def dead_letters(self, stream: str) -> str:
        """Where entries of ``stream`` that cannot be handled are moved (with the reason)."""
        return f"{stream}:dead"

    @property
    def positions(self) -> str:
        return f"{self.prefix}:positions"

    @property
    def positions_channel(self) -> str:
        return f"{self.prefix}:positions:changes"


class BusEntry(NamedTuple):
    """One stream entry as read: its stream, id, raw wire payload and field name (the message type it claims)."""

    stream: str
    entry_id: bytes
    payload: bytes
    field: bytes = b""


class _HiredisPacking:
    """Pack commands with hiredis (C) instead of redis.asyncio's per-argument
    Python loop: publishing a batch sends thousands of arguments."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if (isinstance(first, str) and " " in first) or (isinstance(first, bytes) and b" " in first):
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


class HiredisConnection(_HiredisPacking, redis.Connection):
    """TCP connection packing commands with hiredis."""


class HiredisSSLConnection(_HiredisPacking, redis.SSLConnection):
    """TLS (rediss://) connection packing commands with hiredis."""


class _FailureCount:
    """Failed calls of one client, retried or not (a read's reply may have been lost with one). Shared, not copied,
    by the copies redis-py makes of the retry policy for each connection."""

    def __init__(self) -> None:
        self.seen = 0

    def __deepcopy__(self, memo: dict) -> _FailureCount:
        return self


class _CountingRetry(Retry):
    """redis-py's retry with exponential backoff and jitter, counted in metrics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = _FailureCount()

    async def call_with_retry(self, do, fail, *args: Any, **kwargs: Any):  # type: ignore[override]
        failures = 0

        async def counted_fail(error: Exception, *rest: Any) -> Any:
            nonlocal failures
            if _refused_credentials(error):
                raise BusAuthenticationError(_credentials_message(error)) from None  # retrying cannot help
            failures += 1
            self.failures.seen += 1
            if failures <= self._retries:  # the last failure is not followed by a retry
                metrics.BUS_RETRIES.inc()
            return await fail(error, *rest)

        return await super().call_with_retry(do, counted_fail, *args, **kwargs)


_CREDENTIAL_REFUSALS = (
    "NOAUTH",
    "WRONGPASS",
    "HELLO must be called with the client already authenticated",
    "invalid username-password",
    "Authentication required",
)


def _refused_credentials(error: Exception) -> bool:
    return isinstance(error, (AuthenticationError, AuthorizationError)) or any(
        text in str(error) for text in _CREDENTIAL_REFUSALS
    )


def _credentials_message(error: Exception) -> str:
    if "WRONGPASS" in str(error) or "invalid username-password" in str(error):
        return "Redis refused the password (or user) in REDIS_URL"
    return "Redis requires a password: put it in REDIS_URL (redis://:PASSWORD@host:6379/0, or redis://USER:PASSWORD@… for an ACL user)"


class Bus:
    """Streams, groups and channels over one Redis client.

    Create with :meth:`connect`; use as ``async with await Bus.connect(...)``
    or call :meth:`close`.
    """

    def __init__(
        self, client: redis.Redis, keys: Keys, *, description: str, stream_max_length: int, embedded: bool = False
    ) -> None:
        self.client = client
        self._retry: _CountingRetry | None = None  # the client's retry policy (None: embedded), which counts failures
        # (group, consumer) whose last read may have lost its reply -> how far (per stream) its pending entries were re-read
        self._unsure_reads: dict[tuple[str, str], dict[str, str]] = {}
        self.embedded = embedded
        self.keys = keys
        self.description = description
        self.stream_max_length = stream_max_length
        self._append_batch = client.register_script(_APPEND_BATCH_LUA)
        self._ack_batch = client.register_script(_ACK_BATCH_LUA)
        # Raw XREADGROUP replies: the entries are walked once, in _entries,
        # instead of being turned into dicts by redis-py first.
        client.set_response_callback("XREADGROUP", _raw_reply)

    @classmethod
    async def connect(
        cls,
        redis_url: str | None,
        *,
        prefix: str = "orderflow",
        stream_max_length: int = 250_000,
        retries: int = 6,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 2.0,
        socket_timeout_seconds: float = 5.0,
    ) -> Bus:
        """Connect to ``redis_url`` (redis://, rediss://, with user/password),
        or to the embedded server when it is ``None``; check with PING.

        Raises :class:`BusUnavailableError` when Redis cannot be reached after
        ``retries`` attempts (about 0.05+0.1+…+2 s of backoff by default).
        """
        retry = _CountingRetry(
            ExponentialWithJitterBackoff(base=backoff_base_seconds, cap=backoff_cap_seconds), retries
        )
        if redis_url is None:
            import fakeredis

            client: redis.Redis = fakeredis.FakeAsyncRedis(server=embedded_server())
            description = "embedded (in-process fakeredis)"
        else:
            options: dict[str, Any] = {}
            if redis_url.startswith("redis://"):
                options["connection_class"] = HiredisConnection
            client = redis.Redis.from_url(
                redis_url,
                **options,
                retry=retry,
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
                socket_timeout=socket_timeout_seconds,
                socket_connect_timeout=socket_timeout_seconds,
                health_check_interval=30,
            )
            if client.connection_pool.connection_class is redis.SSLConnection:
                # from_url lets the rediss:// scheme's SSLConnection win over a connection_class
                # argument; no connection exists yet, so the pool's class can still be swapped
                client.connection_pool.connection_class = HiredisSSLConnection
            description = mask_url(redis_url)
        bus = cls(
            client,
            Keys(prefix),
            description=description,
            stream_max_length=stream_max_length,
            embedded=redis_url is None,
        )
        bus._retry = retry
        async with bus._calling("ping"):
            await client.ping()
        return bus

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _calling(self, operation: str, unpublished: list | None = None) -> AsyncIterator[None]:
        """Turn redis-py errors into the bus's typed errors, in one place."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            if _refused_credentials(error):
                raise BusAuthenticationError(_credentials_message(error)) from None
            metrics.BUS_FAILURES.labels(operation=operation).inc()
            raise BusUnavailableError(
                f"Redis at {self.description} unavailable during {operation}: {error}", unpublished
            ) from None
        except ResponseError as error:
            if str(error).startswith("NOGROUP"):
                raise ConsumerGroupMissingError(f"{operation}: {error}") from None
            raise

    # --- publishing --------------------------------------------------------------
    async def publish(self, entries: Sequence[tuple[str, WireMessage]]) -> list[str]:
        """XADD each ``(stream, message)`` in one pipeline, trimming every
        stream with ``MAXLEN ~ stream_max_length``. Returns the entry ids.

        On failure after all retries raises :class:`BusUnavailableError` with
        ``unpublished`` = ``entries`` (the pipeline may have been applied in
        part; consumers deduplicate).
        """
        return await self.publish_encoded([(stream, _tag(message), encode(message)) for stream, message in entries])

    async def publish_encoded(self, entries: Sequence[tuple[str, bytes, bytes]]) -> list[str]:
        """:meth:`publish` for already encoded ``(stream, type tag, payload)``.

        Each stream's entries go in one script call, in their order; all calls go
        in one pipeline. Returned ids follow the order of ``entries``.
        """
        if not entries:
            return []
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
        async with self._calling("publish", unpublished=list(entries)):
            for attempt in (1, 2):
                try:
                    async with self.client.pipeline(transaction=False) as pipe:
                        for stream, arguments in per_stream.items():
                            await self._append_batch(keys=[stream], args=arguments, client=pipe)
                        replies = await pipe.execute()
                    break
                except NoScriptError:
                    # Redis restarted while the pipeline was retried: its script cache is empty (the pipeline
                    # loads scripts only before the first try). Every call failed, nothing was appended: again.
                    if attempt == 2:
                        raise
                    log.warning("order_flow.bus_scripts_reloaded", detail="Redis lost its script cache (restarted?)")
        ids: list[str] = [""] * len(entries)
        for stream, reply in zip(per_stream, replies):
            for index, entry_id in zip(positions[stream], reply):
                ids[index] = as_text(entry_id)
        return ids

    async def publish_channel(self, channel: str, message: WireMessage) -> int:
        """PUBLISH on a pub/sub channel; returns the number of subscribers reached."""
        async with self._calling("publish_channel"):
            return await self.client.publish(channel, encode(message))

    # --- consumer groups ---------------------------------------------------------
    async def ensure_group(self, stream: str, group: str, start_id: str = "0") -> bool:
        """Create ``group`` on ``stream`` (and the stream) unless it exists.
        Returns True when it was created. A group created at ``0`` delivers
        the stream's backlog to its first reader."""
        async with self._calling("ensure_group"):
            try:
                await self.client.xgroup_create(stream, group, id=start_id, mkstream=True)
            except ResponseError as error:
                if str(error).startswith("BUSYGROUP"):
                    return False
                raise
        return True

    async def read_group(
        self,
        group: str,
        consumer: str,
        streams: Iterable[str],
        *,
        count: int = 1000,
        block_ms: int | None = 1000,
    ) -> list[BusEntry]:
        """XREADGROUP new entries (``>``) for ``consumer``; empty list on timeout.

        A reply lost on the way (a timeout, a dropped connection, a Redis restart: the client retries the command)
        leaves the entries Redis delivered with it pending for ``consumer``, unseen; reading on with ``>`` would
        hand over newer entries first and leave those for a reclaim, out of order. So after any failure during or
        since the last read, this consumer's pending entries (``0``: in order, the retried reply's included) are
        returned first, until there are none."""
        streams = list(streams)
        unsure = (group, consumer)
        cursor = self._unsure_reads.get(unsure)
        if cursor is not None:  # one pass over the pending entries, oldest first (some may be waiting on purpose)
            async with self._calling("read_group"):
                pending = _entries(
                    await self.client.xreadgroup(
                        group, consumer, {stream: cursor.get(stream, "0") for stream in streams}, count=count
                    )
                )
            for entry in pending:
                cursor[entry.stream] = as_text(entry.entry_id)
            pending = [entry for entry in pending if entry.payload]
            if pending:
                return pending
            del self._unsure_reads[unsure]
        failures = self._failures()
        try:
            async with self._calling("read_group"):
                response = await self.client.xreadgroup(
                    group, consumer, dict.fromkeys(streams, ">"), count=count, block=block_ms
                )
        except BusUnavailableError:
            self._unsure_reads[unsure] = {}
            raise
        if self._failures() != failures:  # retried inside the client: what the first try delivered is pending
            self._unsure_reads[unsure] = {}
            return await self.read_group(group, consumer, streams, count=count, block_ms=block_ms)
        return _entries(response)

    def _failures(self) -> int:
        return self._retry.failures.seen if self._retry is not None else 0

    async def read_own_pending(self, group: str, consumer: str, stream: str, *, count: int = 1000) -> list[BusEntry]:
        """Entries delivered to ``consumer`` and not acknowledged (XREADGROUP ``0``),
        e.g. after a crash between processing and ack. Trimmed ones are skipped."""
        async with self._calling("read_own_pending"):
            response = await self.client.xreadgroup(group, consumer, {stream: "0"}, count=count)
        return [entry for entry in _entries(response) if entry.payload]

    async def ack(self, stream: str, group: str, entry_ids: Sequence[bytes]) -> int:
        """XACK; returns how many entries were pending and are now acknowledged."""
        if not entry_ids:
            return 0
        async with self._calling("ack"):
            if self.embedded:  # fakeredis runs Lua slowly and packs nothing over a socket
                return await self.client.xack(stream, group, *entry_ids)
            return await self._ack_batch(keys=[stream], args=[group, b" ".join(entry_ids)])

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 1000
    ) -> tuple[list[BusEntry], list[bytes]]:
        """Take over entries pending longer than ``min_idle_ms`` (XAUTOCLAIM,
        following the cursor to the end). Returns ``(entries, deleted_ids)``:
        deleted ids were trimmed from the stream while pending and are gone."""
        return (await self.reclaim_all([stream], group, consumer, min_idle_ms=min_idle_ms, count=count))[stream]

    async def reclaim_all(
        self, streams: Sequence[str], group: str, consumer: str, *, min_idle_ms: int, count: int = 1000
    ) -> dict[str, tuple[list[BusEntry], list[bytes]]]:
        """:meth:`reclaim` for many streams: one round trip for all of them (a pipeline), more only for a
        stream with over ``count`` entries to take over."""
        found: dict[str, tuple[list[BusEntry], list[bytes]]] = {stream: ([], []) for stream in streams}
        cursors = dict.fromkeys(streams, "0-0")
        async with self._calling("reclaim"):
            while cursors:
                pipeline = self.client.pipeline(transaction=False)
                for stream, cursor in cursors.items():
                    pipeline.xautoclaim(
                        stream, group, consumer, min_idle_time=min_idle_ms, start_id=cursor, count=count
                    )
                replies = await pipeline.execute()
                following = {}
                for (stream, _), response in zip(cursors.items(), replies):
                    claimed, deleted = found[stream]
                    claimed.extend(_stream_entries(stream, response[1]))
                    if len(response) > 2:
                        deleted.extend(response[2])
                    if as_text(response[0]) != "0-0":
                        following[stream] = as_text(response[0])
                cursors = following
        metrics.RECLAIMED_ENTRIES.inc(sum(len(claimed) for claimed, _ in found.values()))
        return found

    async def dead_letter(self, entry: BusEntry, code: str, reason: str, *, reader: str = "", source: str = "") -> str:
        """Move a copy of ``entry``, which its reader cannot handle, to ``<stream>:dead`` with the reason (the
        caller acknowledges the original); counted and logged. Returns the entry id."""
        entry_id = as_text(entry.entry_id)
        fields = {
            "entry_id": entry_id,
            "field": entry.field,
            "code": code,
            "reason": reason[:500],
            "payload": entry.payload,
        }
        if reader:
            fields["reader"] = reader
        async with self._calling("dead_letter"):
            await self.client.xadd(self.keys.dead_letters(entry.stream), fields, maxlen=10_000, approximate=True)
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

    async def delivery_counts(self, group: str, consumer: str, entries: Sequence[BusEntry]) -> dict[bytes, int]:
        """How many times each of ``entries`` (pending in ``group`` for ``consumer``) has been delivered: XPENDING
        over each stream's id range, one round trip (a pipeline). Entries no longer pending are absent."""
        spans: dict[str, list[bytes]] = {}
        for entry in entries:
            spans.setdefault(entry.stream, []).append(entry.entry_id)
        async with self._calling("delivery_counts"):
            pipeline = self.client.pipeline(transaction=False)
            for stream, ids in spans.items():
                order = sorted(ids, key=lambda entry_id: _stream_id(as_text(entry_id)))
                pipeline.xpending_range(
                    stream, group, min=order[0], max=order[-1], count=len(ids) * 2 + 100, consumername=consumer
                )
            replies = await pipeline.execute()
        counts: dict[bytes, int] = {}
        for reply in replies:
            for pending in reply:
                entry_id = pending["message_id"]
                counts[entry_id if isinstance(entry_id, bytes) else entry_id.encode()] = int(pending["times_delivered"])
        return counts

    async def pending_count(self, stream: str, group: str) -> int:
        """Entries delivered to the group but not acknowledged."""
        async with self._calling("pending_count"):
            summary = await self.client.xpending(stream, group)
        return int(summary["pending"])

    async def group_lag(self, stream: str, group: str) -> int | None:
        """Entries not yet delivered to ``group`` (XINFO GROUPS ``lag``; Redis ≥ 7)."""
        return (await self.group_positions([stream], group))[stream].lag

    async def group_positions(self, streams: Sequence[str], group: str) -> dict[str, GroupPosition]:
        """Where ``group`` stands on each stream, all in one round trip (a pipeline of XINFO GROUPS and
        XINFO STREAM)."""
        async with self._calling("group_positions"):
            pipeline = self.client.pipeline(transaction=False)
            for stream in streams:
                pipeline.xinfo_groups(stream)
                pipeline.xinfo_stream(stream)
            replies = await pipeline.execute()
        positions: dict[str, GroupPosition] = {}
        for index, stream in enumerate(streams):
            groups, info = replies[2 * index], replies[2 * index + 1]
            found = next((entry for entry in groups if as_text(entry["name"]) == group), None)
            if found is None:
                raise ConsumerGroupMissingError(f"group {group} missing on {stream}")
            first = info.get("first-entry")
            positions[stream] = GroupPosition(
                lag=None if found.get("lag") is None else int(found["lag"]),
                last_delivered=as_text(found["last-delivered-id"]),
                entries_read=None if found.get("entries-read") is None else int(found["entries-read"]),
                entries_added=int(info.get("entries-added") or 0),
                length=int(info["length"]),
                first_entry=as_text(first[0]) if first else "",
            )
        return positions

    async def read_range(
        self, stream: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[BusEntry]:
        """XRANGE: history of a stream (warm-up, audits, tests)."""
        async with self._calling("read_range"):
            response = await self.client.xrange(stream, min=start, max=end, count=count)
        return list(_stream_entries(stream, response))


class Outage:
    """One service's view of a Redis outage: reported once when it begins and once when it ends
    (``order_flow.bus_unavailable`` / ``order_flow.bus_recovered``, the ``orderflow_bus_up`` gauge)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.since: float | None = None  # monotonic time Redis became unreachable
        self.since_ns = 0  # the same moment on the wall clock (ns since the epoch), for a gap's start

    def began(self, error: Exception) -> bool:
        """Redis failed a call; True when that starts an outage (it was answering until now)."""
        if self.since is not None:
            return False
        self.since = time.monotonic()
        self.since_ns = time.time_ns()
        metrics.BUS_UP.set(0)
        log.error("order_flow.bus_unavailable", code="bus_unavailable", reason=str(error)[:300], source=self.source)
        return True

    def ended(self) -> float | None:
        """Redis answered; the outage's length in seconds when one just ended, else None."""
        if self.since is None:
            return None
        seconds = round(time.monotonic() - self.since, 1)
        self.since = None
        metrics.BUS_UP.set(1)
        log.warning("order_flow.bus_recovered", down_seconds=seconds, source=self.source)
        return seconds

    @staticmethod
    async def pause(stop: asyncio.Event, seconds: float = 1.0) -> bool:
        """Wait before the next attempt, or until ``stop``; False once stopping."""
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass
        return not stop.is_set()


class GroupPosition(NamedTuple):
    """A consumer group on a stream (XINFO): ``lag`` undelivered entries (None when Redis cannot tell),
    ``last_delivered`` id, ``entries_read`` (None: unknown), and the stream's ``entries_added``, ``length``
    and ``first_entry`` id ("" when empty)."""

    lag: int | None
    last_delivered: str
    entries_read: int | None
    entries_added: int
    length: int
    first_entry: str

    def trimmed_unread(self) -> int | None:
        """Entries trimmed from the stream before the group read them: 0 when none; None when some were
        but Redis cannot say how many (the group's read count is unknown)."""
        if not self.first_entry or _stream_id(self.last_delivered) >= _stream_id(self.first_entry):
            return 0
        if self.entries_read is not None:
            return max(0, self.entries_added - self.entries_read - self.length)
        if self.last_delivered == "0-0":
            return max(0, self.entries_added - self.length)
        return None

    def trimmed_interval_ns(self) -> tuple[int, int]:
        """When (Redis clock, ns) the entries trimmed unread were added: after the last one delivered (0 when
        none was) and before the stream's first entry."""
        return _stream_id(self.last_delivered)[0] * 1_000_000, _stream_id(self.first_entry)[0] * 1_000_000


def _stream_id(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


OUTAGE_ERRORS = (BusUnavailableError, RedisConnectionError, RedisTimeoutError)
"""What a Redis outage raises: the bus's typed error after its retries, or redis-py's own from a call made
straight on ``bus.client`` (a script, the registry). The one tuple each service's recovery catches."""


def _tag(message: WireMessage) -> bytes:
    return type(message).__struct_config__.tag.encode()


def as_text(value: bytes | str) -> str:
    """A Redis reply value as text (replies are bytes unless decoded)."""
    return value.decode() if isinstance(value, bytes) else value


def _stream_entries(stream: str, response: list) -> Iterable[BusEntry]:
    for entry_id, fields in response:
        if fields is None:  # trimmed while pending (Redis < 7 reports it so)
            continue
        field, payload = next(iter(fields.items()), (b"", b""))
        yield BusEntry(stream, entry_id, payload, field)


def _raw_reply(response: Any, **_options: Any) -> Any:
    return response


def _entries(response: dict | list | None) -> list[BusEntry]:
    """Flatten a raw XREADGROUP reply: ``{stream: [[id, [type, payload]], …]}``
    (RESP3 map) or ``[[stream, [...]], …]`` (RESP2)."""
    if not response:
        return []
    entries: list[BusEntry] = []
    append = entries.append
    new = tuple.__new__  # a NamedTuple's own __new__ is Python code: 1/8 of the consume time
    for stream, stream_entries in response.items() if isinstance(response, dict) else response:
        name = as_text(stream)
        for entry_id, fields in stream_entries:
            if not fields:  # trimmed while pending
                continue
            if isinstance(fields, list):
                append(new(BusEntry, (name, entry_id, fields[1], fields[0])))
            else:
                field, payload = next(iter(fields.items()))
                append(new(BusEntry, (name, entry_id, payload, field)))
    return entries
