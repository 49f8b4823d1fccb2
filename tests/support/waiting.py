"""Waiting until something holds, for tests that watch another process, thread or task.

One rule for both: poll ``condition`` until it is true or ``timeout`` seconds pass, then fail with what was awaited,
e.g. ``AssertionError: timed out after 60.0 s waiting for the detector to catch up``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


def wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``condition()`` every 0.05 s until it is truthy; an AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    if condition():  # a last look: the deadline may have passed while the process was starved of CPU
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def wait_for_async(
    condition: Callable[[], object | Awaitable[object]], timeout: float = 20.0, what: str = "condition"
) -> None:
    """``wait_for`` inside a running event loop: ``condition`` may be a plain or an async function; the loop keeps
    running (``asyncio.sleep(0.05)``) between looks."""

    async def holds() -> bool:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await holds():
            return
        await asyncio.sleep(0.05)
    if await holds():
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
