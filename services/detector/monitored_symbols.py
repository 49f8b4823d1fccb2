"""What the detector monitors: the ``--symbol``s given, else the open positions of the registry, and the profile each
symbol starts with.

The registry (``{prefix}:positions``, :class:`~orderflow_client.positions.PositionRegistry`) is re-read by the
service every ``refresh_seconds``; a registry lost under the detector (Redis restarted without persistence) is
written back from the positions last seen, and a ``positions_lost`` status names them.

In adaptive mode a symbol whose stored profile is missing or stale gets one built from REST history beside the
detector (:class:`~services.detector.calibration_worker.CalibrationWorker`, started by :meth:`load_profile`,
driven by :meth:`wanted`, stopped by :meth:`close`); it runs on the session's own fit meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import FeedState, FeedStatus
from services.detector.calibration_worker import CalibrationWorker, HistorySource
from services.detector.engine import Engine
from services.detector.profile_store import ProfileStore
from services.detector.profiles import ProfileError
from services.detector.sink import OutputSink
from shared import service_metrics
from shared.config import OrderFlowConfig

log = logs.get_logger(__name__)

_REGISTRY_STATES: dict[str, FeedState] = {
    "positions_lost": "positions_lost",
    "position_unreadable": "position_unreadable",
}
"""The states of the registry's notices (:class:`~orderflow_client.positions.RegistryNotice`) as status states."""


class MonitoredSymbols:
    """The symbols to monitor now (:meth:`wanted`) and how one starts (:meth:`load_profile`)."""

    def __init__(
        self,
        config: OrderFlowConfig,
        bus: Bus,
        engine: Engine,
        sink: OutputSink,
        symbols: Iterable[str] | None,
        history: HistorySource | None = None,
    ) -> None:
        """``history``: where the calibration worker fetches a missing or stale profile's sessions (Polygon REST:
        :class:`services.offline.calibrate.RestHistory`; None: no live calibration, logged once)."""
        self.config = config
        self.engine = engine
        self.sink = sink
        self.fixed_symbols = tuple(symbols) if symbols else None
        self.registry = PositionRegistry(bus)
        self.profiles = ProfileStore(bus)
        self.calibration = CalibrationWorker(config, engine, sink, self.profiles, history)
        self.wanted_last: set[str] = set()  # the symbols :meth:`wanted` gave last

    async def wanted(self) -> list[str]:
        """``--symbol``s, else the open positions (e.g. ``["AAPL", "NVDA"]``). A registry lost under the detector is
        written back from the positions last seen and monitoring goes on, with a ``positions_lost`` status naming
        them; an unreadable position is still monitored, with a ``position_unreadable`` status. The calibration
        worker's :meth:`~CalibrationWorker.tick` runs here (retries due, the refresh before the open)."""
        if self.fixed_symbols is not None:
            symbols = list(self.fixed_symbols)
        else:
            symbols = await self._positions()
        self.wanted_last = set(symbols)
        self.calibration.tick(symbols)
        return symbols

    async def _positions(self) -> list[str]:
        """The open positions' symbols, the registry's notices published as statuses."""
        positions, notices = await self.registry.follow()
        for notice in notices:
            now = now_ns()
            status = FeedStatus(
                source="detector",
                state=_REGISTRY_STATES[notice.state],
                ts_event=now,
                ts_recv=now,
                symbols=notice.symbols,
                code=notice.code,
                detail=notice.detail,
            )
            await self.sink.publish_status(f"{notice.state}:{','.join(notice.symbols)}:{now}", status)
        return [position.symbol for position in positions]

    async def close(self) -> None:
        """Stop the calibration worker's fetches (a stop of the detector)."""
        await self.calibration.close()

    async def load_profile(self, symbol: str) -> None:
        """The symbol's stored profile as the history of its thresholds (adaptive mode), and a calibration from
        REST history when it is missing or stale; the threshold gauges show what the symbol starts with until its
        first calibration status."""
        large = self.config.large_order_size
        service_metrics.THRESHOLD_SHARES.labels(symbol=symbol, kind="large_order").set(large)
        service_metrics.THRESHOLD_SHARES.labels(symbol=symbol, kind="large_offer").set(large)
        service_metrics.CALIBRATED.labels(symbol=symbol).set(1 if self.config.threshold_mode == "absolute" else 0)
        if self.config.threshold_mode != "adaptive":
            return
        try:
            profile = await self.profiles.load(symbol)
        except ProfileError as error:
            service_metrics.VALIDATION_ERRORS.labels(code=error.code).inc()
            log.error("order_flow.profile_unreadable", symbol=symbol, code=error.code, reason=str(error))
            profile = None
        self.engine.set_profile(symbol, profile)
        if profile is None:
            log.warning("order_flow.profile_missing", symbol=symbol, detail="calibrating from the session itself")
        else:
            log.info("order_flow.profile_loaded", symbol=symbol, days=list(profile.days), source=profile.source)
        if symbol in self.wanted_last:  # a position's (or --symbol's), not an index read beside them
            self.calibration.request(symbol)  # missing or stale: rebuilt from REST history (fresh: nothing fetched)
