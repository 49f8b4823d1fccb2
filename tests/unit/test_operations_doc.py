"""The operator's guide lists every log event the code writes, and none that it does not."""

from __future__ import annotations

import re

from tests.support.paths import REPO

EVENT_IN_CODE = re.compile(r"[\"'](order_flow\.[a-z_]+)[\"']")
EVENT_IN_DOC = re.compile(r"`(order_flow\.[a-z_]+)`")


def events_in_code() -> set[str]:
    """Every ``order_flow.*`` event name written as a literal in the three packages."""
    found: set[str] = set()
    for package in ("orderflow_client", "shared", "services"):
        for path in (REPO / package).rglob("*.py"):
            found |= set(EVENT_IN_CODE.findall(path.read_text()))
    return found


def test_every_log_event_is_in_the_operators_guide_and_only_those():
    documented = set(EVENT_IN_DOC.findall((REPO / "docs" / "operations.md").read_text()))
    code = events_in_code()
    assert len(code) > 40
    assert not code - documented, f"log events missing from docs/operations.md: {sorted(code - documented)}"
    assert not documented - code, f"docs/operations.md lists events the code never writes: {sorted(documented - code)}"
