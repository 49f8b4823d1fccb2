"""Nanosecond timestamps: conversions used everywhere.

All orderflow timestamps are ``int`` nanoseconds since the Unix epoch, UTC.
``ns_to_utc_iso(1_700_000_000_123_456_789)`` is
``"2023-11-14T22:13:20.123456789Z"``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")

NANOSECONDS_PER_SECOND = 1_000_000_000
NANOSECONDS_PER_MILLISECOND = 1_000_000


def now_ns() -> int:
    """Wall-clock time now, in ns."""
    return time.time_ns()


def ns_to_utc_iso(ts_ns: int) -> str:
    """ISO-8601 UTC with nanosecond precision and a ``Z`` suffix."""
    seconds, nanos = divmod(ts_ns, NANOSECONDS_PER_SECOND)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def ns_to_new_york(ts_ns: int, *, milliseconds: bool = False) -> str:
    """Exchange time for people, labelled: ``1795545591000000000`` → ``"15:59:51 ET"`` (New York, EST or EDT)."""
    moment = datetime.fromtimestamp(ts_ns / NANOSECONDS_PER_SECOND, tz=NEW_YORK)
    text = moment.strftime("%H:%M:%S.%f")[:12] if milliseconds else moment.strftime("%H:%M:%S")
    return f"{text} ET"


def ms_to_ns(ts_ms: int) -> int:
    """Polygon WebSocket milliseconds to ns."""
    return ts_ms * NANOSECONDS_PER_MILLISECOND


MAX_TIMESTAMP = 2**63 - 1


def checked_timestamp(ts_ns: int) -> int:
    """``ts_ns`` if it is a valid int64 nanosecond time (>= 0), else ValueError."""
    if not 0 <= ts_ns <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp out of range: {ts_ns}")
    return ts_ns
