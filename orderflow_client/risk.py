"""What the bot embeds: the exit-recommendation client and a reference evaluator.

    from orderflow_client.bus import Bus
    from orderflow_client.risk import RiskManagerClient, evaluate

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
start (a new bot name from ``catch_up_seconds`` back). **At least once per bot
name until the handler returns**: a lease (``SET NX``, 30 s) on the id keeps two
processes of one bot from running it together; the id is marked done only when
the handler returns, and only then is the stream entry acknowledged. A handler
that raises (a broker rejection) is retried with backoff (0.5 s doubling, at
most 30 s); after ``max_attempts`` failures the recommendation is parked in
``orderflow:exits:dead`` with a ``dead_letter`` status and a log line naming it.
A recommendation already done is never handled again (duplicates suppressed).
Handlers must therefore tolerate a second call after a crash between their
effect and the mark (check the position is still open).
Status events (gaps, halts, feed silence) come from ``orderflow:status``; a
held symbol whose monitoring stops is reported as **unmonitored**.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from orderflow_client import logs
from orderflow_client.bus import OUTAGE_ERRORS, Bus, BusEntry, Outage
from orderflow_client.errors import BusAuthenticationError, ConsumerGroupMissingError, WireDecodeError
from orderflow_client.positions import Position
from orderflow_client.prices import format_price, price_to_float, round_to_tick
from orderflow_client.signing import verify
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import ExitRecommendation, FeedStatus, Trade, decode, encode

log = logs.get_logger(__name__)
HANDLED_SECONDS = 30 * 24 * 3600
LEASE_SECONDS = 30  # one process of a bot name works on a recommendation at a time; a crashed one's lease lapses
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
      the last price, rounded down to a valid tick (a penny at $1 and above,
      $0.0001 below: brokers refuse sub-penny stops), never lower than the
      current stop;
    * otherwise → **hold**.
    """
    quantity = position.quantity
    pnl = price_to_float(last_price - position.entry_price) * quantity
    pnl_percent = (last_price - position.entry_price) / position.entry_price * 100 * (1 if quantity > 0 else -1)
    distance = (
        None
        if not position.stop_loss
        else (last_price - position.stop_loss) / last_price * 100 * (1 if quantity > 0 else -1)
    )
    evidence = f"order flow: {recommendation.reasoning}"
    pnl_text = f"unrealised P&L {pnl:+,.2f} USD ({pnl_percent:+.2f} %)"
    stop_text = (
        "no stop loss" if distance is None else f"{distance:.2f} % above the stop at {format_price(position.stop_loss)}"
    )
    reasons = [evidence, pnl_text, stop_text]
    if recommendation.trigger == "red_burst" or pnl > 0:
        why = "panic selling (red burst)" if recommendation.trigger == "red_burst" else "protect the gain"
        return Decision("exit", (f"exit: {why}", *reasons), pnl, pnl_percent, distance)
    if distance is not None and distance <= 1.0:
        return Decision(
            "exit", ("exit: the stop is within 1 % and sellers are pressing", *reasons), pnl, pnl_percent, distance
        )
    if quantity > 0:
        tightened = max(
            position.stop_loss, round_to_tick(last_price - last_price // 200, down=True)
        )  # a price a broker takes
        if tightened > position.stop_loss:
            return Decision(
                "tighten_stop",
                (f"tighten the stop to {format_price(tightened)}", *reasons),
                pnl,
                pnl_percent,
                distance,
                tightened,
            )
    return Decision("hold", ("hold: no rule to act on", *reasons), pnl, pnl_percent, distance)


async def last_trade_price(bus: Bus, symbol: str, *, look_back: int = 500) -> int | None:
    """The last print of ``symbol`` on its market stream (nano-dollars), None when none of the last ``look_back``
    entries is a print."""
    for _entry_id, fields in await bus.client.xrevrange(bus.keys.market(symbol), count=look_back):
        try:
            event = decode(next(iter(fields.values())))
        except WireDecodeError:
            continue
        if isinstance(event, Trade):
            return event.price
    return None


def log_decision(recommendation: ExitRecommendation, position: Position, last_price: int, decision: Decision) -> None:
    """``order_flow.exit_signal_triggered`` with the decision; ``exit_reason`` is
    ``order_flow_alert`` where it exits, so the spec's measurement queries work."""
    fields = {
        "id": recommendation.id,
        "symbol": recommendation.symbol,
        "trigger": recommendation.trigger,
        "decision": decision.action,
        "reasons": list(decision.reasons),
        "quantity": position.quantity,
        "entry_price": format_price(position.entry_price),
        "last_price": format_price(last_price),
        "stop_loss": format_price(position.stop_loss) if position.stop_loss else None,
        "unrealised_pnl": round(decision.unrealised_pnl, 2),
        "unrealised_pnl_percent": round(decision.unrealised_pnl_percent, 3),
        "alert_ids": list(recommendation.alert_ids),
        "source": "risk_manager",
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
    handler_failures: int = 0  # calls of on_exit that raised (each is retried)
    parked: int = 0  # recommendations given up on after max_attempts failures (in orderflow:exits:dead)
    refused: int = 0  # unsigned, forged, unknown key or expired, with signing keys configured
    dead_letters: int = 0  # entries of the exits stream that were not exit recommendations
    statuses: int = 0
    unmonitored: set[str] = field(default_factory=set)


@dataclass
class _Retry:
    """A recommendation whose handler has not yet returned: its stream entries (acknowledged when it is done),
    the calls so far and when (monotonic s) to call again."""

    recommendation: ExitRecommendation
    entries: list[BusEntry]
    attempts: int = 0
    due: float = 0.0


class RiskManagerClient:
    """Receives exit recommendations (live and catch-up) and status events."""

    def __init__(
        self,
        bus: Bus,
        *,
        name: str = "bot",
        held_symbols: Callable[[], set[str]] | None = None,
        signing_keys: dict[str, bytes] | None = None,
        max_age_seconds: float = 600.0,
        max_attempts: int = 5,
        catch_up_seconds: float = 120.0,
    ) -> None:
        """``signing_keys`` (key id → the detector's ``ORDER_FLOW_SIGNING_KEY``): only recommendations signed with
        one of them, within ``max_age_seconds``, reach ``on_exit``; the rest are refused, logged and counted.
        None accepts anything on the channel (and says so when it starts). ``max_attempts``: calls of a raising
        ``on_exit`` before the recommendation is parked. ``catch_up_seconds``: how far back a bot name's first
        start reads the stream (the alert window by default: older recommendations are stale)."""
        if max_attempts < 1 or catch_up_seconds < 0:
            raise ValueError("max_attempts must be >= 1 and catch_up_seconds >= 0")
        self.max_attempts = max_attempts
        self.catch_up_seconds = catch_up_seconds
        self._retries: dict[str, _Retry] = {}  # recommendation id -> its pending retry
        self._lease = f"working:{secrets.token_hex(8)}".encode()  # this process's mark on a recommendation in hand
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

    def _key(self, recommendation: ExitRecommendation) -> str:
        return f"{self.bus.keys.prefix}:riskmanager:{self.name}:handled:{recommendation.id}"

    async def _attempt(self, recommendation: ExitRecommendation, on_exit: Handler, attempts: int) -> str:
        """One try at a recommendation: ``done`` (handled now, or refused), ``duplicate`` (done before),
        ``busy`` (another process of this bot has it), ``failed`` (the handler raised: try again) or ``parked``."""
        if self.signing_keys is not None:
            verdict = verify(recommendation, self.signing_keys, now_ns(), self.max_age_ns)
            if verdict != "authentic":  # refused before anything is marked: a forgery cannot block the genuine one
                self.stats.refused += 1
                log.error(
                    "order_flow.recommendation_refused",
                    code=f"recommendation_{verdict}",
                    id=recommendation.id,
                    symbol=recommendation.symbol,
                    key_id=recommendation.key_id,
                    source="risk_manager",
                )
                return "done"
        key = self._key(recommendation)
        if not await self.bus.client.set(key, self._lease, nx=True, ex=LEASE_SECONDS):
            holder = await self.bus.client.get(key)
            if holder in (b"done", b"parked"):
                self.stats.duplicates += 1
                return "duplicate"
            if holder is not None:
                return "busy"
            return await self._attempt(recommendation, on_exit, attempts)  # the lease lapsed meanwhile
        try:
            result = on_exit(recommendation)
            if inspect.isawaitable(result):
                await result
        except Exception as error:
            self.stats.handler_failures += 1
            await self.bus.client.delete(key)
            log.error(
                "order_flow.exit_handler_failed",
                code="handler_failed",
                id=recommendation.id,
                symbol=recommendation.symbol,
                attempt=attempts,
                of=self.max_attempts,
                error=f"{type(error).__name__}: {str(error)[:300]}",
                source="risk_manager",
            )
            if attempts >= self.max_attempts:
                await self.bus.client.set(key, b"parked", ex=HANDLED_SECONDS)
                return "parked"
            return "failed"
        await self.bus.client.set(key, b"done", ex=HANDLED_SECONDS)
        self.stats.handled += 1
        return "done"

    async def _deliver(
        self,
        recommendation: ExitRecommendation,
        entry: BusEntry | None,
        on_exit: Handler,
        on_status: StatusHandler | None,
    ) -> None:
        """A recommendation from the channel (``entry`` None) or the stream: tried now unless a retry of it is
        already scheduled (then the entry waits with it, to be acknowledged when it is done)."""
        retry = self._retries.get(recommendation.id)
        if retry is not None:
            if entry is not None:
                retry.entries.append(entry)
            return
        retry = _Retry(recommendation, [entry] if entry is not None else [])
        await self._try(retry, on_exit, on_status)

    async def _try(self, retry: _Retry, on_exit: Handler, on_status: StatusHandler | None) -> None:
        retry.attempts += 1
        outcome = await self._attempt(retry.recommendation, on_exit, retry.attempts)
        identifier = retry.recommendation.id
        if outcome in ("failed", "busy"):
            if outcome == "busy":
                retry.attempts -= 1  # not this process's failure: wait for the other's lease
            delay = LEASE_SECONDS if outcome == "busy" else min(30.0, 0.5 * 2 ** (retry.attempts - 1))
            retry.due = time.monotonic() + delay
            self._retries[identifier] = retry
            return
        self._retries.pop(identifier, None)
        if outcome == "parked":
            await self._park(retry, on_status)
        for entry in retry.entries:
            await self.bus.ack(entry.stream, self.group, [entry.entry_id])

    async def _park(self, retry: _Retry, on_status: StatusHandler | None) -> None:
        """The handler failed ``max_attempts`` times: the recommendation goes to ``orderflow:exits:dead`` (its stream
        entry, or a copy of what came on the channel) with a status naming it; it is not handled again."""
        recommendation = retry.recommendation
        self.stats.parked += 1
        entry = (
            retry.entries[0]
            if retry.entries
            else BusEntry(self.bus.keys.exits, b"channel", encode(recommendation), b"exit")
        )
        reason = f"on_exit raised {retry.attempts} times for {recommendation.id}"
        await self.bus.dead_letter(entry, "handler_failed", reason, reader=self.group, source="risk_manager")
        log.error(
            "order_flow.recommendation_parked",
            code="handler_failed",
            id=recommendation.id,
            symbol=recommendation.symbol,
            attempts=retry.attempts,
            source="risk_manager",
        )
        now = now_ns()
        await self._on_status(
            FeedStatus(
                source="risk_manager",
                state="dead_letter",
                ts_event=now,
                ts_recv=now,
                symbols=(recommendation.symbol,),
                code="handler_failed",
                detail=f"{reason}: parked in {self.bus.keys.dead_letters(self.bus.keys.exits)}",
            ),
            on_status,
        )

    async def _retry_due(self, on_exit: Handler, on_status: StatusHandler | None) -> None:
        now = time.monotonic()
        for retry in [retry for retry in self._retries.values() if retry.due <= now]:
            await self._try(retry, on_exit, on_status)

    async def run(
        self, stop: asyncio.Event, *, on_exit: Handler, on_status: StatusHandler | None = None
    ) -> ClientStats:
        """Until ``stop``: catch up from the stream, then follow channel, stream and status.

        A Redis outage of any length is waited out here (the one place): every held symbol is reported
        unmonitored at once (status ``disconnected``, code ``bus_unavailable``, to ``on_status`` too), the
        client reconnects every second, catches up from the stream and reports them resumed (code
        ``bus_recovered``). A lost consumer group (Redis restarted empty) is recreated. Only refused
        credentials end it early."""
        if self.signing_keys is None:
            log.warning(
                "order_flow.recommendations_unsigned",
                source="risk_manager",
                detail="no signing key: any writer to Redis can make this bot act (set ORDER_FLOW_SIGNING_KEY "
                "on the detector and the bot)",
            )
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
            # a new bot name reads the recommendations of the last catch_up_seconds; a recreated group all that remain
            start = (
                f"{max(0, int(time.time() * 1000 - self.catch_up_seconds * 1000))}-0"
                if self._last_status is None
                else "0"
            )
            await self.bus.ensure_group(self.bus.keys.exits, self.group, start)
            self._group_ready = True
        pubsub = self.bus.client.pubsub()
        try:
            await pubsub.subscribe(self.bus.keys.exit_channel)
            if self._last_status is None:
                newest = await self.bus.client.xrevrange(self.bus.keys.status, count=1)
                self._last_status = newest[0][0] if newest else "0-0"  # statuses from now on
            # catch-up: what was delivered but not acknowledged (a crash), then everything new
            for entry in await self.bus.read_own_pending(self.group, self.name, self.bus.keys.exits):
                await self._from_stream(entry, on_exit, on_status)
            await self._bus_back(on_status)
            while not stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                if message is not None:
                    try:
                        recommendation = decode(message["data"])
                    except WireDecodeError:
                        recommendation = None
                    if isinstance(recommendation, ExitRecommendation):
                        await self._deliver(recommendation, None, on_exit, on_status)
                for entry in await self.bus.read_group(
                    self.group, self.name, [self.bus.keys.exits], count=100, block_ms=None
                ):
                    await self._from_stream(entry, on_exit, on_status)
                if self._retries:
                    await self._retry_due(on_exit, on_status)
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

    async def _from_stream(self, entry: BusEntry, on_exit: Handler, on_status: StatusHandler | None) -> None:
        """One entry of the exits stream; one that is not an exit recommendation (undecodable, or another type)
        is moved to ``<stream>:dead`` with the reason, logged and counted: it can never stall the client."""
        try:
            recommendation = decode(entry.payload)
            problem = (
                None
                if isinstance(recommendation, ExitRecommendation)
                else ("wrong_type", f"a {type(recommendation).__name__}")
            )
        except WireDecodeError as error:
            problem = (error.code, str(error))
        if problem is None:
            await self._deliver(recommendation, entry, on_exit, on_status)  # acknowledged when done
            return
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
