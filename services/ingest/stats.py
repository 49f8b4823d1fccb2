"""What live ingest did since it started: counts every part of it adds to, returned by ``IngestService.run``."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.ingest.rejects import RejectCounter


@dataclass
class IngestStats:
    """Counts of one live ingest run (frames and events, not shares).

    ``statuses`` lists every feed status seen, in order (``auth_success``, ``watchdog_silence``…). ``trades`` and
    ``trades_without_side`` count the trades of a source that gives sides (Databento): those without one (side
    ``N``) are left to inference.
    """

    frames: int = 0
    events: int = 0
    dropped_frames: int = 0
    reconnects: int = 0
    gaps: int = 0
    backfilled: int = 0
    trades: int = 0
    trades_without_side: int = 0
    rejects: RejectCounter = field(default_factory=RejectCounter)
    statuses: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The counts ``order_flow.ingest_stopped`` logs, e.g. ``{"frames": 1200, "events": 35100, …}``."""
        return {
            "frames": self.frames,
            "events": self.events,
            "trades": self.trades,
            "trades_without_side": self.trades_without_side,
            "reconnects": self.reconnects,
            "gaps": self.gaps,
            "backfilled": self.backfilled,
            "dropped_frames": self.dropped_frames,
            "rejects": self.rejects.total,
            "rejects_by_code": dict(self.rejects.by_code),
        }
