"""The reconnect policy of both live sources: doubling waits with jitter, capped, reset by a lasting connection."""

from __future__ import annotations

import random

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.ingest.reconnect import ReconnectBackoff

S = NANOSECONDS_PER_SECOND


def test_failures_in_a_row_double_the_wait_with_jitter_up_to_the_cap():
    random.seed(7)
    backoff = ReconnectBackoff(cap_seconds=4.0)
    waits = [backoff.after_drop(was_connected=False, lasted_ns=0) for _ in range(6)]
    bounds = [(0.25, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (2.0, 4.0), (2.0, 4.0)]
    assert all(low <= wait <= high for wait, (low, high) in zip(waits, bounds, strict=True)), waits
    assert backoff.failures == 6


def test_a_lasting_connection_resets_the_count_and_a_short_one_does_not():
    backoff = ReconnectBackoff()
    for _ in range(5):
        backoff.after_drop(was_connected=False, lasted_ns=0)
    assert backoff.after_drop(was_connected=True, lasted_ns=6 * S) <= 0.5 and backoff.failures == 0
    backoff.after_drop(was_connected=True, lasted_ns=2 * S)  # connected, but dropped within 5 s: still failing
    assert backoff.failures == 1
    backoff.after_drop(was_connected=False, lasted_ns=60 * S)  # never delivered data, however long it hung
    assert backoff.failures == 2
