"""The calibration child's fetches queued behind each other each get their own progress (the child sends every
fetch's progress through one queue, and each waiting fetch polls it)."""

from __future__ import annotations

import asyncio
import time
from datetime import date
from typing import Any

import msgspec

from services.detector.calibration_process import CalibrationProcess, FetchProgress


class SlowHistory:
    """A history whose fetch reports each day after ``seconds`` (picklable: it runs in the spawned child)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def fetch(self, symbol: str, days: list[date], cancelled: Any, on_day: Any) -> tuple[list[Any], FetchProgress]:
        progress = FetchProgress(symbol=symbol, days_wanted=len(days))
        for number, _day in enumerate(days, 1):
            time.sleep(self.seconds)
            progress = msgspec.structs.replace(progress, days_done=number, requests=number)
            on_day(progress)
        return [], progress


async def test_fetches_queued_on_the_one_child_each_get_every_progress_of_their_own():
    child = CalibrationProcess()
    seen: dict[str, list[tuple[str, int]]] = {"AAA": [], "BBB": []}
    days = [date(2026, 12, 4), date(2026, 12, 3), date(2026, 12, 2)]
    try:
        fetches = [
            child.fetch(
                SlowHistory(0.3),
                symbol,
                days,
                lambda progress, symbol=symbol: seen[symbol].append((progress.symbol, progress.days_done)),
            )
            for symbol in ("AAA", "BBB")
        ]
        results = await asyncio.gather(*fetches)
    finally:
        await child.close()
    assert [progress.days_done for _sessions, progress in results] == [3, 3]
    assert seen == {symbol: [(symbol, 1), (symbol, 2), (symbol, 3)] for symbol in ("AAA", "BBB")}
