"""The condition table: every class of print, combinations, a fresh reference."""

from __future__ import annotations

import json

import pytest

from shared.conditions import ConditionTable, PrintClass

TABLE = ConditionTable.bundled()


@pytest.mark.parametrize(
    ("conditions", "counts", "aggressive", "reason"),
    [
        ((), True, True, "regular"),
        ((0,), True, True, "regular"),
        ((14, 41), True, True, "regular"),  # intermarket sweep + trade-through exempt
        ((12,), True, False, "not_price_forming"),  # Form T / extended hours
        ((37,), True, False, "not_price_forming"),  # odd lot
        ((2,), True, False, "not_price_forming"),  # average price
        ((10,), True, False, "not_price_forming"),  # derivatively priced
        ((7,), True, False, "not_price_forming"),  # cash sale
        ((53,), True, False, "not_price_forming"),  # qualified contingent trade
        ((8,), True, False, "auction"),  # closing prints
        ((25,), True, False, "auction"),  # opening prints
        ((28,), True, False, "auction"),  # reopening prints
        ((9,), True, False, "auction"),  # cross trade
        ((17,), True, False, "auction"),  # market center opening trade
        ((32,), True, False, "late"),  # sold out of sequence
        ((30,), True, False, "late"),  # sold last
        ((22,), True, False, "late"),  # prior reference price
        ((15,), False, False, "not_volume"),  # official close
        ((16,), False, False, "not_volume"),  # official open
        ((999,), True, False, "unknown_condition"),
        ((14, 37), True, False, "not_price_forming"),  # an odd-lot sweep child
        ((15, 14), False, False, "not_volume"),
    ],
)
def test_every_class(conditions, counts, aggressive, reason):
    assert TABLE.classify(conditions) == PrintClass(counts, aggressive, reason)


def test_corrections_neither_count_nor_press():
    assert TABLE.classify((0,), correction=1) == PrintClass(False, False, "correction")


def test_indicators_ride_along_without_deciding():
    for indicator in (41, 57, 62, 40):  # trade-through exempt, SSR, financial status, held
        assert TABLE.classify((indicator,)).aggressive
        assert TABLE.by_id[indicator].deciding is False


def test_a_fresh_reference_response_is_used_as_given():
    document = {
        "results": [
            {
                "id": 0,
                "name": "Regular Sale",
                "type": "sale_condition",
                "update_rules": {
                    "consolidated": {"updates_high_low": True, "updates_open_close": True, "updates_volume": True}
                },
            },
            {
                "id": 77,
                "name": "New Auction Kind: Closing Cross",
                "type": "sale_condition",
                "update_rules": {
                    "consolidated": {"updates_high_low": True, "updates_open_close": True, "updates_volume": True}
                },
            },
        ]
    }
    table = ConditionTable.from_reference(json.dumps(document).encode(), source="rest")
    assert table.source == "rest"
    assert table.classify((77,)).reason == "auction"
    assert table.classify((12,)).reason == "unknown_condition"  # not in this table
    with pytest.raises(ValueError):
        ConditionTable.from_reference({"results": []})


def test_bundled_table_covers_polygon_trade_conditions():
    assert len(TABLE.by_id) >= 57 and TABLE.source == "bundled"
    assert TABLE.by_id[14].name == "Intermarket Sweep"
