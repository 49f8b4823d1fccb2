"""Building what the rules publish: alerts, exit recommendations and the detector's own statuses.

The rules (:mod:`services.detector.engine`, :mod:`services.detector.exits`)
decide *when* and *how severe*; this module decides what the message says:
its deterministic id (derived from the triggering events, so a replay or a
redelivery gives the same id), its evidence and its reasoning. Keeping every
id format in one place keeps them stable. Prices in nano-dollars, times in ns
of event time (a burst's episode in UTC seconds). Ids from the shared days::

    AIG:large_seller:tape:1381153667960000000:2016                   first print's ts and trade id
    AIG:large_seller:tape:1381240300150000000:2821:critical          an escalation of such an order
    AAPL:large_seller:book:585600000000:1340288920629187338          price, since
    AMZN:large_seller:iceberg:223900000000:1340285523127811385       price, the first order's add (MBO)
    AAPL:red_burst:1340287230:warning                                episode second, severity
    AIG:exit:large_sellers:AIG:large_seller:tape:1381262391759000000:43129   the third seller's id
    AIG:exit:red_burst:AIG:red_burst:1381160768:critical             the critical burst's id
    SPY:market_selloff:1381171800000000000                           the index's episode start (ts)
    SPY:exit:market_selloff:SPY:market_selloff:1381171800000000000   the market_selloff alert's id
"""

from __future__ import annotations

from orderflow_client.prices import format_price
from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND, NANOSECONDS_PER_SECOND, ns_to_utc_iso
from orderflow_client.wire import (
    EvidenceValue,
    ExitRecommendation,
    FeedState,
    FeedStatus,
    MarketContext,
    OrderFlowAlert,
    Severity,
    Trade,
    TradingSession,
)
from services.detector.book import Appearance
from services.detector.bursts import BurstSignal
from services.detector.orders import Iceberg, Pulled, PulledOrder, RestingOffer
from services.detector.tape import AggressiveOrder

Evidence = dict[str, EvidenceValue]


def large_order_alert(
    symbol: str,
    order: AggressiveOrder,
    severity: Severity,
    session: TradingSession,
    threshold_evidence: Evidence,
    *,
    escalation: bool,
) -> OrderFlowAlert:
    """An aggressive sell order whose running size crossed the threshold. Its id is its first print's
    (``SYM:large_seller:tape:<first ts>:<first trade id>``); an ``escalation`` (a warning order now
    critical) adds ``:critical`` and names the first alert in ``evidence["escalates"]``."""
    first_id = f"{symbol}:large_seller:tape:{order.first_ts}:{order.first_trade_id}"
    evidence: Evidence = {
        "vwap": format_price(order.vwap),
        "worst_price": format_price(order.worst_price),
        "bid_before": format_price(order.bid_before),
        "prints": order.prints,
        "duration_ms": round((order.last_ts - order.first_ts) / NANOSECONDS_PER_MILLISECOND, 3),
        "first_ts_utc": ns_to_utc_iso(order.first_ts),
        "sides": "inferred" if order.inferred_prints else "feed",  # which view judged the seller
        **threshold_evidence,
    }
    if escalation:
        evidence["escalates"] = first_id  # the same seller, now critical: not another seller for the exit rule
    return OrderFlowAlert(
        id=f"{first_id}:critical" if escalation else first_id,
        symbol=symbol,
        alert_type="large_seller",
        severity=severity,
        source="tape",
        ts_event=order.last_ts,
        ts_recv=order.last_ts_recv,
        timestamp_utc=ns_to_utc_iso(order.last_ts),
        order_size=order.size,
        price_level=order.worst_price,
        session=session,
        evidence=evidence,
    )


def large_offer_alert(
    symbol: str,
    appearance: Appearance,
    ts: int,
    ts_recv: int,
    severity: Severity,
    session: TradingSession,
    threshold_evidence: Evidence,
    two_sided: bool,
    largest_bid: int,
    orders: list[RestingOffer] | None = None,
) -> OrderFlowAlert:
    """A large offer that rested long enough, as of ``ts`` (``SYM:large_seller:book:<price>:<since ts>``).
    ``orders``: the orders resting at its price, largest first, when the source gives orders (the view is then
    ``orders``: how many, and the largest one's id and size, whether it is one seller)."""
    evidence: Evidence = {
        "rested_seconds": round((ts - appearance.start_ts) / NANOSECONDS_PER_SECOND, 3),
        "since_utc": ns_to_utc_iso(appearance.start_ts),
        "largest_bid": largest_bid,
        "view": appearance.view,  # which view judged it: the book's depth or the NBBO
        "level": appearance.level,  # 0: the best ask when it appeared
        "levels_shown": appearance.levels_shown,
        **threshold_evidence,
    }
    if orders is not None:
        evidence["view"] = "orders"
        evidence["orders_at_level"] = len(orders)
        if orders:
            evidence["largest_order_id"] = orders[0].order_id
            evidence["largest_order_shares"] = orders[0].size
    return OrderFlowAlert(
        id=f"{symbol}:large_seller:book:{appearance.price}:{appearance.start_ts}",
        symbol=symbol,
        alert_type="large_seller",
        severity=severity,
        source="book",
        ts_event=ts,
        ts_recv=ts_recv,
        timestamp_utc=ns_to_utc_iso(ts),
        order_size=appearance.size,
        price_level=appearance.price,
        two_sided=two_sided,
        session=session,
        evidence=evidence,
    )


def iceberg_alert(
    symbol: str, iceberg: Iceberg, threshold: int, session: TradingSession, threshold_evidence: Evidence
) -> OrderFlowAlert:
    """A seller refilling a small offer who has now traded ``threshold`` shares
    (``SYM:large_seller:iceberg:<price>:<first order's add ts>``), as of the fill that crossed it; ``critical`` when
    that fill took it to twice the threshold."""
    chain = iceberg.chain
    return OrderFlowAlert(
        id=f"{symbol}:large_seller:iceberg:{chain.price}:{chain.first_ts}",
        symbol=symbol,
        alert_type="large_seller",
        severity="critical" if chain.traded >= 2 * threshold else "warning",
        source="book",
        ts_event=iceberg.ts,
        ts_recv=iceberg.ts_recv,
        timestamp_utc=ns_to_utc_iso(iceberg.ts),
        order_size=chain.traded,
        price_level=chain.price,
        session=session,
        evidence={
            "view": "orders",
            "iceberg": True,
            "venue": chain.venue,
            "shown_shares": chain.shown,
            "refills": chain.refills,
            "traded_shares": chain.traded,
            "first_order_id": chain.first_order_id,
            "since_utc": ns_to_utc_iso(chain.first_ts),
            "duration_seconds": round((iceberg.ts - chain.first_ts) / NANOSECONDS_PER_SECOND, 3),
            **threshold_evidence,
        },
    )


def red_burst_alert(
    symbol: str,
    signal: BurstSignal,
    trade: Trade,
    session: TradingSession,
    *,
    threshold: float,
    spike_seconds: int,
    baseline_seconds: int,
) -> OrderFlowAlert:
    """A red burst raised at ``trade`` (``SYM:red_burst:<episode second>:<severity>``)."""
    reading = signal.reading
    return OrderFlowAlert(
        id=f"{symbol}:red_burst:{signal.episode_second}:{signal.severity}",
        symbol=symbol,
        alert_type="red_burst",
        severity=signal.severity,
        source="tape",
        ts_event=trade.ts_event,
        ts_recv=trade.ts_recv,
        timestamp_utc=ns_to_utc_iso(trade.ts_event),
        order_size=reading.spike_volume,
        price_level=trade.price,
        volume_ratio=round(reading.ratio, 4),
        sell_ratio=round(reading.sell_ratio, 4),
        session=session,
        evidence={
            "spike_volume": reading.spike_volume,
            "baseline_average": round(reading.baseline_average, 1),
            "sell_volume": reading.sell_volume,
            "buy_volume": reading.buy_volume,
            "spike_seconds": spike_seconds,
            "baseline_seconds": baseline_seconds,
            "threshold": threshold,
            "threshold_source": "intraday_curve" if reading.curve_factor != 1.0 else "trailing_baseline",
            "curve_factor": round(reading.curve_factor, 3),
        },
    )


def large_sellers_exit(trigger: OrderFlowAlert, alerts: list[OrderFlowAlert], window_ns: int) -> ExitRecommendation:
    """The exit recommendation of a large-seller episode, raised by ``trigger`` (the last of ``alerts``)."""
    total = sum(alert.order_size for alert in alerts)
    span = (alerts[-1].ts_event - alerts[0].ts_event) / NANOSECONDS_PER_SECOND
    parts = ", ".join(f"{alert.order_size:,} @ {format_price(alert.price_level)} ({alert.source})" for alert in alerts)
    reasoning = (
        f"{len(alerts)} large sellers within {span:.0f} s (window {window_ns // NANOSECONDS_PER_SECOND} s): {parts}; "
        f"{total:,} shares sold aggressively into the bid. Institutional selling pressure: consider exiting "
        f"or tightening the stop."
    )
    return ExitRecommendation(
        id=f"{trigger.symbol}:exit:large_sellers:{trigger.id}",
        symbol=trigger.symbol,
        trigger="large_sellers",
        ts_event=trigger.ts_event,
        ts_recv=trigger.ts_recv,
        timestamp_utc=ns_to_utc_iso(trigger.ts_event),
        alert_ids=tuple(alert.id for alert in alerts),
        reasoning=reasoning,
        severity="critical",
        session=trigger.session,
        evidence={
            "alerts": len(alerts),
            "shares": total,
            "span_seconds": round(span, 3),
            "lowest_price": format_price(min(alert.price_level for alert in alerts)),
        },
    )


def red_burst_exit(alert: OrderFlowAlert) -> ExitRecommendation:
    """The exit recommendation of a critical red burst."""
    reasoning = (
        f"Red burst: volume {alert.volume_ratio:.1f}x the 5-minute average with {alert.sell_ratio:.0%} of it "
        f"sold aggressively. Panic selling: consider exiting or tightening the stop."
    )
    return ExitRecommendation(
        id=f"{alert.symbol}:exit:red_burst:{alert.id}",
        symbol=alert.symbol,
        trigger="red_burst",
        ts_event=alert.ts_event,
        ts_recv=alert.ts_recv,
        timestamp_utc=alert.timestamp_utc,
        alert_ids=(alert.id,),
        reasoning=reasoning,
        severity="critical",
        session=alert.session,
        evidence={"volume_ratio": round(alert.volume_ratio, 3), "sell_ratio": round(alert.sell_ratio, 3)},
    )


def market_selloff_alert(
    index: str,
    *,
    episode_start: int,
    ts: int,
    ts_recv: int,
    severity: Severity,
    session: TradingSession,
    price: int,
    sell_share: float,
    sell_volume: int,
    evidence: Evidence,
    context: MarketContext,
) -> OrderFlowAlert:
    """The market itself sold: ``index``'s sell-off episode that started at ``episode_start`` (ns), raised at
    ``ts`` (``SYM:market_selloff:<episode start ts>``). ``price`` is the index's (nano-dollars); ``evidence``
    says which of the fall and the exit rule held (:class:`services.detector.exits.SelloffRule`)."""
    return OrderFlowAlert(
        id=f"{index}:market_selloff:{episode_start}",
        symbol=index,
        alert_type="market_selloff",
        severity=severity,
        source="index",
        ts_event=ts,
        ts_recv=ts_recv,
        timestamp_utc=ns_to_utc_iso(ts),
        order_size=sell_volume,
        price_level=price,
        sell_ratio=round(sell_share, 4),
        session=session,
        evidence=evidence,
        context=context,
    )


def market_selloff_exit(alert: OrderFlowAlert, positions: tuple[str, ...]) -> ExitRecommendation:
    """The market-scope exit of a market_selloff alert, naming every open position ``positions`` (sorted)."""
    evidence = alert.evidence
    fall = f"moved {float(evidence.get('index_return_bps', 0.0)):+.1f} bps in {evidence.get('window_seconds', 0)} s"
    reasoning = (
        f"Market sell-off: {alert.symbol} {fall} (a fall of {evidence.get('threshold_bps', 0)} bps counts"
        f"{'; its own exit rule fired: large sellers or a critical red burst' if evidence.get('exit_rule') else ''}). "
        f"Every open position ({', '.join(positions) or 'none'}) is exposed: consider exiting or hedging."
    )
    return ExitRecommendation(
        id=f"{alert.symbol}:exit:market_selloff:{alert.id}",
        symbol=alert.symbol,
        trigger="market_selloff",
        ts_event=alert.ts_event,
        ts_recv=alert.ts_recv,
        timestamp_utc=alert.timestamp_utc,
        alert_ids=(alert.id,),
        reasoning=reasoning,
        severity=alert.severity,
        session=alert.session,
        evidence=dict(evidence),
        scope="market",
        symbols=positions,
        context=alert.context,
    )


def detector_status(
    symbol: str, state: FeedState, ts: int, code: str, detail: str, *, gap_start_ns: int = 0, gap_end_ns: int = 0
) -> FeedStatus:
    """A status the detector publishes about one symbol as of ``ts`` (event time for monitoring halted or
    resumed and thresholds calibrating or calibrated; wall-clock time for its consumer's gaps, whose interval
    ``gap_start_ns``/``gap_end_ns`` bound when known)."""
    return FeedStatus(
        source="detector",
        state=state,
        ts_event=ts,
        ts_recv=ts,
        symbols=(symbol,),
        code=code,
        detail=detail,
        gap_start_ns=gap_start_ns,
        gap_end_ns=gap_end_ns,
    )


def pulled_order(symbol: str, pulled: Pulled) -> PulledOrder:
    """What ``order_flow.large_order_pulled`` says of a named large order cancelled without trading."""
    order = pulled.order
    rested = pulled.ts - order.added_ts
    return PulledOrder(symbol, order.named_by, order.order_id, order.venue, order.price, order.shown, rested, pulled.ts)
