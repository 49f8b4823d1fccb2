"""What an asyncio bot embeds: the exit-recommendation client (the reference evaluator is in
:mod:`orderflow_client.decisions`).

    from orderflow_client.bus.connection import Bus
    from orderflow_client.decisions import evaluate
    from orderflow_client.risk import RiskManagerClient

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
The lease is renewed while ``on_exit`` runs (it may take longer than the lease:
a broker call), so make a slow handler ``async`` (or use the threaded client).
**Opt-ins**: ``on_exit`` gets only the ``scopes`` and ``actions`` the bot opted into (by default ``("symbol",)``,
``("exit",)``: a stock's own exit, to act on); the rest (a ``watch``, a ``market`` scope) is acknowledged, counted
(``stats.not_delivered``) and logged once (``order_flow.recommendation_not_delivered``).
A market-scope recommendation (``scope == "market"``: the index is sold), once
opted into, reaches ``on_exit`` once per held position its ``symbols`` name
(every one without ``held_symbols``), as
:func:`orderflow_client.exit_policy.for_position`: each position has its own
lease and mark (``<id>@<symbol>``), so a retry calls only the positions that
failed and no process calls one twice; the recommendation is done when all are.
What to do with each: :class:`orderflow_client.exit_policy.ExitPolicy`.
Status events (gaps, halts, feed silence) come from ``orderflow:status``; a
held symbol whose monitoring stops is reported as **unmonitored**.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from orderflow_client import logs
from orderflow_client.bus.calls import OUTAGE_ERRORS
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.marks import HandledMarks
from orderflow_client.bus.outage import Outage
from orderflow_client.bus.streams import BusEntry, as_text
from orderflow_client.errors import BusAuthenticationError, ConsumerGroupMissingError, WireDecodeError
from orderflow_client.exit_policy import for_position, named_positions, position_id
from orderflow_client.risk_status import StatusHandler, StatusReports
from orderflow_client.signing import verify
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import ExitAction, ExitRecommendation, ExitScope, decode

log = logs.get_logger(__name__)
HANDLED_SECONDS = 30 * 24 * 3600
LEASE_SECONDS = 30  # one process of a bot name works on a recommendation at a time; a crashed one's lease lapses
SCOPES: tuple[ExitScope, ...] = ("symbol", "market")
ACTIONS: tuple[ExitAction, ...] = ("exit", "watch")
DEFAULT_SCOPES: tuple[ExitScope, ...] = ("symbol",)  # what a bot gets unless it opts into more: a stock's own exit
DEFAULT_ACTIONS: tuple[ExitAction, ...] = ("exit",)
REMEMBERED_NOT_DELIVERED = 10_000  # ids of recommendations not delivered, kept to log each once

Handler = Callable[[ExitRecommendation], Awaitable[None] | None]


@dataclass
class ClientStats:
    handled: int = 0  # calls of on_exit that returned (a market-scope recommendation: one per position)
    duplicates: int = 0
    handler_failures: int = 0  # calls of on_exit that raised (each is retried)
    parked: int = 0  # recommendations given up on after max_attempts failures (in orderflow:exits:dead)
    refused: int = 0  # unsigned, forged, unknown key or expired, with signing keys configured
    dead_letters: int = 0  # entries of the exits stream that were not exit recommendations
    not_delivered: int = 0  # recommendations of a scope or action the bot did not opt into (acknowledged, logged)
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
    parked: tuple[str, ...] = ()  # the positions given up on (a market-scope recommendation's, or its symbol)


class RiskManagerClient(StatusReports):
    """Receives exit recommendations (live and catch-up) and status events."""

    stats: ClientStats

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
        scopes: Collection[ExitScope] = DEFAULT_SCOPES,
        actions: Collection[ExitAction] = DEFAULT_ACTIONS,
        lease_seconds: int = LEASE_SECONDS,
    ) -> None:
        """``signing_keys`` (key id → the detector's ``ORDER_FLOW_SIGNING_KEY``): only recommendations signed with
        one of them, within ``max_age_seconds``, reach ``on_exit``; the rest are refused, logged and counted.
        None accepts anything on the channel (and says so when it starts). ``max_attempts``: calls of a raising
        ``on_exit`` before the recommendation is parked. ``catch_up_seconds``: how far back a bot name's first
        start reads the stream (the alert window by default: older recommendations are stale). ``scopes`` and
        ``actions``: what reaches ``on_exit`` (see the module docstring), e.g. ``scopes=("symbol", "market"),
        actions=("exit", "watch")`` for a bot that decides each with an ExitPolicy. ``lease_seconds``: how long a
        crashed process's lease on a recommendation (or position) lasts; renewed while ``on_exit`` runs."""
        if max_attempts < 1 or catch_up_seconds < 0 or lease_seconds < 1:
            raise ValueError("max_attempts and lease_seconds must be >= 1 and catch_up_seconds >= 0")
        if not set(scopes) <= set(SCOPES) or not set(actions) <= set(ACTIONS):
            raise ValueError(f"scopes are some of {SCOPES} and actions some of {ACTIONS}, not {scopes} and {actions}")
        self.scopes, self.actions = frozenset(scopes), frozenset(actions)
        self.lease_seconds = lease_seconds
        self._not_delivered: dict[str, None] = {}  # ids logged as not delivered (oldest first)
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
        self._last_status: str | None = None  # the last status entry read (None: not started)
        self._outage = Outage("risk_manager")
        self._marks = HandledMarks(bus, name)

    async def _attempt(self, retry: _Retry, on_exit: Handler) -> str:
        """One try at a recommendation: ``done`` (handled now, or refused), ``duplicate`` (done before),
        ``busy`` (another process of this bot has it), ``failed`` (the handler raised: try again) or ``parked``."""
        recommendation, attempts = retry.recommendation, retry.attempts
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
        if recommendation.scope not in self.scopes or recommendation.action not in self.actions:
            self._skip(recommendation)
            return "done"
        identifier = recommendation.id
        if not await self._marks.take_lease(identifier, self._lease, self.lease_seconds):
            holder = await self._marks.holder(identifier)
            if holder in (b"done", b"parked"):
                self.stats.duplicates += 1
                return "duplicate"
            if holder is not None:
                return "busy"
            return await self._attempt(retry, on_exit)  # the lease lapsed meanwhile
        if recommendation.scope == "market":
            return await self._positions(retry, on_exit)
        if not await self._call(on_exit, recommendation, attempts, (identifier,)):
            await self._marks.release(identifier, self._lease)
            if attempts >= self.max_attempts:
                await self._marks.finish(identifier, b"parked", HANDLED_SECONDS)
                retry.parked = (recommendation.symbol,)
                return "parked"
            return "failed"
        await self._marks.finish(identifier, b"done", HANDLED_SECONDS)
        self.stats.handled += 1
        return "done"

    async def _positions(self, retry: _Retry, on_exit: Handler) -> str:
        """A market-scope recommendation (this process holds its lease): ``on_exit`` once per held position it
        names, as :func:`~orderflow_client.exit_policy.for_position`, each under its own lease at ``<id>@<symbol>``
        (renewed with the recommendation's while the call runs) and marked done there when it returns: a retry calls
        only the positions that failed, and no process calls one another holds or finished. The recommendation's
        own mark is set when every position is done (or parked, after ``max_attempts``)."""
        recommendation, attempts, identifier = retry.recommendation, retry.attempts, retry.recommendation.id
        failed: list[str] = []
        busy = False
        held = self._held() if self.held_symbols else None  # None: every position it names
        for symbol in (symbol for symbol in named_positions(recommendation) if held is None or symbol in held):
            mark = position_id(identifier, "market", symbol)
            if not await self._marks.take_lease(mark, self._lease, self.lease_seconds):
                holder = await self._marks.holder(mark)
                if holder in (b"done", b"parked"):
                    continue  # done by an earlier attempt (or process) of this bot
                if holder is not None or not await self._marks.take_lease(mark, self._lease, self.lease_seconds):
                    busy = True  # another process of this bot has this position in hand
                    continue
            if await self._call(on_exit, for_position(recommendation, symbol), attempts, (identifier, mark)):
                await self._marks.finish(mark, b"done", HANDLED_SECONDS)
                self.stats.handled += 1
            else:
                await self._marks.release(mark, self._lease)
                failed.append(symbol)
        if (failed and attempts < self.max_attempts) or (busy and not failed):
            await self._marks.release(identifier, self._lease)
            return "failed" if failed else "busy"
        for symbol in failed:
            await self._marks.finish(position_id(identifier, "market", symbol), b"parked", HANDLED_SECONDS)
        retry.parked = tuple(failed)
        await self._marks.finish(identifier, b"parked" if failed else b"done", HANDLED_SECONDS)
        return "parked" if failed else "done"

    def _skip(self, recommendation: ExitRecommendation) -> None:
        """A recommendation of a scope or action the bot did not opt into: counted and logged once (it comes on the
        channel and the stream), then acknowledged by the caller; never marked (a bot that opts in later sees it
        as not handled)."""
        if recommendation.id in self._not_delivered:
            return
        self._not_delivered[recommendation.id] = None
        if len(self._not_delivered) > REMEMBERED_NOT_DELIVERED:
            del self._not_delivered[next(iter(self._not_delivered))]
        self.stats.not_delivered += 1
        log.info(
            "order_flow.recommendation_not_delivered",
            id=recommendation.id,
            symbol=recommendation.symbol,
            scope=recommendation.scope,
            action=recommendation.action,
            positions=list(named_positions(recommendation)),
            opted_into=f"scopes {sorted(self.scopes)}, actions {sorted(self.actions)}",
            source="risk_manager",
        )

    async def _call(
        self, on_exit: Handler, recommendation: ExitRecommendation, attempts: int, leases: tuple[str, ...]
    ) -> bool:
        """``on_exit`` once, with this process's ``leases`` renewed while it runs: False (logged, counted) when it
        raised."""
        try:
            async with self._marks.kept(leases, self._lease, self.lease_seconds):
                result = on_exit(recommendation)
                if inspect.isawaitable(result):
                    await result
        except Exception as error:
            self.stats.handler_failures += 1
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
            return False
        return True

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
        outcome = await self._attempt(retry, on_exit)
        identifier = retry.recommendation.id
        if outcome in ("failed", "busy"):
            if outcome == "busy":
                retry.attempts -= 1  # not this process's failure: wait for the other's lease
            delay = self.lease_seconds if outcome == "busy" else min(30.0, 0.5 * 2 ** (retry.attempts - 1))
            retry.due = time.monotonic() + delay
            self._retries[identifier] = retry
            return
        self._retries.pop(identifier, None)
        if outcome == "parked":
            await self._park(retry.recommendation, retry.entries, retry.attempts, retry.parked, on_status)
        for entry in retry.entries:
            await self.bus.ack(entry.stream, self.group, [entry.entry_id])

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
        async with self.bus.subscribe(self.bus.keys.exit_channel) as exit_signals:
            if self._last_status is None:
                newest = await self.bus.read_range_reverse(self.bus.keys.status, count=1)
                self._last_status = as_text(newest[0].entry_id) if newest else "0-0"  # statuses from now on
            # catch-up: what was delivered but not acknowledged (a crash), then everything new
            for entry in await self.bus.read_own_pending(self.group, self.name, self.bus.keys.exits):
                await self._from_stream(entry, on_exit, on_status)
            await self._bus_back(on_status)
            while not stop.is_set():
                message = await exit_signals.next_message(timeout=0.05)
                if message is not None:
                    try:
                        recommendation = decode(message)
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
                for status in await self.bus.read_after({self.bus.keys.status: self._last_status}, count=100):
                    self._last_status = as_text(status.entry_id)
                    await self._status(status.payload, on_status)
                if message is None and self.bus.embedded:
                    await asyncio.sleep(0.05)

    async def _from_stream(self, entry: BusEntry, on_exit: Handler, on_status: StatusHandler | None) -> None:
        """One entry of the exits stream; one that is not an exit recommendation (undecodable, or another type)
        is moved to ``<stream>:dead`` with the reason, logged and counted: it can never stall the client."""
        try:
            message = decode(entry.payload)
        except WireDecodeError as error:
            code, reason = error.code, str(error)
        else:
            if isinstance(message, ExitRecommendation):
                await self._deliver(message, entry, on_exit, on_status)  # acknowledged when done
                return
            code, reason = "wrong_type", f"a {type(message).__name__}"
        self.stats.dead_letters += 1
        await self.bus.dead_letter(entry, code, reason, reader=self.group, source="risk_manager")
        await self.bus.ack(entry.stream, self.group, [entry.entry_id])
