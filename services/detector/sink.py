"""The detector's publishing sink: each output of the rules becomes its Redis writes, metrics and log line.

One small handler per output kind (:data:`~services.detector.outputs.Output`), chosen by the output's type:

- an alert → ``{prefix}:alerts``, ``order_flow.large_seller_detected`` / ``order_flow.red_burst_detected``;
- an exit recommendation → signed (``ORDER_FLOW_SIGNING_KEY``), ``{prefix}:exits`` and the exit channel,
  ``order_flow.exit_signal_triggered``;
- a status → ``{prefix}:status``, ``order_flow.<state>`` (e.g. ``order_flow.monitoring_halted``), the threshold
  gauges on ``calibrating`` / ``calibrated``;
- a validation issue → ``order_flow.data_validation_error``; expired alerts → ``order_flow.alert_window_expired``;
- a profile update → ``{prefix}:profile:{SYM}``, ``order_flow.profile_saved``.

Publishing is idempotent: one Lua call (:class:`~orderflow_client.bus.dedup.PublishOnce`) does ``SET NX`` on the
output's deterministic id (e.g. ``AAPL:exit:large_sellers:1``, remembered :data:`DEDUP_SECONDS`) and only then
XADD (and PUBLISH for exits), so a redelivered entry never yields a second alert. A Redis failure is raised to the
caller (the service's loop decides what to do about it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.dedup import ALREADY_PUBLISHED, FENCED, PUBLISHED, PublishOnce
from orderflow_client.prices import format_price
from orderflow_client.signing import sign
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, now_ns, ns_to_utc_iso
from orderflow_client.wire import ExitRecommendation, FeedState, FeedStatus, OrderFlowAlert, encode
from services.detector.integrity import ValidationIssue
from services.detector.orders import PulledOrder
from services.detector.outputs import ExpiredAlerts, Output, ProfileUpdate
from services.detector.profile_store import ProfileStore
from services.detector.stats import DetectorStats
from services.detector.threshold_fit import Thresholds
from shared import service_metrics
from shared.config import OrderFlowConfig

DEDUP_SECONDS = 7 * 24 * 3600  # how long an output id is remembered: a redelivery within a week publishes nothing

PublishedOutput = OrderFlowAlert | ExitRecommendation | FeedStatus
"""What reaches ``on_output`` (the demo's view): each alert, exit and status the moment it is published."""

STATUS_EVENTS: dict[FeedState, str] = {
    "connected": "order_flow.connected",
    "disconnected": "order_flow.disconnected",
    "gap": "order_flow.gap",
    "auth_failed": "order_flow.auth_failed",
    "watchdog_silence": "order_flow.watchdog_silence",
    "trading_halted": "order_flow.trading_halted",
    "trading_resumed": "order_flow.trading_resumed",
    "monitoring_halted": "order_flow.monitoring_halted",
    "monitoring_resumed": "order_flow.monitoring_resumed",
    "calibrating": "order_flow.calibrating",
    "calibrated": "order_flow.calibrated",
    "dead_letter": "order_flow.dead_letter",
    "positions_lost": "order_flow.positions_lost",
    "position_unreadable": "order_flow.position_unreadable",
}
"""The log event of a status the rules publish, by its state: ``order_flow.<state>``."""
log = logs.get_logger(__name__)


class OutputSink:
    """Publishes what the rules found (see the module's docstring), counting it in ``stats``.

    ``thresholds_of(symbol)`` gives the thresholds a symbol is judged against now (None when it is not monitored),
    for the threshold gauges; ``on_output`` sees every alert, exit and status as it is published (not the
    duplicates); ``keep_latencies`` keeps each alert's latency in ``stats.latencies_ms``; ``fence_of(symbol)`` gives
    the lease a symbol's outputs are published under (``(lease key, value held)``, None: unfenced), and the symbols
    whose lease Redis found lost at a publish collect in :attr:`fenced` (their outputs not written)."""

    def __init__(
        self,
        config: OrderFlowConfig,
        bus: Bus,
        stats: DetectorStats,
        *,
        thresholds_of: Callable[[str], Thresholds | None],
        on_output: Callable[[PublishedOutput], None] | None = None,
        keep_latencies: bool = False,
        fence_of: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> None:
        self.config = config
        self.keys = bus.keys
        self.fence_of = fence_of
        self.fenced: set[str] = set()
        self.stats = stats
        self.thresholds_of = thresholds_of
        self.on_output = on_output
        self.keep_latencies = keep_latencies
        self.profiles = ProfileStore(bus)
        self._publish_once = PublishOnce(bus)
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            OrderFlowAlert: self._alert,
            ExitRecommendation: self._exit,
            FeedStatus: self._status,
            ValidationIssue: self._validation_issue,
            ExpiredAlerts: self._expired_alerts,
            PulledOrder: self._pulled_order,
            ProfileUpdate: self._profile_update,
        }

    async def publish(self, outputs: Iterable[Output]) -> None:
        """Each output through the handler of its kind, in order."""
        for output in outputs:
            await self._handlers[type(output)](output)

    async def confirm(self) -> None:
        """Publish again the outputs no replica has acknowledged yet (:meth:`PublishOnce.confirm`)."""
        await self._publish_once.confirm()
        service_metrics.OUTPUTS_UNCONFIRMED.set(len(self._publish_once.unconfirmed))

    async def publish_status(self, status_id: str, status: FeedStatus) -> bool:
        """A status of the service itself (a gap, a dead letter, a lost registry…) under ``status_id`` (e.g.
        ``orderflow:md:{AAPL}:dead:1718890000123-0``), once: no log line here, the caller logs what happened. True when
        published now, False when that id was published already. Not fenced by a lease: it is the service's own
        word (a registry lost, a dead letter), not what the rules made of a symbol's stream."""
        return await self._once(status_id, self.keys.status, status, fenced=False)

    async def _alert(self, alert: OrderFlowAlert) -> None:
        latency_ms = (now_ns() - alert.ts_recv) / 1e6
        alert = msgspec.structs.replace(alert, latency_ms=round(latency_ms, 3))
        if not await self._once(alert.id, self.keys.alerts, alert):
            return
        self.stats.alerts += 1
        if self.keep_latencies:
            self.stats.latencies_ms.append(latency_ms)
        service_metrics.ALERTS.labels(alert_type=alert.alert_type, severity=alert.severity).inc()
        service_metrics.ALERT_LATENCY.observe(latency_ms / 1000)
        if alert.alert_type == "large_seller":
            log.warning(logs.LARGE_SELLER_DETECTED, **_alert_fields(alert))
        else:
            log.warning(logs.RED_BURST_DETECTED, **_alert_fields(alert))
        if self.on_output:
            self.on_output(alert)

    async def _exit(self, recommendation: ExitRecommendation) -> None:
        now = now_ns()
        recommendation = msgspec.structs.replace(
            recommendation, latency_ms=round((now - recommendation.ts_recv) / 1e6, 3)
        )
        if self.config.signing_key is not None:
            recommendation = sign(
                recommendation, self.config.signing_key.get_secret_value().encode(), self.config.signing_key_id, now
            )
        if not await self._once(recommendation.id, self.keys.exits, recommendation, self.keys.exit_channel):
            return
        self.stats.exits += 1
        service_metrics.EXIT_RECOMMENDATIONS.inc()
        log.warning(
            logs.EXIT_SIGNAL_TRIGGERED,
            id=recommendation.id,
            symbol=recommendation.symbol,
            trigger=recommendation.trigger,
            alert_ids=list(recommendation.alert_ids),
            reasoning=recommendation.reasoning,
            session=recommendation.session,
            timestamp_utc=recommendation.timestamp_utc,
            latency_ms=recommendation.latency_ms,
            source="detector",
        )
        if self.on_output:
            self.on_output(recommendation)

    async def _status(self, status: FeedStatus) -> None:
        status_id = f"{','.join(status.symbols)}:status:{status.state}:{status.code}:{status.ts_event}"
        if not await self._once(status_id, self.keys.status, status):
            return  # a redelivered event: this status was published already
        log.warning(
            STATUS_EVENTS[status.state],
            symbol=",".join(status.symbols),
            code=status.code,
            detail=status.detail,
            timestamp_utc=ns_to_utc_iso(status.ts_event),
        )
        if status.state in ("calibrating", "calibrated"):
            self._threshold_metrics(status)
        if self.on_output:
            self.on_output(status)

    async def _validation_issue(self, issue: ValidationIssue) -> None:
        service_metrics.VALIDATION_ERRORS.labels(code=issue.code).inc()
        log.error(
            logs.DATA_VALIDATION_ERROR,
            symbol=issue.symbol,
            code=issue.code,
            detail=issue.detail,
            halting=issue.halting,
            timestamp_utc=ns_to_utc_iso(issue.ts_event),
        )

    async def _expired_alerts(self, expired: ExpiredAlerts) -> None:
        log.info(logs.ALERT_WINDOW_EXPIRED, alert_ids=list(expired))

    async def _pulled_order(self, pulled: PulledOrder) -> None:
        log.info(
            logs.LARGE_ORDER_PULLED,
            symbol=pulled.symbol,
            alert_id=pulled.alert_id,
            order_id=pulled.order_id,
            venue=pulled.venue,
            price=format_price(pulled.price),
            shares=pulled.shares,
            rested_seconds=round(pulled.rested_ns / NANOSECONDS_PER_SECOND, 3),
            timestamp_utc=ns_to_utc_iso(pulled.ts_event),
        )

    async def _profile_update(self, update: ProfileUpdate) -> None:
        await self.profiles.save(update.profile)
        log.info("order_flow.profile_saved", symbol=update.profile.symbol, days=list(update.profile.days))

    def _threshold_metrics(self, status: FeedStatus) -> None:
        for symbol in status.symbols:
            thresholds = self.thresholds_of(symbol)
            if thresholds is None:
                continue
            service_metrics.CALIBRATED.labels(symbol=symbol).set(1 if status.state == "calibrated" else 0)
            service_metrics.THRESHOLD_SHARES.labels(symbol=symbol, kind="large_order").set(thresholds.large_order_size)
            service_metrics.THRESHOLD_SHARES.labels(symbol=symbol, kind="large_offer").set(thresholds.offer_size)

    async def _once(
        self, output_id: str, stream: str, message: PublishedOutput, channel: str = "", *, fenced: bool = True
    ) -> bool:
        tag = str(type(message).__struct_config__.tag)  # "alert", "exit", "status"
        symbols = message.symbols if isinstance(message, FeedStatus) else (message.symbol,)
        fence = None
        if fenced and self.fence_of is not None and len(symbols) == 1:  # what the rules made of one symbol's stream
            fence = self.fence_of(symbols[0])
            if fence is None:  # no lease held on it (dropped, handed over): nothing of it may be published now
                self.fenced.add(symbols[0])
                return False
        result = await self._publish_once.publish(
            output_id, stream, tag, encode(message), channel=channel, remember_seconds=DEDUP_SECONDS, fence=fence
        )
        service_metrics.OUTPUTS_UNCONFIRMED.set(len(self._publish_once.unconfirmed))
        if result == FENCED:
            self.fenced.add(symbols[0])
            log.warning("order_flow.lease_lost", symbol=symbols[0], output_id=output_id, detail="publish refused")
            return False
        if result == ALREADY_PUBLISHED:
            self.stats.duplicates_suppressed += 1
            service_metrics.DUPLICATES_SKIPPED.labels(kind=tag).inc()
        return result == PUBLISHED


def _alert_fields(alert: OrderFlowAlert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "symbol": alert.symbol,
        "alert_type": alert.alert_type,
        "severity": alert.severity,
        "source": alert.source,
        "order_size": alert.order_size,
        "price_level": format_price(alert.price_level),
        "volume_ratio": alert.volume_ratio,
        "sell_ratio": alert.sell_ratio,
        "two_sided": alert.two_sided,
        "session": alert.session,
        "timestamp_utc": alert.timestamp_utc,
        "latency_ms": alert.latency_ms,
        "evidence": alert.evidence,
    }
