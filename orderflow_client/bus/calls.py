"""The one place redis-py's errors become the bus's typed errors.

Every Redis command and script of orderflow runs inside :meth:`RedisCalls.calling` (a test checks it on the
source), so a caller sees only:

- :class:`~orderflow_client.errors.BusUnavailableError` — Redis did not answer after the client's retries
  (counted in ``orderflow_bus_failures_total{operation=…}``); it carries what was not published;
- :class:`~orderflow_client.errors.BusAuthenticationError` — Redis refused the credentials (retrying cannot help);
- :class:`~orderflow_client.errors.ConsumerGroupMissingError` — a consumer group vanished under its reader (NOGROUP).

Any other Redis reply error (a bug, or a command the ACL user may not run) passes unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    RedisClusterException,
    RedisClusterUnreachableError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orderflow_client import logs, metrics
from orderflow_client.bus.keys import Keys
from orderflow_client.errors import BusAuthenticationError, BusUnavailableError, ConsumerGroupMissingError

if TYPE_CHECKING:
    import redis.asyncio as redis
    from redis.asyncio.cluster import RedisCluster

CLUSTER_OUTAGE_ERRORS = (ClusterDownError, TryAgainError, SlotNotCoveredError, RedisClusterException)
"""What a Redis Cluster raises while a slot has no master (a failover under way, past redis-py's own retries): an
outage like a dead server, waited out the same way."""

FAILOVER_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
)
"""What a whole cluster pipeline raises while one master fails over, past redis-py's retries: the appends try again
(checked after each try: a try itself can take the client's retries, so an append can last one try longer than its
deadline). Not the base RedisClusterException: a lasting error (a key of no slot) is raised at once."""

log = logs.get_logger(__name__)

TRANSIENT_ERRORS = (RedisConnectionError, RedisTimeoutError, *CLUSTER_OUTAGE_ERRORS)
"""redis-py's errors of a moment (a connection lost, a slot failing over), for a caller that retries one part of a
pipeline on its own before the translation below sees them."""

OUTAGE_ERRORS = (BusUnavailableError, RedisConnectionError, RedisTimeoutError)
"""What a Redis outage raises: the bus's typed error after its retries (redis-py's own two are listed as well, for
an error a closing connection raises outside a call). The one tuple each service's recovery catches."""

_CREDENTIAL_REFUSALS = (
    "NOAUTH",
    "WRONGPASS",
    "HELLO must be called with the client already authenticated",
    "invalid username-password",
    "Authentication required",
)


def refused_credentials(error: Exception) -> bool:
    """Whether ``error`` says Redis refused (or wants) a password: not an outage."""
    return isinstance(error, (AuthenticationError, AuthorizationError)) or any(
        text in str(error) for text in _CREDENTIAL_REFUSALS
    )


def credentials_message(error: Exception) -> str:
    """What to tell the operator about refused credentials (never the URL: it may hold the password)."""
    if "WRONGPASS" in str(error) or "invalid username-password" in str(error):
        return "Redis refused the password (or user) in REDIS_URL"
    return (
        "Redis requires a password: put it in REDIS_URL (redis://:PASSWORD@host:6379/0, "
        "or redis://USER:PASSWORD@… for an ACL user)"
    )


class FailureCount:
    """Failed calls of one client, retried or not (a read's reply may have been lost with one). Shared, not copied,
    by the copies redis-py makes of the retry policy for each connection."""

    def __init__(self) -> None:
        self.seen = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> FailureCount:
        return self


class RedisCalls:
    """One Redis client and what every call on it shares: the key names, a description for messages (the URL
    without its password, or ``embedded (in-process fakeredis)``) and the error translation.

    ``failures`` counts the client's failed attempts (the retry policy's; None in embedded mode)."""

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        keys: Keys,
        *,
        description: str,
        stream_max_length: int,
        embedded: bool = False,
        failures: FailureCount | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.description = description
        self.stream_max_length = stream_max_length
        self.embedded = embedded
        self.failures = failures
        self._masters: tuple[str, ...] = ()  # a cluster's masters last seen (host:port)

    def masters_changed(self) -> None:
        """On a cluster, log ``order_flow.bus_failover`` when the masters redis-py knows differ from the last seen
        (a replica promoted after its master died; redis-py follows it on its own, so no call fails). Reads the
        client's own node map: no round trip."""
        if not self.keys.cluster:
            return
        masters = tuple(sorted(node.name for node in self.client.get_primaries()))  # type: ignore[union-attr]
        if masters != self._masters:
            if self._masters:
                gone = sorted(set(self._masters) - set(masters))
                log.warning("order_flow.bus_failover", masters=list(masters), gone=gone, bus=self.description)
            self._masters = masters

    def failures_seen(self) -> int:
        """Failed attempts of the client so far, retried ones included (0 in embedded mode)."""
        return self.failures.seen if self.failures is not None else 0

    @contextlib.asynccontextmanager
    async def calling(self, operation: str, unpublished: Sequence[Any] | None = None) -> AsyncIterator[None]:
        """Run Redis calls, turning redis-py's errors into the bus's typed errors. ``operation`` (a bus method's
        name, e.g. ``read_group``) labels the failure metric and the message; ``unpublished`` is what the calls
        were to publish, handed back on :class:`BusUnavailableError`."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError, *CLUSTER_OUTAGE_ERRORS) as error:
            if refused_credentials(error):
                raise BusAuthenticationError(credentials_message(error)) from None
            metrics.BUS_FAILURES.labels(operation=operation).inc()
            raise BusUnavailableError(
                f"Redis at {self.description} unavailable during {operation}: {error}",
                list(unpublished) if unpublished is not None else None,
            ) from None
        except ResponseError as error:
            if str(error).startswith("NOGROUP"):
                raise ConsumerGroupMissingError(f"{operation}: {error}") from None
            raise
