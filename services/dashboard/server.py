"""Start and stop a dashboard on a bus: its readers and its web server, in the running event loop (``orderflow
dashboard`` alone, or beside ``orderflow demo`` on the embedded bus).

    dashboard = await start_dashboard(bus, DashboardOptions(port=0))   # 0: a free port
    print(dashboard.url)        # http://127.0.0.1:8765/
    ...
    await dashboard.stop()

Any address but this machine's (127.0.0.1, ::1, localhost) needs an access token: without one,
:func:`start_dashboard` raises :class:`DashboardExposedError` before listening.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiohttp import web

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.dashboard.app import UNHEALTHY_AFTER_SECONDS, make_app
from services.dashboard.hub import KEPT_EVENTS, Hub
from services.dashboard.readers import Readers
from services.dashboard.state import DashboardState
from shared.config import LOOPBACK_HOSTS

log = logs.get_logger(__name__)


class DashboardExposedError(ValueError):
    """The dashboard would listen beyond this machine without an access token."""


@dataclass(frozen=True)
class DashboardOptions:
    host: str = "127.0.0.1"
    port: int = 8765  # 0: a free port
    token: str = field(default="", repr=False)
    consumer_group: str = "detector"  # the detector's group: its lag is the consumer lag shown
    alert_window_seconds: int = 120
    detector_lease_seconds: float = 5.0
    symbols: tuple[str, ...] = ()  # shown without a position too
    bot_names: tuple[str, ...] = ("bot",)  # whose handled marks the cards show
    unhealthy_after_seconds: float = UNHEALTHY_AFTER_SECONDS  # /healthz says 503 once Redis is gone this long


def check_exposure(host: str, token: str) -> None:
    if host not in LOOPBACK_HOSTS and not token:
        raise DashboardExposedError(
            f"the dashboard would listen on {host}, beyond this machine, with no access token: set "
            "ORDER_FLOW_DASHBOARD_TOKEN (16+ characters) or listen on 127.0.0.1"
        )


@dataclass
class Dashboard:
    url: str
    host: str
    port: int
    state: DashboardState
    hub: Hub
    _stop: asyncio.Event
    _readers: asyncio.Future[None]
    _runner: web.AppRunner

    async def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._readers
        await self._runner.cleanup()
        log.info("order_flow.dashboard_stopped", url=self.url, events=self.hub.published)


async def start_dashboard(bus: Bus, options: DashboardOptions) -> Dashboard:
    """Read the recent history, then listen; the readers follow the bus until :meth:`Dashboard.stop`."""
    check_exposure(options.host, options.token)
    state = DashboardState(
        alert_window_ns=options.alert_window_seconds * NANOSECONDS_PER_SECOND, extra_symbols=options.symbols
    )
    hub = Hub(kept=KEPT_EVENTS)  # a resuming page gets the alerts it missed, then the summary and charts now
    readers = Readers(
        bus,
        state,
        hub,
        consumer_group=options.consumer_group,
        bot_names=options.bot_names,
        detector_lease_seconds=options.detector_lease_seconds,
    )
    await readers.start()
    app = make_app(state, hub, options.token, unhealthy_after_seconds=options.unhealthy_after_seconds)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port)
    await site.start()
    port = options.port or _bound_port(runner)
    shown_host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{shown_host}:{port}/"
    stop = asyncio.Event()
    dashboard = Dashboard(url, options.host, port, state, hub, stop, asyncio.ensure_future(readers.run(stop)), runner)
    log.info(
        "order_flow.dashboard_started",
        url=url,
        token_required=bool(options.token),
        symbols=state.symbols(),
        bus=bus.description,
    )
    return dashboard


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the dashboard's server listens on no TCP port")
