"""Trade-side classification: exact edge cases and accuracy on the real LOBSTER days."""

from __future__ import annotations

import msgspec
import pytest

from orderflow_client.wire import BookUpdate, Quote, Trade
from services.ingest.classify import SideClassifier
from services.ingest.lobster import read_lobster
from services.ingest.normalise import Normaliser
from shared.conditions import ConditionTable
from tests.support.paths import shared_data

D = 1_000_000_000  # one dollar in nano-dollars


def trade(ts: int, price: int, **fields) -> Trade:
    return Trade(symbol="X", ts_event=ts, ts_recv=ts, ts_arrival=ts, price=price, size=100, **fields)


def test_lee_ready_quote_rule_and_tick_test_at_the_mid():
    classifier = SideClassifier("lee_ready")
    classifier.on_quote(10, 100 * D, 100 * D + 2 * D // 100)  # 100.00 / 100.02, mid 100.01
    assert classifier.classify(trade(20, 100 * D + 2 * D // 100)).side == "buy"
    assert classifier.classify(trade(21, 100 * D)).side == "sell"
    below_mid = classifier.classify(trade(22, 100 * D + D // 200))  # 100.005
    assert (below_mid.side, below_mid.side_source) == ("sell", "quote")
    at_mid = classifier.classify(trade(23, 100 * D + D // 100))  # up from 100.005: uptick
    assert (at_mid.side, at_mid.side_source) == ("buy", "tick")
    zero_tick = classifier.classify(trade(24, 100 * D + D // 100))  # same price: last direction (up)
    assert (zero_tick.side, zero_tick.side_source) == ("buy", "tick")


def test_only_the_nbbo_strictly_before_the_print_counts():
    classifier = SideClassifier("lee_ready", "strict")
    classifier.on_quote(10, 100 * D, 101 * D)
    classifier.on_quote(20, 101 * D, 102 * D)  # same timestamp as the print below: not yet in force
    assert classifier.classify(trade(20, 101 * D)).side == "buy"  # at the old ask
    assert classifier.classify(trade(21, 101 * D)).side == "sell"  # at the new bid
    sequenced = SideClassifier("lee_ready", "sequenced")
    sequenced.on_quote(10, 100 * D, 101 * D)
    sequenced.on_quote(20, 101 * D, 102 * D)
    assert sequenced.classify(trade(20, 101 * D)).side == "sell"


def test_crossed_locked_and_empty_quotes_fall_back_to_the_tick_test():
    classifier = SideClassifier("lee_ready")
    assert classifier.classify(trade(1, 50 * D)).side_source == "none"  # nothing known yet
    for bid, ask in ((51 * D, 50 * D), (50 * D, 50 * D), (0, 50 * D)):
        classifier.on_quote(5, bid, ask)
        result = classifier.classify(trade(9, 49 * D))
        assert (result.side, result.side_source) == ("sell", "tick")


def test_emo_and_quote_methods():
    emo = SideClassifier("emo")
    emo.on_quote(1, 10 * D, 11 * D)
    assert emo.classify(trade(2, 11 * D)).side_source == "quote"
    inside = emo.classify(trade(3, 10 * D + D // 4))  # inside the spread: tick test (down from 11)
    assert (inside.side, inside.side_source) == ("sell", "tick")
    quote_only = SideClassifier("quote")
    quote_only.on_quote(1, 10 * D, 11 * D)
    assert quote_only.classify(trade(2, 10 * D + D // 2)).side == "unknown"
    with pytest.raises(ValueError):
        SideClassifier("magic")  # type: ignore[arg-type]


def test_a_feed_side_is_kept_and_book_updates_move_the_nbbo():
    classifier = SideClassifier()
    classifier.on_event(
        BookUpdate(symbol="X", ts_event=1, ts_recv=1, ts_arrival=1, bids=((10 * D, 5),), asks=((11 * D, 5),))
    )
    given = trade(2, 11 * D, side="sell", side_source="feed")
    assert classifier.classify(given) is given
    assert classifier.classify(trade(3, 10 * D)).side == "sell"


def test_normaliser_drops_exact_duplicates_only():
    normaliser = Normaliser(dedup_capacity=3)
    normaliser.process(
        Quote(
            symbol="X", ts_event=1, ts_recv=1, ts_arrival=1, bid_price=10 * D, bid_size=1, ask_price=11 * D, ask_size=1
        )
    )
    first = trade(2, 11 * D, exchange=11, trade_id="183276", trf_id=3)
    assert normaliser.process(first).side == "buy"
    assert normaliser.process(msgspec.structs.replace(first, ts_recv=99)) is None  # a redelivered copy
    assert normaliser.process(msgspec.structs.replace(first, exchange=12)) is not None  # another venue's print
    assert normaliser.duplicates == 1
    for index in range(3):  # push the first key out of the bounded memory
        normaliser.process(trade(3, 11 * D, exchange=1, trade_id=str(index)))
    assert normaliser.process(first) is not None


def test_non_aggressive_prints_do_not_move_the_tick_test():
    normaliser = Normaliser(ConditionTable.bundled())
    normaliser.process(trade(1, 10 * D, trade_id="1"))
    normaliser.process(trade(2, 12 * D, trade_id="2", conditions=(2,)))  # average price: ignored by the tick test
    assert normaliser.process(trade(3, 11 * D, trade_id="3")).side == "buy"  # up from 10, not down from 12


def _accuracy(path) -> float:
    classifier = SideClassifier("lee_ready", "strict")
    correct = total = 0
    for event in read_lobster(path):
        if type(event) is BookUpdate:
            classifier.on_event(event)
        elif type(event) is Trade and event.side_source == "feed":
            hidden = msgspec.structs.replace(event, side="unknown", side_source="none")
            correct += classifier.classify(hidden).side == event.side
            total += 1
    return correct / total


@pytest.mark.parametrize(
    ("day", "at_least"),
    [
        ("LOBSTER_SampleFile_AMZN_2012-06-21_5.zip", 0.975),  # reference Lee-Ready: 0.976
        ("LOBSTER_SampleFile_AAPL_2012-06-21_1.zip", 0.959),  # reference Lee-Ready: 0.959
    ],
)
def test_lee_ready_accuracy_on_real_lobster_days(day, at_least):
    assert _accuracy(shared_data("lobster", day)) >= at_least
