"""The order-by-order view on hand-made records and events with exact outcomes: Databento MBO records → order events
(:mod:`services.ingest.databento_orders`), and the rules over them (:mod:`services.detector.orders` through the
engine): the single order behind a large offer, an iceberg's refills, a named order pulled before it traded.
tests/integration/test_order_view.py runs them on the shared Nasdaq days."""

from __future__ import annotations

from typing import Any

from databento_dbn import F_TOB, Action, MBOMsg, Side
from hypothesis import given, settings
from hypothesis import strategies as st

from orderflow_client.wire import BookUpdate, FeedStatus, OrderUpdate
from services.detector.orders import PulledOrder
from services.ingest.databento_book import OrderBook
from services.ingest.databento_orders import AskOrderEvents
from tests.support.events import MS, T0, D, Feed, S
from tests.unit.test_engine import alerts, engine, exits, run

ASK_PRICE = 50 * D + D // 100  # $50.01, the ask of Feed.quote's NBBO
XNAS = 2


# --- MBO records → order events ---------------------------------------------------
def record(action: str, order_id: int, side: str, size: int, *, price: int = ASK_PRICE, flags: int = 0) -> Any:
    return MBOMsg(XNAS, 1, T0, order_id, price, size, Action(action), Side(side), T0 + 500, flags=flags)


def order_events(*records: Any) -> list[tuple]:
    """Each record applied to a book as the readers do; the events as tuples."""
    book, maker, found = OrderBook(), AskOrderEvents(), []
    for item in records:
        event, _code = maker.apply(item, "X", book)
        if event is not None:
            found.append((event.action, event.order_id, event.price, event.size, event.remaining, event.venue))
    return found


def test_each_ask_order_record_becomes_one_event_and_a_fills_own_cancel_none():
    assert order_events(
        record("A", 11, "A", 500),
        record("A", 12, "B", 300, price=50 * D),  # a bid: not a seller's order
        record("T", 0, "B", 100),  # the aggressor's record: a trade event, not an order event
        record("F", 11, "A", 100),
        record("C", 11, "A", 100),  # the fill's shares taken off: part of the fill
        record("C", 11, "A", 150),  # a real cancel
        record("M", 11, "A", 200, price=ASK_PRICE + D // 100),
        record("C", 11, "A", 200),
        record("M", 13, "A", 40),  # a modify of an order the book does not hold adds it
        record("R", 0, "N", 0),
    ) == [
        ("add", 11, ASK_PRICE, 500, 500, "XNAS"),
        ("fill", 11, ASK_PRICE, 100, 400, "XNAS"),
        ("cancel", 11, ASK_PRICE, 150, 250, "XNAS"),
        ("modify", 11, ASK_PRICE + D // 100, 200, 200, "XNAS"),
        ("cancel", 11, ASK_PRICE + D // 100, 200, 0, "XNAS"),
        ("add", 13, ASK_PRICE, 40, 40, "XNAS"),
        ("clear", 0, 0, 0, 0, "XNAS"),
    ]


def test_top_of_book_records_and_orders_the_book_never_held_make_no_event():
    assert order_events(record("A", 0, "A", 700, flags=F_TOB), record("C", 99, "A", 10), record("F", 98, "A", 5)) == []


# --- the rules over order events ------------------------------------------------------
class Orders:
    """Order events of one symbol at the ask, $50.01 unless told."""

    def __init__(self, symbol: str = "X") -> None:
        self.symbol = symbol

    def event(self, ts: int, action: str, order_id: int, size: int, remaining: int, price: int = ASK_PRICE) -> Any:
        return OrderUpdate(
            symbol=self.symbol, ts_event=ts, ts_recv=ts, ts_arrival=ts, order_id=order_id, action=action,
            price=price, size=size, remaining=remaining, venue="XNAS",
        )  # fmt: skip

    def iceberg(
        self, start: int, pieces: int, shown: int, gap_ns: int = 200_000, price: int = ASK_PRICE, first_id: int = 100
    ) -> list[OrderUpdate]:
        """An order of ``shown`` shares added at ``start`` and refilled ``pieces - 1`` times, each piece traded
        whole 100 ms after its add and the next added ``gap_ns`` after that (ids from ``first_id``)."""
        events, ts = [], start
        for order_id in range(first_id, first_id + pieces):
            events += [self.event(ts, "add", order_id, shown, shown, price)]
            ts += 100 * MS
            events += [self.event(ts, "fill", order_id, shown, 0, price)]
            ts += gap_ns
        return events


def test_a_refilling_seller_is_one_large_seller_once_it_has_traded_the_threshold():
    """1,000 shares shown and refilled 0.2 ms after each fill: the tenth piece takes it to 10,000 shares traded (the
    absolute threshold); the twentieth to 20,000 raises nothing more (one alert per seller)."""
    feed, orders = Feed(), Orders()
    outputs = run(engine(), [feed.quote(T0), *orders.iceberg(T0 + S, pieces=20, shown=1_000)])
    (alert,) = alerts(outputs)
    assert alert.id == f"X:large_seller:iceberg:{ASK_PRICE}:{T0 + S}"
    assert (alert.severity, alert.source, alert.order_size, alert.price_level) == ("warning", "book", 10_000, ASK_PRICE)
    assert alert.ts_event == T0 + S + 9 * (100 * MS + 200_000) + 100 * MS  # the tenth piece's fill
    evidence = alert.evidence
    assert (evidence["view"], evidence["refills"], evidence["shown_shares"], evidence["first_order_id"]) == (
        "orders",
        9,
        1_000,
        100,
    )
    # the whole chain at once: twice the threshold by the fill that crosses it is critical
    (big,) = alerts(run(engine(), [feed.quote(T0), *Orders().iceberg(T0 + S, pieces=3, shown=7_000)]))
    assert (big.severity, big.order_size, big.evidence["refills"]) == ("critical", 21_000, 2)


def test_a_late_or_different_refill_is_another_seller():
    feed, orders = Feed(), Orders()
    late = orders.iceberg(T0 + S, pieces=6, shown=1_000) + orders.iceberg(T0 + 10 * S, pieces=6, shown=1_000)
    assert alerts(run(engine(), [feed.quote(T0), *late])) == []  # 6,000 each: two chains, neither large
    slow = orders.iceberg(T0 + S, pieces=12, shown=1_000, gap_ns=10 * MS + 1)  # refilled 1 ns past 10 ms
    assert alerts(run(engine(), [feed.quote(T0), *slow])) == []
    resized = [*orders.iceberg(T0 + S, pieces=6, shown=1_000), *orders.iceberg(T0 + 2 * S, pieces=6, shown=900)]
    assert alerts(run(engine(), [feed.quote(T0), *resized])) == []  # a refill shows the same size


def test_a_gap_forgets_the_orders():
    feed, chain = Feed(), Orders().iceberg(T0 + S, pieces=10, shown=1_000)
    first, rest = chain[:10], chain[10:]  # five pieces each side of the gap
    at = first[-1].ts_event
    gap = FeedStatus(source="databento", state="gap", ts_event=at, ts_recv=at, symbols=("X",))
    assert len(alerts(run(engine(), [feed.quote(T0), *first, *rest]))) == 1
    assert alerts(run(engine(), [feed.quote(T0), *first, gap, *rest])) == []


def book(feed: Feed, ts: int, ask_size: int) -> BookUpdate:
    return BookUpdate(symbol=feed.symbol, ts_event=ts, ts_recv=ts, ts_arrival=ts, bids=((50 * D, 500),),
                      asks=((ASK_PRICE, ask_size),), venue="XNAS")  # fmt: skip


def test_a_large_offer_names_its_single_order_and_its_pull_is_reported():
    feed, orders = Feed(), Orders()
    events = [
        orders.event(T0, "add", 7, 15_000, 15_000),
        book(feed, T0, 15_000),
        book(feed, T0 + 3 * S, 15_000),  # rested 2 s: reported
        orders.event(T0 + 4 * S, "cancel", 7, 15_000, 0),
        book(feed, T0 + 4 * S, 0),
    ]
    outputs = run(engine(), events)
    (alert,) = alerts(outputs)
    assert alert.id == f"X:large_seller:book:{ASK_PRICE}:{T0}"
    assert {key: alert.evidence[key] for key in ("view", "orders_at_level", "largest_order_id")} == {
        "view": "orders",
        "orders_at_level": 1,
        "largest_order_id": 7,
    }
    pulled = [output for output in outputs if isinstance(output, PulledOrder)]
    assert pulled == [PulledOrder("X", alert.id, 7, "XNAS", ASK_PRICE, 15_000, 4 * S, T0 + 4 * S)]
    # an order that traded before it left is not pulled
    traded = [
        *events[:3],
        orders.event(T0 + 4 * S, "fill", 7, 100, 14_900),
        orders.event(T0 + 5 * S, "cancel", 7, 14_900, 0),
    ]
    assert [output for output in run(engine(), traded) if isinstance(output, PulledOrder)] == []


def test_with_orders_critical_needs_one_order_of_twice_the_threshold():
    """25,000 shares at one price: critical from the levels alone; from three orders of 9,000 + 8,000 + 8,000 a
    warning (no single seller reaches the threshold); from one order of 25,000 critical."""
    feed, orders = Feed(), Orders()
    levels = [book(feed, T0, 25_000), book(feed, T0 + 3 * S, 25_000)]
    assert [alert.severity for alert in alerts(run(engine(), levels))] == ["critical"]
    several = [orders.event(T0, "add", n, size, size) for n, size in ((1, 9_000), (2, 8_000), (3, 8_000))]
    (many,) = alerts(run(engine(), [*several, *levels]))
    assert (many.severity, many.evidence["orders_at_level"], many.evidence["largest_order_shares"]) == (
        "warning",
        3,
        9_000,
    )
    (one,) = alerts(run(engine(), [orders.event(T0, "add", 4, 25_000, 25_000), *levels]))
    assert (one.severity, one.evidence["largest_order_id"]) == ("critical", 4)
    # three icebergs within the exit window are three sellers: an exit
    icebergs = [
        event
        for chain in range(3)
        for event in orders.iceberg(T0 + (1 + 4 * chain) * S, 10, 1_000, price=ASK_PRICE + chain * D // 100,
                                    first_id=100 * (chain + 1))
    ]  # fmt: skip
    (recommendation,) = exits(run(engine(), [feed.quote(T0), *icebergs]))
    assert recommendation.trigger == "large_sellers" and all(":iceberg:" in name for name in recommendation.alert_ids)


mbo_steps = st.lists(
    st.tuples(
        st.sampled_from("AACCFMRT"), st.integers(1, 6), st.sampled_from("AB"), st.integers(1, 3), st.integers(1, 400)
    ),
    max_size=60,
)


@given(mbo_steps)
@settings(max_examples=300, deadline=None)
def test_order_events_replayed_give_the_books_ask_orders(steps):
    """Whatever the records (cancels of any size, modifies, clears, unknown ids, fills with or without the cancel
    that takes their shares off), the ask orders the events describe are the book's — same ids, prices and shares
    left — whenever no fill awaits its cancel (between the two, the event has told what the book does next)."""
    book, maker, replayed = OrderBook(), AskOrderEvents(), {}
    for action, order_id, side, cents, size in steps:
        item = record(action, order_id, side, size, price=ASK_PRICE + cents * D // 100)
        event, _code = maker.apply(item, "X", book)
        if event is not None and event.action == "clear":
            replayed.clear()
        elif event is not None and event.remaining > 0:
            replayed[event.order_id] = (event.price, event.remaining)
        elif event is not None:
            replayed.pop(event.order_id, None)
        asks = {order_id: (order.price, order.size) for order_id, order in book.orders.items() if order.side == "A"}
        if not maker.filled:
            assert replayed == asks
