"""The risk-manager side's decisions: the evaluator, stops on a valid tick, the decision log, signatures."""

from __future__ import annotations

import json
import logging

import msgspec
import pytest

from orderflow_client import logs
from orderflow_client.decisions import evaluate, log_decision
from orderflow_client.positions import Position
from tests.support.events import D, recommendation


def position(entry: int = 100 * D, stop: int = 95 * D, quantity: int = 100) -> Position:
    return Position(symbol="AAPL", quantity=quantity, entry_price=entry, stop_loss=stop)


@pytest.mark.parametrize(
    ("trigger", "last", "stop", "quantity", "action"),
    [
        ("red_burst", 99 * D, 95 * D, 100, "exit"),  # panic selling: out
        ("large_sellers", 102 * D, 95 * D, 100, "exit"),  # in profit: protect the gain
        ("large_sellers", 96 * D, 95_500_000_000, 100, "exit"),  # losing, 0.52 % above the stop
        ("large_sellers", 99 * D, 95 * D, 100, "tighten_stop"),
        ("large_sellers", 101 * D, 110 * D, -100, "hold"),  # a losing short far from its stop
    ],
)
def test_evaluator_decisions(trigger, last, stop, quantity, action):
    decision = evaluate(recommendation(trigger), position(stop=stop, quantity=quantity), last)
    assert decision.action == action
    assert any("order flow" in reason for reason in decision.reasons)
    assert any("unrealised P&L" in reason for reason in decision.reasons)
    if action == "tighten_stop":
        assert decision.new_stop == 98_500_000_000  # 0.5 % under 99.00 is 98.505: rounded down to the penny


@pytest.mark.parametrize(
    ("last", "current_stop", "new_stop"),
    [
        (49_590_000_000, 45 * D, 49_340_000_000),  # 49.34205 (a sub-penny stop brokers refuse) -> 49.34
        (512_300_000, 400_000_000, 509_700_000),  # $0.5123: 0.50973850 -> 0.5097 (four decimals below $1)
    ],
)
def test_a_suggested_stop_is_on_a_valid_tick(last, current_stop, new_stop):
    decision = evaluate(recommendation(), position(entry=last + 2 * D, stop=current_stop), last)
    assert decision.action == "tighten_stop" and decision.new_stop == new_stop


def test_decisions_are_logged_for_the_spec_queries(tmp_path):
    logs.configure_logging(service="bot", log_dir=tmp_path, console=False)
    try:
        for trigger, last in (("red_burst", 99 * D), ("large_sellers", 99 * D)):
            log_decision(recommendation(trigger), position(), last, evaluate(recommendation(trigger), position(), last))
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for path in tmp_path.glob("*.jsonl") for line in path.read_text().splitlines()]
    assert [line["decision"] for line in lines] == ["exit", "tighten_stop"]
    assert lines[0]["exit_reason"] == "order_flow_alert" and "exit_reason" not in lines[1]
    assert all(line["event"] == "order_flow.exit_signal_triggered" for line in lines)
    raw = "".join(path.read_text() for path in tmp_path.glob("*.jsonl"))
    assert raw.count('"exit_reason":"order_flow_alert"') == 1


def test_a_signature_covers_every_field_and_expires():
    from orderflow_client.signing import sign, verify

    key, now = b"k" * 32, 1_780_000_000 * 10**9
    signed = sign(recommendation(number=5), key, "k1", now)
    assert len(signed.signature) == 64 and signed.key_id == "k1" and signed.signed_ns == now
    assert verify(signed, {"k1": key}, now + 10**9, 600 * 10**9) == "authentic"
    assert (
        verify(msgspec.structs.replace(signed, latency_ms=3.5), {"k1": key}, now, 600 * 10**9) == "authentic"
    )  # set on delivery
    assert verify(msgspec.structs.replace(signed, symbol="MSFT"), {"k1": key}, now, 600 * 10**9) == "forged"
    assert verify(msgspec.structs.replace(signed, signed_ns=now + 1), {"k1": key}, now, 600 * 10**9) == "forged"
    assert verify(signed, {"k1": b"x" * 32}, now, 600 * 10**9) == "forged"
    assert verify(signed, {"k2": key}, now, 600 * 10**9) == "unknown_key"
    assert verify(recommendation(number=5), {"k1": key}, now, 600 * 10**9) == "unsigned"
    assert verify(signed, {"k1": key}, now + 601 * 10**9, 600 * 10**9) == "expired"
