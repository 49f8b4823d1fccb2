"""The engine's hook for market context (:mod:`services.detector.market_context`): :class:`MarketWatch`.

It keeps every symbol's price path and minute mids and each index's state, from the events that passed the
integrity checks; puts the context on every alert (as of the alert's ``ts_event``, whatever index events arrived
since); runs each index's sell-off rule (:class:`services.detector.exits.MarketSelloffs`) and the exit cost rule
(:mod:`services.detector.exit_cost`) on every exit recommendation. An index whose monitoring is halted raises no
sell-off and gives its stocks the context ``unknown`` until it resumes; a tailed index (owned by another detector),
from its halt to its resumption in event time, as its tail's integrity checks found them (:meth:`tail_halted`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from orderflow_client.wire import BookUpdate, MarketContext, OrderFlowAlert, Quote, Trade
from services.detector.exit_cost import ExitCosts, past_sessions
from services.detector.exits import MarketSelloffs
from services.detector.integrity import MarketData
from services.detector.market_context import IndexState, MinuteMids, PricePath, label_context
from services.detector.outputs import Output
from services.detector.profiles import DayStatistics, SymbolProfile, beta_to_index
from services.detector.rule_settings import MarketSettings
from shared.conditions import ConditionTable
from shared.sessions import SessionClock

if TYPE_CHECKING:
    from services.detector.engine import SymbolEngine


class MarketWatch:
    """The market beside every symbol of an :class:`~services.detector.engine.Engine` (``engines``: its symbols;
    ``profiles``: its stored profiles). ``positions`` are the open positions (sorted; an index held among them)."""

    def __init__(
        self,
        settings: MarketSettings,
        conditions: ConditionTable,
        sessions: SessionClock,
        engines: dict[str, SymbolEngine],
        profiles: dict[str, SymbolProfile] | None = None,
    ) -> None:
        self.settings = settings
        self.conditions = conditions
        self.sessions = sessions
        self.engines = engines
        self.profiles = profiles if profiles is not None else {}
        self.indexes = settings.indexes
        self.context_on = bool(self.indexes)  # no index configured: alerts carry no context (None)
        self.keep_ns = settings.window_ns + settings.stale_ns
        self.states: dict[str, IndexState] = {}
        self.paths: dict[str, PricePath] = {}  # every symbol's, the indexes' states too
        self.minutes: dict[str, MinuteMids] = {}
        self.positions: tuple[str, ...] = ()
        self.costs = ExitCosts(settings, sessions, self.minutes)
        self.selloffs = MarketSelloffs(settings, sessions)
        self.restarting: set[str] = set()  # indexes whose state starts afresh at their next processed event
        # a tailed index → its halts found by the tail, oldest first: from, to (ns; to 0: on), pruned (tail_halted)
        self.tail_halts: dict[str, list[tuple[int, int]]] = {}
        self._day: tuple[str, int, int, int] = ("", 0, 0, 0)  # the trading day in progress: day, start, end, open
        self._betas: dict[tuple[str, str, str], tuple[tuple[int, ...], list[DayStatistics], float]] = {}

    def set_open_positions(self, symbols: Iterable[str]) -> None:
        self.positions = tuple(sorted(set(symbols)))

    def day(self, ts: int) -> tuple[str, int, int, int]:
        """``(day, start, end, open)`` (ns; open 0 on a closed day) of the trading day holding ``ts``."""
        current = self._day
        if not current[1] <= ts < current[2]:
            day, start, end, market_open = self.sessions.day_of(ts)
            current = self._day = (day, start, end, market_open or 0)
        return current

    def observe(self, event: MarketData) -> None:
        """Move the symbol's path (and an index's flow) with ``event``; no rules, no outputs."""
        path = self.paths.get(event.symbol)
        if path is None:
            path = self._new_path(event.symbol)
        kind = type(event)
        moved = False
        if kind is Quote:
            quote: Quote = event  # type: ignore[assignment]
            moved = path.on_quote(quote.ts_event, quote.bid_price, quote.ask_price)
        elif kind is Trade:
            trade: Trade = event  # type: ignore[assignment]
            if (path.is_index or not path.quoted) and self.conditions.classify(
                trade.conditions, trade.correction
            ).aggressive:
                moved = path.on_trade(trade.ts_event, trade.price)
                if path.is_index:
                    path.on_print(trade.ts_event, trade.size, trade.side)  # type: ignore[attr-defined]
        elif kind is BookUpdate:
            book: BookUpdate = event  # type: ignore[assignment]
            if book.bids and book.asks:
                moved = path.on_quote(book.ts_event, book.bids[0][0], book.asks[0][0])
        if moved and path.minutes is not None:
            day, _start, _end, market_open = self.day(event.ts_event)
            if market_open:
                path.minutes.record(event.ts_event, path.changes[-1][1] // 2, day, market_open)

    def _new_path(self, symbol: str) -> PricePath:
        """A new symbol's path: an index's state, a stock's path (with no index configured: for its minute mids);
        the minute mids it had before, if any (:meth:`restart_index`)."""
        minutes = self.minutes.get(symbol) or MinuteMids(symbol, self.settings.profile_days + 1)
        self.minutes[symbol] = minutes
        if symbol in self.indexes:
            state = self.paths[symbol] = self.states[symbol] = IndexState(
                self.settings.window_ns, self.keep_ns, minutes
            )
            return state
        path = self.paths[symbol] = PricePath(self.settings.window_ns, self.keep_ns, minutes)
        return path

    def restart_index(self, symbol: str, warmup_ns: int) -> int:
        """Before ``symbol``'s stream is warmed up to be read through the group here (its lease taken over): an
        index's sell-off rule is forgotten, and its state too at its first event processed next, the warm-up's
        (kept until then for the context of other alerts; its minute mids kept), so the warm-up and then the
        entries left to handle rebuild both in event order, as its previous owner did. A tail's state may hold
        those entries already: fed again, its prints at its last timestamp were counted twice, and its falls were
        not judged before its last event, so a sell-off in progress was raised again as a new episode. Returns the
        history the warm-up needs (ns): ``warmup_ns``; for an index at least two context windows and the
        staleness limit (the fall at each event of the last window is measured from the price a window before)."""
        if symbol not in self.indexes:
            return warmup_ns
        self.selloffs.rules.pop(symbol, None)
        self.restarting.add(symbol)
        return max(warmup_ns, 2 * self.settings.window_ns + self.settings.stale_ns)

    def tail_index(self, symbol: str) -> None:
        """Just before ``symbol``'s stream is tailed from its last events (its lease given up, or never held here):
        an index's state starts afresh (its minute mids kept), so the tail's re-feed builds it as one engine that ran
        every event did. Fed into the state the rules built here, the re-feed counted that state's prints at its last
        timestamp twice. The other direction: :meth:`restart_index`."""
        if symbol in self.indexes:
            self._start_afresh(symbol)
        self.tail_halts.pop(symbol, None)

    def untail_index(self, symbol: str) -> None:
        """``symbol`` no longer tailed (owned here now, or not read): its halts are its rules' again."""
        self.tail_halts.pop(symbol, None)

    def tail_halted(self, symbol: str, ts: int, halted: bool) -> None:
        """The tail of ``symbol`` found its monitoring halted (``halted``) or resumed at ``ts`` (ns, event time): the
        owner's integrity checks, run on the same events, halt and resume it there too. Every halt is kept, not the
        last only: an alert inside an earlier one may be handled after the tail read the next one's start. A halt
        that ended ``keep_ns`` (what the state keeps) or more before ``ts`` is forgotten: the state no longer holds
        the window of an alert that old (its context is unknown anyway)."""
        halts = self.tail_halts.setdefault(symbol, [])
        if halted and not (halts and halts[-1][1] == 0):
            halts.append((ts, 0))
        elif not halted and halts and halts[-1][1] == 0:
            halts[-1] = (halts[-1][0], ts)
        halts[:] = [(start, end) for start, end in halts if end == 0 or end > ts - self.keep_ns]
        if not halts:
            del self.tail_halts[symbol]

    def _halted(self, index: str, ts: int) -> bool:
        """``index``'s monitoring halted at ``ts`` (ns): here (owned: halted now), or by its owner from a halt to its
        resumption in event time, as its tail found them."""
        if self._halted_here(index):
            return True
        return any(start <= ts and not 0 < end <= ts for start, end in self.tail_halts.get(index, ()))

    def _halted_here(self, index: str) -> bool:
        market = self.engines.get(index)
        return market is not None and market.integrity.halted

    def _start_afresh(self, symbol: str) -> None:
        """Replace an index's state by an empty one (its next events build it again, with the minute mids kept in
        ``minutes``). It stays in place, so its stocks keep it as their index (:meth:`index_of`) should every event
        fed next fail the checks, or none come: the reset is this detector's, not a lack of the index's data."""
        self.restarting.discard(symbol)
        if self.states.pop(symbol, None) is not None:
            self.paths.pop(symbol, None)
            self._new_path(symbol)

    def process(self, engine: SymbolEngine, event: MarketData) -> list[Output]:
        """``engine``'s rules on ``event`` (they move the market state once it passed the integrity checks); an
        index's event checks its fall, unless its monitoring is halted."""
        if self.restarting and event.symbol in self.restarting:  # the warm-up's first event (restart_index)
            self._start_afresh(event.symbol)
        outputs = engine.process(event)
        if event.symbol in self.states and not engine.integrity.halted:
            self.selloffs.check(self, engine, event.ts_event, event.ts_recv, None, outputs)
        return outputs

    # --- alerts and exits ----------------------------------------------------------
    def emit(self, engine: SymbolEngine, alert: OrderFlowAlert, outputs: list[Output]) -> None:
        """``engine``'s alert with its context; its exit rule's recommendation with its cost (a stock, or an index
        held as a position) and, for an index, as the trigger of a sell-off (the market-scope exit)."""
        symbol = engine.symbol
        if self.context_on:
            alert = msgspec.structs.replace(alert, context=self.context(symbol, alert.ts_event))
        outputs.append(alert)
        recommendation = engine.exits.on_alert(alert)
        if recommendation is None:
            return
        if symbol not in self.indexes or symbol in self.positions:
            outputs.append(self.costs.costed(engine, recommendation, alert.context))
        if symbol in self.indexes and not engine.integrity.halted:
            self.selloffs.check(self, engine, alert.ts_event, alert.ts_recv, recommendation, outputs)

    def positions_of(self, index: str) -> tuple[str, ...]:
        """The open positions a market-scope exit of ``index`` names: all for a market symbol, else those whose
        index it is (a sector ETF) and the ETF itself when held."""
        if index in self.settings.market_symbols:
            return self.positions
        return tuple(p for p in self.positions if p == index or self.index_of(p) == index)

    def index_of(self, symbol: str) -> str:
        """``symbol``'s index: its sector ETF when that has data — a state (kept, emptied, across a restart of it:
        :meth:`_start_afresh`) or data that failed the checks (its monitoring halted here, or a halt its tail found)
        — else the first market symbol. An ETF read but without data (not ingested) is not its index."""
        etf = self.settings.sector_etf(symbol)
        if etf and (etf in self.states or etf in self.tail_halts or self._halted_here(etf)):
            return etf
        return self.settings.market_symbols[0] if self.settings.market_symbols else etf

    def context(self, symbol: str, ts: int) -> MarketContext:
        """The context of an alert of ``symbol`` at ``ts`` (ns); an index's own: ``market_wide``."""
        settings = self.settings
        if symbol in self.indexes:  # the index's own alert: its selling is the market's
            state = self.states.get(symbol)
            own = label_context(
                index=symbol,
                state=state,
                stock=state,
                ts=ts,
                beta=1.0,
                fall_bps=settings.fall_bps,
                stale_ns=settings.stale_ns,
            )
            reason = f"{symbol} is an index: its selling is the market's ({own.index_return_bps:+.1f} bps in "
            return msgspec.structs.replace(own, label="market_wide", reason=f"{reason}{own.window_seconds} s).")
        index = self.index_of(symbol)
        if self._halted(index, ts):
            reason = f"monitoring of {index} is halted (its data failed the integrity checks): no market context."
            return MarketContext(label="unknown", index=index, reason=reason)
        return label_context(
            index=index,
            state=self.states.get(index),
            stock=self.paths.get(symbol),
            ts=ts,
            beta=self.beta(symbol, index, ts),
            fall_bps=settings.fall_bps,
            stale_ns=settings.stale_ns,
        )

    def sessions_of(self, symbol: str, day: str) -> list[DayStatistics]:
        """``symbol``'s last ``profile_days`` sessions before ``day``: the minute mids this watch recorded, else
        its engine's history (or, without an engine, its stored profile's sessions)."""
        engine = self.engines.get(symbol)
        if engine is not None:
            by_day = dict(engine.lifecycle.history)
        else:
            profile = self.profiles.get(symbol)
            by_day = {session.day: session for session in profile.sessions} if profile is not None else {}
        minutes = self.minutes.get(symbol)
        if minutes is not None:
            by_day.update(minutes.past)
        return past_sessions(by_day.values(), day, self.settings.profile_days)

    def beta(self, symbol: str, index: str, ts: int) -> float:
        """``symbol``'s beta to ``index`` at ``ts`` (1.0 when unknown): its stored profile's when that is to this
        index and built before the day, else from both symbols' sessions before the day (recomputed whenever
        those change: a history appearing, a profile adopted)."""
        day = self.day(ts)[0]
        profile = self.profiles.get(symbol)
        if profile is not None and profile.beta and profile.beta_index == index and max(profile.days, default="") < day:
            return profile.beta
        stock, market = self.sessions_of(symbol, day), self.sessions_of(index, day)
        fingerprint = (*map(id, stock), -1, *map(id, market))
        key = (symbol, index, day)
        cached = self._betas.get(key)
        if cached is None or cached[0] != fingerprint:  # the sessions are kept: their ids stay theirs
            cached = self._betas[key] = (fingerprint, [*stock, *market], beta_to_index(stock, market))
        return cached[2] or 1.0
