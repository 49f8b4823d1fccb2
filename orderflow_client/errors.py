"""Typed errors. Each service turns them into recovery in one place.

Every error carries a short ``code`` (used in logs and metric labels) so an
operator can grep and count them.
"""

from __future__ import annotations


class OrderflowError(Exception):
    """Base of every error orderflow raises on purpose."""

    code = "orderflow_error"


class ConfigError(OrderflowError):
    """The configuration is invalid. The message names variable, value and range."""

    code = "config_invalid"


class WireDecodeError(OrderflowError, ValueError):
    """A bus or file payload is not a known wire message."""

    code = "wire_undecodable"


class BusError(OrderflowError):
    """Base of the bus errors."""

    code = "bus_error"


class BusUnavailableError(BusError):
    """Redis could not be reached after the configured retries.

    ``unpublished`` holds what the failed call was asked to publish, so the
    caller can retry or report it: nothing is dropped silently.
    """

    code = "bus_unavailable"

    def __init__(self, message: str, unpublished: list | None = None) -> None:
        super().__init__(message)
        self.unpublished = unpublished or []


class BusAuthenticationError(BusUnavailableError):
    """Redis refused the credentials (none given, or wrong): retrying cannot help."""

    code = "bus_authentication"

    def __init__(self, message: str) -> None:
        super().__init__(message, None)


class ConsumerGroupMissingError(BusError):
    """The consumer group (or its stream) was deleted under a running reader."""

    code = "bus_group_missing"
