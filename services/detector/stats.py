"""What one detector did since it started: the counters ``orderflow detect`` logs when it stops.

The consumer (:mod:`services.detector.consumer`) counts what it read, the sink (:mod:`services.detector.sink`) what
it published; :meth:`services.detector.service.DetectorService.run` returns the one object both write to.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DetectorStats:
    """Counts since start; ``latencies_ms`` (milliseconds, receive → processed or published) only when the service
    is asked to keep them (benchmarks)."""

    events: int = 0
    undecodable: int = 0
    processing_failures: int = 0
    alerts: int = 0
    exits: int = 0
    duplicates_suppressed: int = 0
    warmed_up_events: int = 0
    latencies_ms: list[float] = field(default_factory=list)
