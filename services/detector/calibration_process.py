"""The calibration worker's child process: a symbol's REST fetch and the replay of its days through the rules engine
run here, away from the detector's event loop (a thread would hold the GIL against it for the whole fetch).

One process (``spawn``: nothing of the detector's state is forked), started at the first fetch and stopped by
:meth:`CalibrationProcess.close`. One fetch at a time (the worker holds one REST rate limit). What crosses over is
pickled: the history source (:class:`services.offline.calibrate.RestHistory`: the config, the condition table), the
symbol, the days; back come the sessions and the :class:`FetchProgress`.
Progress after each day comes back through a queue the asyncio side polls every :data:`POLL_SECONDS`; a stop sets
an event the child's fetch budget checks before each request and wait. Sample::

    process = CalibrationProcess()
    sessions, progress = await process.fetch(RestHistory(config), "AMZN", days, on_day=print)
    await process.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import queue
from collections.abc import Callable
from datetime import date
from multiprocessing.context import SpawnContext
from typing import Any, Protocol

import msgspec

from orderflow_client import logs
from orderflow_client.errors import OrderflowError

POLL_SECONDS = 0.05
"""How often the asyncio side looks for the child's progress (s)."""
LAST_PROGRESS_SECONDS = 2.0
"""At most this long (s) after a fetch's result for the rest of its progress (up to its end marker)."""


class StopFlag(Protocol):
    """What stops a history fetch when set: a :class:`threading.Event` (a fetch in a thread) or a
    ``multiprocessing`` one (in the child)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


class FetchProgress(msgspec.Struct, kw_only=True):
    """How far one symbol's bounded history fetch is: ``requests`` made, ``days_done`` of ``days_wanted`` trading
    days (newest first), ``events`` read, ``stopped`` the bound that ended it early (``requests``, ``seconds``,
    ``cancelled``; empty: none); ``index`` the index whose minute prices came with the sessions (for the beta; empty:
    none), else ``index_missing`` why not. Sample: ``FetchProgress(symbol="AMZN", days_wanted=5, days_done=2,
    requests=14, events=1204311, index="SPY")``."""

    symbol: str
    days_wanted: int
    days_done: int = 0
    requests: int = 0
    events: int = 0
    stopped: str = ""
    index: str = ""
    index_missing: str = ""


class HistoryUnavailableError(OrderflowError):
    """The history source failed (REST down, refused, unreadable); ``code`` says how (e.g. ``rest_unavailable``)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[type[HistoryUnavailableError], tuple[str, str]]:
        """Pickled whole (it comes back from the child process)."""
        return HistoryUnavailableError, (str(self), self.code)


_progress_queue: Any = None  # in the child: where each day's progress goes
_cancelled: Any = None  # in the child: set by the parent to stop the fetch


def parent_logging() -> dict[str, Any]:
    """How the detector logs, for the child to log the same way (its REST retries, refusals and bounds): the JSONL
    folder of its file handler (None: no files), the level and the registered secrets (masked in the child too).
    Sent pickled through the pool's pipe, never on a command line or in the environment."""
    root = logging.getLogger()
    folders = [handler.directory for handler in root.handlers if isinstance(handler, logs.DailyJsonlFileHandler)]
    return {
        "log_dir": folders[0] if folders else None,
        "level": logging.getLevelName(root.level) if root.level else "INFO",
        "secrets": tuple(logs.registered_secrets()),
    }


def _child_started(progress_queue: Any, cancelled: Any, logging_settings: dict[str, Any]) -> None:
    """The child's initializer: the queue and the event are handed over at its start (the only way they cross), and
    its logging set up as the detector's (:func:`parent_logging`: the same files, service ``detector``)."""
    global _progress_queue, _cancelled
    _progress_queue, _cancelled = progress_queue, cancelled
    logs.configure_logging(service="detector", **logging_settings)


def _fetch_in_child(history: Any, symbol: str, days: list[date], fetch_id: int) -> tuple[list[Any], Any]:
    """Runs in the child: ``history.fetch`` with the shared cancel event; each day's progress tagged ``fetch_id``,
    then ``(fetch_id, None)``: the fetch's end, after all its progress (the queue is fed in order; the result comes
    back another way, often first)."""
    try:
        return history.fetch(symbol, days, _cancelled, lambda progress: _progress_queue.put((fetch_id, progress)))
    finally:
        _progress_queue.put((fetch_id, None))


class CalibrationProcess:
    """One child process that runs history fetches (see the module's docstring); created lazily."""

    def __init__(self) -> None:
        self._context: SpawnContext = multiprocessing.get_context("spawn")
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._progress: Any = None
        self._cancelled: Any = None
        self._fetches = 0
        self._listeners: dict[int, Callable[[Any], None]] = {}  # fetch id → its on_day, while it waits or runs
        self._ended: set[int] = set()  # fetches whose end marker was drained (all their progress handed over)

    def _started(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._progress = self._context.Queue()
            self._cancelled = self._context.Event()
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=self._context,
                initializer=_child_started,
                initargs=(self._progress, self._cancelled, parent_logging()),
            )
        return self._pool

    async def fetch(
        self, history: Any, symbol: str, days: list[date], on_day: Callable[[Any], None]
    ) -> tuple[list[Any], Any]:
        """``history.fetch(symbol, days, ...)`` in the child; ``on_day(progress)`` on the event loop for each day.
        Cancelled: the child's fetch is told to stop (at its next request or wait). Raises what the fetch raises, or
        :class:`concurrent.futures.process.BrokenProcessPool` when the child died (the next fetch starts another)."""
        pool = self._started()
        self._fetches += 1
        fetch_id = self._fetches
        self._cancelled.clear()
        future = asyncio.wrap_future(pool.submit(_fetch_in_child, history, symbol, days, fetch_id))
        self._listeners[fetch_id] = on_day
        try:
            while not future.done():
                await asyncio.wait({future}, timeout=POLL_SECONDS)
                self._drain()
            waited = 0.0
            while future.exception() is None and fetch_id not in self._ended and waited < LAST_PROGRESS_SECONDS:
                self._drain()  # the last day's progress can come after the result
                if fetch_id not in self._ended:
                    await asyncio.sleep(POLL_SECONDS / 5)
                    waited += POLL_SECONDS / 5
            return future.result()
        except asyncio.CancelledError:
            self._cancelled.set()
            raise
        except concurrent.futures.process.BrokenProcessPool:
            if self._pool is pool:  # not a newer pool another fetch started meanwhile
                self._discard()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            del self._listeners[fetch_id]
            self._ended.discard(fetch_id)

    def _drain(self) -> None:
        """Each progress waiting in the queue to the fetch that sent it (fetches queued behind each other share the
        queue: whichever drains hands each its own); a finished or cancelled fetch's late progress is dropped."""
        while True:
            try:
                sent_by, progress = self._progress.get_nowait()
            except queue.Empty:
                return
            listener = self._listeners.get(sent_by)
            if listener is None:
                continue
            if progress is None:
                self._ended.add(sent_by)
            else:
                listener(progress)

    def _discard(self) -> concurrent.futures.ProcessPoolExecutor | None:
        pool, self._pool = self._pool, None
        return pool

    async def close(self) -> None:
        """Stop a fetch under way (at its next request or wait) and the child; waits for it in a thread."""
        if self._cancelled is not None:
            self._cancelled.set()
        pool = self._discard()
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
