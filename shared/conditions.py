"""What a print's trade conditions mean for order-flow rules.

The table is Polygon/Massive's ``GET /v3/reference/conditions`` for stock
trades; a snapshot ships in ``shared/data/polygon_trade_conditions.json`` and
:meth:`ConditionTable.from_reference` reads a fresh response. No rule names
a condition id: everything is derived from each condition's ``type``,
``update_rules.consolidated`` and name:

* Only conditions of type ``sale_condition`` (and ``settlement_condition``)
  decide; indicators (Trade Thru Exempt, short-sale restriction, financial
  status, SIP flags) ride along with other conditions and are ignored.
* **counts toward volume** — every deciding condition has
  ``updates_volume`` (official open/close reports do not), and the print is
  not a correction.
* **can be aggressive** (may be read as a seller or buyer hitting the book) —
  it counts toward volume, every deciding condition updates both high/low and
  open/close (this excludes average-price, derivatively priced, cash,
  next-day, seller's option, Form T/extended hours, odd lot, price variation,
  contingent and out-of-sequence prints), and none is an auction or cross
  (opening, closing, reopening, cross, official) or a late report (sold last,
  out of sequence, prior reference price).

Example: ``[14, 41]`` (Intermarket Sweep + Trade Thru Exempt) counts and can be
aggressive; ``[12, 37]`` (Form T, odd lot) counts but cannot; ``[15]``
(official close) does not count at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

DECIDING_TYPES = frozenset({"sale_condition", "settlement_condition"})
_AUCTION = re.compile(r"open|clos|cross|official", re.IGNORECASE)
_LATE = re.compile(r"out of sequence|sold last|prior reference", re.IGNORECASE)


class PrintClass(NamedTuple):
    """How the rules may use one print. ``reason`` names why it cannot be
    aggressive (``regular`` when it can)."""

    counts_volume: bool
    aggressive: bool
    reason: str


REGULAR = PrintClass(True, True, "regular")


@dataclass(frozen=True)
class Condition:
    """One row of the reference table."""

    id: int
    name: str
    type: str
    updates_volume: bool
    updates_high_low: bool
    updates_open_close: bool

    @property
    def deciding(self) -> bool:
        return self.type in DECIDING_TYPES

    def classify(self) -> PrintClass:
        if not self.updates_volume:
            return PrintClass(False, False, "not_volume")
        if _AUCTION.search(self.name):
            return PrintClass(True, False, "auction")
        if _LATE.search(self.name):
            return PrintClass(True, False, "late")
        if not (self.updates_high_low and self.updates_open_close):
            return PrintClass(True, False, "not_price_forming")
        return REGULAR


class ConditionTable:
    """Condition ids → meaning; :meth:`classify` is cached per combination."""

    def __init__(self, conditions: Iterable[Condition], source: str) -> None:
        self.by_id = {condition.id: condition for condition in conditions}
        self.source = source
        self._cache: dict[tuple[tuple[int, ...], bool], PrintClass] = {}

    @classmethod
    def from_reference(cls, document: dict[str, Any] | bytes | str, source: str = "reference") -> ConditionTable:
        """Read a ``/v3/reference/conditions`` response (``{"results": [...]}``)."""
        parsed: dict[str, Any] = json.loads(document) if isinstance(document, (bytes, str)) else document
        conditions = []
        for row in parsed.get("results", []):
            consolidated = (row.get("update_rules") or {}).get("consolidated") or {}
            conditions.append(
                Condition(
                    id=int(row["id"]),
                    name=str(row.get("name", "")),
                    type=str(row.get("type", "sale_condition")),
                    updates_volume=bool(consolidated.get("updates_volume", True)),
                    updates_high_low=bool(consolidated.get("updates_high_low", True)),
                    updates_open_close=bool(consolidated.get("updates_open_close", True)),
                )
            )
        if not conditions:
            raise ValueError("conditions reference holds no results")
        return cls(conditions, source)

    @classmethod
    def bundled(cls) -> ConditionTable:
        """The snapshot shipped with orderflow (used when REST is unreachable)."""
        text = resources.files("shared").joinpath("data/polygon_trade_conditions.json").read_text(encoding="utf-8")
        return cls.from_reference(text, source="bundled")

    def classify(self, conditions: tuple[int, ...], correction: int = 0) -> PrintClass:
        """Classify a print by its conditions (and correction indicator)."""
        key = (conditions, correction != 0)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = self._classify_uncached(conditions, correction != 0)
        self._cache[key] = result
        return result

    def _classify_uncached(self, conditions: tuple[int, ...], corrected: bool) -> PrintClass:
        if corrected:
            return PrintClass(False, False, "correction")
        result = REGULAR
        for condition_id in conditions:
            condition = self.by_id.get(condition_id)
            if condition is None:
                # unknown to the table: a real print, but never read as aggressive
                result = _worse(result, PrintClass(True, False, "unknown_condition"))
                continue
            if condition.deciding:
                result = _worse(result, condition.classify())
        return result


def _worse(current: PrintClass, other: PrintClass) -> PrintClass:
    """Combine: a print is only as usable as its most restrictive condition."""
    if not other.counts_volume:
        return other if current.counts_volume else current
    if current.aggressive and not other.aggressive:
        return other
    return current
