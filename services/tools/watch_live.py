"""``orderflow watch``'s loop: poll the bus and redraw the view (:mod:`services.tools.watch`) until stopped.

While Redis does not answer, the view stays up with a banner saying since when, and catches up once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib

from rich.console import Console
from rich.live import Live

from orderflow_client.bus.calls import OUTAGE_ERRORS
from orderflow_client.bus.connection import Bus
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, now_ns
from services.tools.watch import WatchState, follow, render, starting_ids


async def run_watch(
    bus: Bus, stop: asyncio.Event, console: Console, *, window_seconds: int, refresh_seconds: float, once: bool
) -> None:
    """Show the open positions' alerts, exits and state on ``console``, redrawn every ``refresh_seconds``
    until ``stop`` (``once``: one snapshot). Alerts count toward a symbol's colour for ``window_seconds``."""
    state = WatchState(window_ns=window_seconds * NANOSECONDS_PER_SECOND)
    positions: list[str] = []
    last_ids = await starting_ids(bus)
    await follow(bus, state, positions, last_ids)
    if once:
        console.print(render(state, positions, now_ns()))
        return
    with Live(render(state, positions, now_ns()), console=console, refresh_per_second=4, screen=False) as live:
        while not stop.is_set():
            try:
                await follow(bus, state, positions, last_ids)
                state.unreachable_since = 0
            except OUTAGE_ERRORS:  # the view stays up and says so; it catches up when Redis is back
                state.unreachable_since = state.unreachable_since or now_ns()
            live.update(render(state, positions, now_ns()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=refresh_seconds)
