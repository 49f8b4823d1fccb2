"""What the bot embeds: the exit-recommendation client and a reference evaluator.

    from shared.bus import Bus
    from shared.risk import RiskManagerClient, evaluate

    bus = await Bus.connect("redis://127.0.0.1:6379/0")
    client = RiskManagerClient(bus, name="my-bot")

    async def on_exit(recommendation):
        position = my_positions[recommendation.symbol]
        decision = evaluate(recommendation, position, last_price=my_prices[recommendation.symbol])
        if decision.action == "exit":
            ...  # the bot sells

    await client.run(stop, on_exit=on_exit, on_status=lambda status: ...)

Delivery: recommendations arrive on the pub/sub channel ``orderflow:exit-signals``
(fast) and are also read from the durable stream ``orderflow:exits`` with the
consumer group ``riskmanager-<name>``, so a bot that was down catches up on
start. Each recommendation is handled once per bot name: a ``SET NX`` on its id
claims it before the handler runs, and the stream entry is acknowledged after.
Status events (gaps, halts, feed silence) come from ``orderflow:status``; a
held symbol whose monitoring stops is reported as **unmonitored**.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Literal

from shared import logs
from shared.bus import OUTAGE_ERRORS, Bus, Outage
from shared.errors import BusAuthenticationError, ConsumerGroupMissingError, WireDecodeError
from shared.positions import Position
from shared.prices import format_price, price_to_float
from shared.signing import verify
from shared.timestamps import now_ns
from shared.wire import ExitRecommendation, FeedStatus, decode

log = logs.get_logger(__name__)
HANDLED_SECONDS = 30 * 24 * 3600
UNMONITORED_STATES = frozenset({"monitoring_halted", "gap", "watchdog_silence", "disconnected", "trading_halted"})

Action = Literal["exit", "tighten_stop", "hold"]


@dataclass(frozen=True)
class Decision:
    """What the evaluator recommends. Prices in nano-dollars; P&L in dollars."""

    action: Action
    reasons: tuple[str, ...]
    unrealised_pnl: float
    unrealised_pnl_percent: float
    distance_to_stop_percent: float | None
    new_stop: int = 0


def evaluate(recommendation: ExitRecommendation, position: Position, last_price: int) -> Decision:
    """Reference policy (US3): exit on panic selling or when the stop is near;
    tighten the stop on institutional selling otherwise.

    * a red burst (critical), or any recommendation while in profit → **exit**
      (protect the gain before the drop);
    * losing and within 1 % of the stop → **exit** (the stop is about to fill,
      likely worse);
    * large sellers with room to the stop → **tighten_stop** to 0.5 % under
      the last price (never lower than the current stop);
    * otherwise → **hold**.
    """
    quantity = position.quantity
    pnl = price_to_float(last_price - position.entry_price) * quantity
    pnl_percent = (last_price - position.entry_price) / position.entry_price * 100 * (1 if quantity > 0 else -1)
    distance = None if not position.stop_loss else (last_price - position.stop_loss) / last_price * 100 * (1 if quantity > 0 else -1)
    evidence = f"order flow: {recommendation.reasoning}"
    pnl_text = f"unrealised P&L {pnl:+,.2f} USD ({pnl_percent:+.2f} %)"
    stop_text = "no stop loss" if distance is None else f"{distance:.2f} % above the stop at {format_price(position.stop_loss)}"
    reasons = [evidence, pnl_text, stop_text]
    if recommendation.trigger == "red_burst" or pnl > 0:
        why = "panic selling (red burst)" if recommendation.trigger == "red_burst" else "protect the gain"
        return Decision("exit", (f"exit: {why}", *reasons), pnl, pnl_percent, distance)
    if distance is not None and distance <= 1.0:
        return Decision("exit", ("exit: the stop is within 1 % and sellers are pressing", *reasons), pnl, pnl_percent, distance)
    if quantity > 0:
        tightened = max(position.stop_loss, last_price - last_price // 200)
        if tightened > position.stop_loss:
            return Decision("tighten_stop", (f"tighten the stop to {format_price(tightened)}", *reasons), pnl, pnl_percent,
                            distance, tightened)
    return Decision("hold", ("hold: no rule to act on", *reasons), pnl, pnl_percent, distance)


def log_decision(recommendation: ExitRecommendation, position: Position, last_price: int, decision: Decision) -> None:
    """``order_flow.exit_signal_triggered`` with the decision; ``exit_reason`` is
    ``order_flow_alert`` where it exits, so the spec's measurement queries work."""
    fields = {
        "id": recommendation.id, "symbol": recommendation.symbol, "trigger": recommendation.trigger,
        "decision": decision.action, "reasons": list(decision.reasons), "quantity": position.quantity,
        "entry_price": format_price(position.entry_price), "last_price": format_price(last_price),
        "stop_loss": format_price(position.stop_loss) if position.stop_loss else None,
        "unrealised_pnl": round(decision.unrealised_pnl, 2), "unrealised_pnl_percent": round(decision.unrealised_pnl_percent, 3),
        "alert_ids": list(recommendation.alert_ids), "source": "risk_manager",
    }
    if decision.action == "exit":
        fields["exit_reason"] = "order_flow_alert"
    if decision.new_stop:
        fields["new_stop"] = format_price(decision.new_stop)
    log.warning(logs.EXIT_SIGNAL_TRIGGERED, **fields)


Handler = Callable[[ExitRecommendation], Awaitable[None] | None]
StatusHandler = Callable[[FeedStatus], Awaitable[None] | None]


@dataclass
class ClientStats:
    handled: int = 0
    duplicates: int = 0
    refused: int = 0  # unsigned, forged, unknown key or expired, with signing keys configured
    dead_letters: int = 0  # entries of the exits stream that were not exit recommendations
    statuses: int = 0
    unmonitored: set[str] = field(default_factory=set)


class RiskManagerClient:
    """Receives exit recommendations (live and catch-up) and status events."""

    def __init__(self, bus: Bus, *, name: str = "bot", held_symbols: Callable[[], set[str]] | None = None,
                 signing_keys: dict[str, bytes] | None = None, max_age_seconds: float = 600.0) -> None:
        """``signing_keys`` (key id → the detector's ``ORDER_FLOW_SIGNING_KEY``): only recommendations signed with
        one of them, within ``max_age_seconds``, reach ``on_exit``; the rest are refused, logged and counted.
        None accepts anything on the channel (and says so when it starts)."""
        self.bus = bus
        self.name = name
        self.signing_keys = signing_keys
        self.max_age_ns = int(max_age_seconds * 1e9)
        self.group = f"riskmanager-{name}"
        self.held_symbols = held_symbols
        self.stats = ClientStats()
        self._group_ready = False
        self._last_status: bytes | str | None = None  # the last status entry read (None: not started)
        self._outage = Outage("risk_manager")

    async def _claim(self, recommendation: ExitRecommendation) -> bool:
        key = f"{self.bus.keys.prefix}:riskmanager:{self.name}:handled:{recommendation.id}"
        return bool(await self.bus.client.set(key, b"1", nx=True, ex=HANDLED_SECONDS))

    async def _handle(self, recommendation: ExitRecommendation, on_exit: Handler) -> None:
        if self.signing_keys is not None:
            verdict = verify(recommendation, self.signing_keys, now_ns(), self.max_age_ns)
            if verdict != "authentic":  # refused before it is claimed: a forgery cannot block the genuine one
                self.stats.refused += 1
                log.error("order_flow.recommendation_refused", code=f"recommendation_{verdict}", id=recommendation.id,
                          symbol=recommendation.symbol, key_id=recommendation.key_id, source="risk_manager")
                return
        if not await self._claim(recommendation):
            self.stats.duplicates += 1
            return
        self.stats.handled += 1
        result = on_exit(recommendation)
        if inspect.isawaitable(result):
            await result

    async def run(self, stop: asyncio.Event, *, on_exit: Handler, on_status: StatusHandler | None = None) -> ClientStats:
        """Until ``stop``: catch up from the stream, then follow channel, stream and status.

        A Redis outage of any length is waited out here (the one place): every held symbol is reported
        unmonitored at once (status ``disconnected``, code ``bus_unavailable``, to ``on_status`` too), the
        client reconnects every second, catches up from the stream and reports them resumed (code
        ``bus_recovered``). A lost consumer group (Redis restarted empty) is recreated. Only refused
        credentials end it early."""
        if self.signing_keys is None:
            log.warning("order_flow.recommendations_unsigned", source="risk_manager",
                        detail="no signing key: any writer to Redis can make this bot act (set ORDER_FLOW_SIGNING_KEY "
                               "on the detector and the bot)")
        while not stop.is_set():
            try:
                await self._follow(stop, on_exit, on_status)
            except BusAuthenticationError:
                raise
            except OUTAGE_ERRORS as error:
                await self._bus_down(error, stop, on_status)
            except ConsumerGroupMissingError:
                log.warning("order_flow.consumer_group_recreated", group=self.group, source="risk_manager")
                self._group_ready = False
        return self.stats

    async def _follow(self, stop: asyncio.Event, on_exit: Handler, on_status: StatusHandler | None) -> None:
        if not self._group_ready:
            await self.bus.ensure_group(self.bus.keys.exits, self.group, "$" if self._last_status is None else "0")
            self._group_ready = True
        pubsub = self.bus.client.pubsub()
        try:
            await pubsub.subscribe(self.bus.keys.exit_channel)
            if self._last_status is None:
                newest = await self.bus.client.xrevrange(self.bus.keys.status, count=1)
                self._last_status = newest[0][0] if newest else "0-0"  # statuses from now on
            # catch-up: what was delivered but not acknowledged (a crash), then everything new
            for entry in await self.bus.read_own_pending(self.group, self.name, self.bus.keys.exits):
                await self._from_stream(entry, on_exit)
            await self._bus_back(on_status)
            while not stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                if message is not None:
                    try:
                        recommendation = decode(message["data"])
                    except WireDecodeError:
                        recommendation = None
                    if isinstance(recommendation, ExitRecommendation):
                        await self._handle(recommendation, on_exit)
                for entry in await self.bus.read_group(self.group, self.name, [self.bus.keys.exits], count=100, block_ms=None):
                    await self._from_stream(entry, on_exit)
                rows = await self.bus.client.xread({self.bus.keys.status: self._last_status}, count=100)
                for _stream, entries in rows.items() if isinstance(rows, dict) else rows:
                    for entry_id, fields in entries:
                        self._last_status = entry_id
                        await self._status(next(iter(fields.values())), on_status)
                if message is None and self.bus.embedded:
                    await asyncio.sleep(0.05)
        finally:
            try:
                await pubsub.aclose()
            except OUTAGE_ERRORS:
                pass

    async def _bus_down(self, error: Exception, stop: asyncio.Event, on_status: StatusHandler | None) -> None:
        if self._outage.began(error):
            now = now_ns()
            await self._on_status(FeedStatus(source="risk_manager", state="disconnected", ts_event=now, ts_recv=now,
                                             symbols=tuple(sorted(self._held())), code="bus_unavailable",
                                             detail=f"Redis unreachable: no recommendation can arrive ({str(error)[:200]})"), on_status)
        await self._outage.pause(stop)

    async def _bus_back(self, on_status: StatusHandler | None) -> None:
        down = self._outage.ended()
        if down is None:
            return
        now = now_ns()
        await self._on_status(FeedStatus(source="risk_manager", state="monitoring_resumed", ts_event=now, ts_recv=now,
                                         symbols=tuple(sorted(self._held())), code="bus_recovered",
                                         detail=f"Redis back after {down} s; caught up from the exits stream"), on_status)

    def _held(self) -> set[str]:
        return self.held_symbols() if self.held_symbols else set()

    async def _from_stream(self, entry, on_exit: Handler) -> None:
        """One entry of the exits stream; one that is not an exit recommendation (undecodable, or another type)
        is moved to ``<stream>:dead`` with the reason, logged and counted: it can never stall the client."""
        try:
            recommendation = decode(entry.payload)
            problem = None if isinstance(recommendation, ExitRecommendation) else ("wrong_type", f"a {type(recommendation).__name__}")
        except WireDecodeError as error:
            problem = (error.code, str(error))
        if problem is None:
            await self._handle(recommendation, on_exit)
        else:
            code, reason = problem
            self.stats.dead_letters += 1
            await self.bus.dead_letter(entry, code, reason, reader=self.group, source="risk_manager")
        await self.bus.ack(entry.stream, self.group, [entry.entry_id])

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
            log.warning("order_flow.symbol_unmonitored", symbols=sorted(affected), state=status.state, code=status.code,
                        detail=status.detail, source="risk_manager")
        elif status.state == "monitoring_resumed":
            self.stats.unmonitored -= set(status.symbols)
        if on_status is not None:
            result = on_status(status)
            if inspect.isawaitable(result):
                await result
