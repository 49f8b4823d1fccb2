"""The risk client's status reports: statuses from ``orderflow:status`` and its own on a Redis outage, with the held
symbols they leave unmonitored, and on a parked recommendation (a base of
:class:`orderflow_client.risk.RiskManagerClient`)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Protocol

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.outage import Outage
from orderflow_client.bus.streams import BusEntry
from orderflow_client.errors import WireDecodeError
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import ExitRecommendation, FeedStatus, decode, encode

log = logs.get_logger("orderflow_client.risk")
UNMONITORED_STATES = frozenset({"monitoring_halted", "gap", "watchdog_silence", "disconnected", "trading_halted"})

StatusHandler = Callable[[FeedStatus], Awaitable[None] | None]


class StatusCounts(Protocol):
    statuses: int
    parked: int
    unmonitored: set[str]


class StatusReports:
    """What the client tells ``on_status`` (and its log) about monitoring: statuses read, outages, recoveries."""

    held_symbols: Callable[[], set[str]] | None
    stats: StatusCounts
    bus: Bus
    group: str
    _outage: Outage

    async def _park(
        self,
        recommendation: ExitRecommendation,
        entries: list[BusEntry],
        attempts: int,
        positions: tuple[str, ...],
        on_status: StatusHandler | None,
    ) -> None:
        """The handler failed ``attempts`` times on ``positions``: the recommendation goes to ``orderflow:exits:dead``
        (its stream entry, or a copy of what came on the channel) with a status naming it; it is not handled again."""
        self.stats.parked += 1
        entry = entries[0] if entries else BusEntry(self.bus.keys.exits, b"channel", encode(recommendation), b"exit")
        reason = f"on_exit raised {attempts} times for {recommendation.id} ({', '.join(positions)})"
        await self.bus.dead_letter(entry, "handler_failed", reason, reader=self.group, source="risk_manager")
        log.error(
            "order_flow.recommendation_parked",
            code="handler_failed",
            id=recommendation.id,
            symbol=recommendation.symbol,
            positions=list(positions),
            attempts=attempts,
            source="risk_manager",
        )
        now = now_ns()
        await self._on_status(
            FeedStatus(
                source="risk_manager",
                state="dead_letter",
                ts_event=now,
                ts_recv=now,
                symbols=positions,
                code="handler_failed",
                detail=f"{reason}: parked in {self.bus.keys.dead_letters(self.bus.keys.exits)}",
            ),
            on_status,
        )

    async def _bus_down(self, error: Exception, stop: asyncio.Event, on_status: StatusHandler | None) -> None:
        if self._outage.began(error):
            now = now_ns()
            await self._on_status(
                FeedStatus(
                    source="risk_manager",
                    state="disconnected",
                    ts_event=now,
                    ts_recv=now,
                    symbols=tuple(sorted(self._held())),
                    code="bus_unavailable",
                    detail=f"Redis unreachable: no recommendation can arrive ({str(error)[:200]})",
                ),
                on_status,
            )
        await self._outage.pause(stop)

    async def _bus_back(self, on_status: StatusHandler | None) -> None:
        down = self._outage.ended()
        if down is None:
            return
        now = now_ns()
        await self._on_status(
            FeedStatus(
                source="risk_manager",
                state="monitoring_resumed",
                ts_event=now,
                ts_recv=now,
                symbols=tuple(sorted(self._held())),
                code="bus_recovered",
                detail=f"Redis back after {down} s; caught up from the exits stream",
            ),
            on_status,
        )

    def _held(self) -> set[str]:
        return self.held_symbols() if self.held_symbols else set()

    async def _status(self, payload: bytes, on_status: StatusHandler | None) -> None:
        try:
            status = decode(payload)
        except WireDecodeError:
            return
        if isinstance(status, FeedStatus):
            await self._on_status(status, on_status)

    async def _on_status(self, status: FeedStatus, on_status: StatusHandler | None) -> None:
        self.stats.statuses += 1
        held = self._held()
        affected = set(status.symbols) & held if status.symbols else held
        if status.state in UNMONITORED_STATES and affected:
            self.stats.unmonitored |= affected
            log.warning(
                "order_flow.symbol_unmonitored",
                symbols=sorted(affected),
                state=status.state,
                code=status.code,
                detail=status.detail,
                source="risk_manager",
            )
        elif status.state == "monitoring_resumed":
            self.stats.unmonitored -= set(status.symbols)
        if on_status is not None:
            result = on_status(status)
            if inspect.isawaitable(result):
                await result
