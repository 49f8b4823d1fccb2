"""Rejected input: what a parser could not use, with a code to count and log.

Parsers never raise on bad vendor data; they yield :class:`Reject` values
next to the events, so one bad row or frame element never loses the rest.
Codes are short snake_case words, used as the ``code`` label of
``orderflow_frames_rejected_total``.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple


class Reject(NamedTuple):
    """One rejected frame, element or row.

    ``source`` names the format (``polygon_ws``, ``lobster``…), ``where`` the
    place (file:line or frame receive time), ``detail`` the parser's message.
    """

    source: str
    code: str
    where: str
    detail: str


class RejectCounter:
    """Counts rejects by code and keeps the first few for the summary."""

    def __init__(self, keep: int = 20) -> None:
        self.by_code: Counter[str] = Counter()
        self.examples: list[Reject] = []
        self.keep = keep

    def add(self, reject: Reject) -> None:
        self.by_code[reject.code] += 1
        if len(self.examples) < self.keep:
            self.examples.append(reject)

    @property
    def total(self) -> int:
        return sum(self.by_code.values())
