"""orderflow for a threaded (synchronous) bot: the asyncio client on its own loop in a background thread.

    from decimal import Decimal
    from orderflow_client import OrderFlowClient
    from orderflow_client.exit_policy import ExitPolicy

    def on_exit(recommendation):          # runs in the client's handler thread; raise to have it retried
        for chosen in ExitPolicy().decide(recommendation, broker.positions()):   # the held positions it names
            if chosen.choice == "exit":       # or tighten_stops (orderflow.bid_price), or ignore (a watch)
                broker.sell(chosen.symbol)

    with OrderFlowClient(
        "redis://bot:…@redis:6379/0", name="my-bot", on_exit=on_exit,
        scopes=("symbol", "market"), actions=("exit", "watch"),   # the policy decides each; default: symbol exits only
    ) as orderflow:
        orderflow.open_position("AAPL", quantity=200, entry_price=Decimal("187.43"), stop_loss=Decimal("184.00"))
        ...                                # the bot's own loop; orderflow.close_position("AAPL") when it sells

Or ``callbacks="queue"``: nothing runs in the client's threads; the bot takes :class:`Delivery` objects from
``orderflow.deliveries`` when it likes and calls ``done()`` (or ``failed(error)``: retried with backoff) on each.
Either way a recommendation is handled **at least once until the handler returns** (or ``done()``), retried
after a failure, parked after ``max_attempts`` (see :class:`orderflow_client.risk.RiskManagerClient`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import DecisionRecord, read_decisions
from orderflow_client.decisions import Decision, last_bid_price, last_trade_price, record_decision
from orderflow_client.errors import WireDecodeError
from orderflow_client.positions import Position, PositionRegistry
from orderflow_client.risk import DEFAULT_ACTIONS, DEFAULT_SCOPES, RiskManagerClient
from orderflow_client.wire import ExitAction, ExitRecommendation, ExitScope, FeedStatus, OrderFlowAlert, decode

ExitCallback = Callable[[ExitRecommendation], Any]
StatusCallback = Callable[[FeedStatus], Any]
Result = TypeVar("Result")
Published = TypeVar("Published", OrderFlowAlert, ExitRecommendation)


@dataclass
class Delivery:
    """A recommendation waiting for the bot (``callbacks="queue"``): call :meth:`done` once it is acted on, or
    :meth:`failed` to have it delivered again after a backoff."""

    recommendation: ExitRecommendation
    _future: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future, repr=False)

    def done(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def failed(self, error: BaseException | str = "failed") -> None:
        if not self._future.done():
            self._future.set_exception(error if isinstance(error, BaseException) else RuntimeError(error))


class OrderFlowClient:
    """Exit recommendations and statuses for a threaded bot, and its positions in the registry.

    ``callbacks``: ``"thread"`` runs ``on_exit``/``on_status`` in one handler thread of the client's (never on
    its event loop, so a slow broker call does not hold up Redis), or on ``executor`` when the bot passes its own;
    ``"queue"`` hands each recommendation to ``deliveries`` (a :class:`queue.Queue` of :class:`Delivery`) and
    statuses to ``statuses``. ``scopes``/``actions``: what reaches ``on_exit`` (or ``deliveries``); by default a
    stock's own exit only, the rest acknowledged and logged (see :class:`orderflow_client.risk.RiskManagerClient`).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        name: str,
        on_exit: ExitCallback | None = None,
        on_status: StatusCallback | None = None,
        callbacks: Literal["thread", "queue"] = "thread",
        held_symbols: Callable[[], set[str]] | None = None,
        signing_keys: dict[str, bytes] | None = None,
        max_attempts: int = 5,
        catch_up_seconds: float = 120.0,
        key_prefix: str = "orderflow",
        executor: concurrent.futures.Executor | None = None,
        scopes: Collection[ExitScope] = DEFAULT_SCOPES,
        actions: Collection[ExitAction] = DEFAULT_ACTIONS,
    ) -> None:
        if callbacks == "thread" and on_exit is None:
            raise ValueError('on_exit is required with callbacks="thread" (or use callbacks="queue")')
        self.redis_url = redis_url
        self.name = name
        self.on_exit = on_exit
        self.on_status = on_status
        self.callbacks = callbacks
        self.held_symbols = held_symbols
        self.key_prefix = key_prefix
        self.signing_keys = signing_keys
        self.max_attempts = max_attempts
        self.catch_up_seconds = catch_up_seconds
        self.scopes, self.actions = tuple(scopes), tuple(actions)  # what reaches on_exit (RiskManagerClient's opt-ins)
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        self.statuses: queue.Queue[FeedStatus] = queue.Queue()
        self.client: RiskManagerClient | None = None
        self._handlers: concurrent.futures.Executor | None = None  # made by start(), shut by stop(), unless given
        self._own_handlers = executor is None
        self._executor = executor
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._bus: Bus | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # --- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> OrderFlowClient:
        """Connect and start following recommendations in the background; raises what connecting raised."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._startup_error = None
        self._handlers = self._executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"orderflow-{self.name}-handler"
        )
        self._thread = threading.Thread(target=self._run, name=f"orderflow-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"orderflow client did not start within {timeout} s")
        if self._startup_error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise self._startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following (the recommendation in hand, if any, stays pending and is delivered again later)."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None
        self._bus = None
        if self._handlers is not None and self._own_handlers:
            self._handlers.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> OrderFlowClient:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the registry, synchronously ---------------------------------------------------
    def open_position(self, symbol: str, *, quantity: int, entry_price: Any, stop_loss: Any = None) -> Position:
        """Register (or update) a position: prices as ``Decimal``, ``float`` or ``str`` dollars."""
        return self._call(
            PositionRegistry(self._connected()).open(
                symbol, quantity=quantity, entry_price=entry_price, stop_loss=stop_loss
            )
        )

    def close_position(self, symbol: str) -> bool:
        return self._call(PositionRegistry(self._connected()).close(symbol))

    def positions(self) -> list[Position]:
        return self._call(PositionRegistry(self._connected()).list())

    def last_price(self, symbol: str) -> int | None:
        """The symbol's last print on orderflow's market stream (nano-dollars), None when there is none."""
        return self._call(last_trade_price(self._connected(), symbol))

    def bid_price(self, symbol: str) -> int | None:
        """The symbol's newest bid on orderflow's market stream (nano-dollars), else its last print; None when there
        is neither (:func:`orderflow_client.decisions.last_bid_price`)."""
        return self._call(last_bid_price(self._connected(), symbol))

    def record_decision(
        self, recommendation_id: str, decision: Decision | DecisionRecord, *, last_price: int = 0
    ) -> bool:
        """Record what the bot decided on a recommendation, for the dashboards (kept as long as its handled mark;
        :func:`orderflow_client.decisions.record_decision`): an evaluator's :class:`Decision`, or a
        :class:`DecisionRecord` of the bot's own. Best effort: False (logged) when Redis did not take it."""
        return self._call(
            record_decision(self._connected(), self.name, recommendation_id, decision, last_price=last_price)
        )

    def decisions(self, recommendation_ids: list[str]) -> dict[str, DecisionRecord]:
        """What this bot recorded on each of ``recommendation_ids`` (or position ids, ``<id>@<symbol>``, of a
        market-scope one): id → record, for those it recorded (one round trip)."""
        return self._call(read_decisions(self._connected(), self.name, recommendation_ids))

    def ping(self) -> bool:
        """True when Redis answers (PING); raises :class:`~orderflow_client.errors.BusUnavailableError` when not."""
        return self._call(self._connected().ping())

    @overload
    def recent(self, kind: Literal["alerts"], seconds: float, symbol: str | None = None) -> list[OrderFlowAlert]: ...

    @overload
    def recent(self, kind: Literal["exits"], seconds: float, symbol: str | None = None) -> list[ExitRecommendation]: ...

    def recent(
        self, kind: Literal["alerts", "exits"], seconds: float, symbol: str | None = None
    ) -> list[OrderFlowAlert] | list[ExitRecommendation]:
        """Alerts or exit recommendations published in the last ``seconds`` (oldest first), of ``symbol`` or all."""
        if kind == "alerts":
            return self._call(self._read_recent(OrderFlowAlert, self._connected().keys.alerts, seconds, symbol))
        return self._call(self._read_recent(ExitRecommendation, self._connected().keys.exits, seconds, symbol))

    async def _read_recent(
        self, kind: type[Published], stream: str, seconds: float, symbol: str | None
    ) -> list[Published]:
        since = f"{max(0, int((time.time() - seconds) * 1000))}-0"
        items: list[Published] = []
        for entry in await self._connected().read_range(stream, start=since):
            try:
                item = decode(entry.payload)
            except WireDecodeError:
                continue
            if isinstance(item, kind) and symbol in (None, item.symbol):
                items.append(item)
        return items

    # --- inside the client's thread ---------------------------------------------------------
    def _connected(self) -> Bus:
        if self._bus is None or self._loop is None:
            raise RuntimeError("the orderflow client is not started: call start() or use it as a context manager")
        return self._bus

    def _call(self, coroutine: Coroutine[Any, Any, Result], timeout: float = 30.0) -> Result:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the orderflow client is not started: call start() or use it as a context manager")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            bus = self._bus = await Bus.connect(self.redis_url, prefix=self.key_prefix)
        except BaseException as error:
            self._startup_error = error
            self._ready.set()
            return
        self.client = RiskManagerClient(
            bus,
            name=self.name,
            held_symbols=self.held_symbols,
            signing_keys=self.signing_keys,
            max_attempts=self.max_attempts,
            catch_up_seconds=self.catch_up_seconds,
            scopes=self.scopes,
            actions=self.actions,
        )
        self._ready.set()
        try:
            await self.client.run(self._stop, on_exit=self._exit, on_status=self._status)
        finally:
            await bus.close()

    async def _exit(self, recommendation: ExitRecommendation) -> None:
        if self.callbacks == "queue":
            delivery = Delivery(recommendation)
            self.deliveries.put(delivery)
            await asyncio.wrap_future(delivery._future)  # raises what failed() was given: retried
            return
        if self.on_exit is not None:
            await asyncio.get_running_loop().run_in_executor(self._handlers, self.on_exit, recommendation)

    async def _status(self, status: FeedStatus) -> None:
        if self.callbacks == "queue":
            self.statuses.put(status)
        elif self.on_status is not None:
            await asyncio.get_running_loop().run_in_executor(self._handlers, self.on_status, status)
