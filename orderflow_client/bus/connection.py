"""The bus: one Redis connection (redis.asyncio) and every stream, group, dead-letter and channel operation on it.

    bus = await Bus.connect("redis://127.0.0.1:6379/0")   # or None: the embedded in-process server
    async with bus:
        await bus.publish([(bus.keys.market("AAPL"), trade)])

Connection errors are retried by redis-py with exponential backoff and jitter (counted in
``orderflow_bus_retries_total``); when the retries run out a
:class:`~orderflow_client.errors.BusUnavailableError` carries what was not published, so nothing is dropped
silently (:mod:`orderflow_client.bus.calls` turns every redis-py error into the bus's typed errors). With no
``REDIS_URL`` the same API runs on an in-process fakeredis server (embedded mode) that every Bus in the process
shares. Commands are packed with hiredis (C), not redis-py's per-argument Python loop: publishing a batch sends
thousands of arguments.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import hiredis
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orderflow_client import logs, metrics
from orderflow_client.bus.appends import Appends
from orderflow_client.bus.calls import FailureCount, RedisCalls, credentials_message, refused_credentials
from orderflow_client.bus.channels import Channels
from orderflow_client.bus.dead_letters import DeadLetters
from orderflow_client.bus.groups import GroupOperations
from orderflow_client.bus.keys import Keys
from orderflow_client.bus.streams import StreamOperations
from orderflow_client.errors import BusAuthenticationError
from orderflow_client.logs import mask_url

log = logs.get_logger(__name__)

_embedded_server: Any = None  # a fakeredis.FakeServer, made on first use


def embedded_server() -> Any:
    """The process-wide in-memory server of embedded mode."""
    global _embedded_server
    if _embedded_server is None:
        import fakeredis  # the embedded bus only: a bot's slim install has no fakeredis

        _embedded_server = fakeredis.FakeServer()
    return _embedded_server


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


class _CountingRetry(Retry):
    """redis-py's retry with exponential backoff and jitter, counted in metrics; refused credentials end it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = FailureCount()

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[Any]],
        fail: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        failures = 0

        async def counted_fail(error: Exception, *rest: Any) -> Any:
            nonlocal failures
            if refused_credentials(error):
                raise BusAuthenticationError(credentials_message(error)) from None  # retrying cannot help
            failures += 1
            self.failures.seen += 1
            if failures <= self._retries:  # the last failure is not followed by a retry
                metrics.BUS_RETRIES.inc()
            return await fail(error, *rest)

        return await super().call_with_retry(do, counted_fail, *args, **kwargs)


async def _is_cluster(client: redis.Redis, description: str) -> bool:
    """Whether the server behind ``client`` runs in cluster mode: it answers ``CLUSTER INFO`` (a single server
    replies that cluster support is disabled). A user the ACL denies it is taken as a single server;
    BusUnavailableError when it does not answer."""
    try:
        async with RedisCalls(client, Keys(), description=description, stream_max_length=0).calling("ping"):
            await client.execute_command("CLUSTER INFO")
    except NoPermissionError:
        return False
    except ResponseError as error:
        if "cluster support disabled" in str(error):
            return False
        raise
    return True


class Bus(Appends, StreamOperations, GroupOperations, DeadLetters, Channels):
    """Appends, stream reads, groups, dead letters and channels over one Redis client.

    Create with :meth:`connect`; use as ``async with await Bus.connect(...)``
    or call :meth:`close`. The typed operations of the other parts of orderflow (the position registry, the
    detector's publish-once, profiles, a bot's handled marks) are in the bus package's other modules and take a Bus.
    """

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
        cluster: bool | None = None,
    ) -> Bus:
        """Connect to ``redis_url`` (redis://, rediss://, with user/password),
        or to the embedded server when it is ``None``; check with PING.

        ``cluster``: whether ``redis_url`` names a node of a Redis Cluster; None asks the server (``CLUSTER INFO``),
        so one URL of any node is enough. On a cluster the client is redis-py's ``RedisCluster`` (it learns the
        slots and follows failovers) and the keys take the cluster layout (:class:`Keys`).

        Raises :class:`BusUnavailableError` when Redis cannot be reached after
        ``retries`` attempts (about 0.05+0.1+…+2 s of backoff by default).
        """
        retry = _CountingRetry(
            ExponentialWithJitterBackoff(base=backoff_base_seconds, cap=backoff_cap_seconds), retries
        )
        client: redis.Redis | RedisCluster
        if redis_url is None:
            import fakeredis

            client = fakeredis.FakeAsyncRedis(server=embedded_server())
            description = "embedded (in-process fakeredis)"
        else:
            options: dict[str, Any] = {
                "retry": retry,
                "retry_on_error": [RedisConnectionError, RedisTimeoutError],
                "socket_timeout": socket_timeout_seconds,
                "socket_connect_timeout": socket_timeout_seconds,
                "health_check_interval": 30,
            }
            packing: dict[str, Any] = {}
            if redis_url.startswith("redis://"):
                packing["connection_class"] = HiredisConnection
            single = redis.Redis.from_url(redis_url, **options, **packing)
            if single.connection_pool.connection_class is redis.SSLConnection:
                # from_url lets the rediss:// scheme's SSLConnection win over a connection_class
                # argument; no connection exists yet, so the pool's class can still be swapped
                single.connection_pool.connection_class = HiredisSSLConnection
            description = mask_url(redis_url)
            if cluster is None:
                cluster = await _is_cluster(single, description)
            client = single
            if cluster:
                await single.aclose()
                client = RedisCluster.from_url(redis_url, **options)
                description = f"{description} (cluster)"
        bus = cls(
            client,
            Keys(prefix, cluster=bool(cluster) and redis_url is not None),
            description=description,
            stream_max_length=stream_max_length,
            embedded=redis_url is None,
            failures=retry.failures,
        )
        await bus.ping()  # (a cluster's pipelines load no script: the first append to a master loads its scripts there)
        return bus

    async def ping(self) -> bool:
        """PING: True when Redis answers; :class:`BusUnavailableError` when it does not after the retries."""
        async with self.calling("ping"):
            return bool(await self.client.ping())

    async def close(self) -> None:
        """Close the connections. Closing loses nothing, so a Redis that is down by then (a stop during an outage)
        is logged as ``order_flow.bus_close_failed`` and not raised: the stop stays a clean stop."""
        try:
            await self.client.aclose()
        except (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError) as error:
            log.warning("order_flow.bus_close_failed", error=repr(error)[:200])

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
