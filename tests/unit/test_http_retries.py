"""The HTTP adapters' shared retry policy: Retry-After read as seconds, doubling jittered waits never under it."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from services.ingest.http_retries import retry_after_seconds, retry_delay


def test_retry_after_is_a_number_of_seconds_or_nothing():
    assert [retry_after_seconds(v) for v in ("2", "0.6", "-3", "", None, "Wed, 21 Oct 2026 07:28:00 GMT")] == [
        2.0,
        0.6,
        0.0,
        None,
        None,
        None,
    ]


@given(st.integers(1, 20), st.floats(0.01, 2.0), st.floats(0.5, 60.0), st.one_of(st.none(), st.floats(0.0, 120.0)))
def test_the_wait_doubles_is_capped_jittered_and_never_shorter_than_retry_after(attempt, base, cap, retry_after):
    random.seed(attempt)
    delay = retry_delay(attempt=attempt, base_seconds=base, cap_seconds=cap, retry_after=retry_after)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= max(ceiling, retry_after or 0.0)
    assert retry_after is None or delay >= retry_after
