"""What a correct detector reports for each demo scenario: the table the demo, the scenario command and the tests
check against (the scenarios themselves, and why each expects what it does: :mod:`services.tools.scenarios`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Expectation:
    """What a correct detector reports for a scenario (default settings, ``threshold_mode=absolute``:
    a 20-minute session has no history to fit adaptive thresholds to).

    ``alerts`` lists ``(alert_type, source, severity, two_sided)`` in order;
    ``exits`` the triggers in order; ``statuses`` monitoring states that must
    appear on the status stream.
    """

    alerts: tuple[tuple[str, str, str, bool], ...] = ()
    exits: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    validation_errors: bool = False


EXPECTATIONS: dict[str, Expectation] = {
    "quiet": Expectation(),
    "large-sellers": Expectation(
        alerts=(
            ("large_seller", "tape", "warning", False),
            ("large_seller", "tape", "warning", False),
            ("large_seller", "tape", "warning", False),
            ("large_seller", "tape", "critical", False),  # the same seller crossing 2× the threshold
            ("large_seller", "tape", "warning", False),
        ),
        exits=("large_sellers",),
    ),
    "red-burst": Expectation(
        alerts=(("red_burst", "tape", "warning", False), ("red_burst", "tape", "critical", False)),
        exits=("red_burst",),
    ),
    "two-sided": Expectation(alerts=(("large_seller", "book", "warning", True),) * 3),
    "stale-feed": Expectation(statuses=("monitoring_halted", "monitoring_resumed"), validation_errors=True),
    "gap": Expectation(statuses=("gap",)),
}
