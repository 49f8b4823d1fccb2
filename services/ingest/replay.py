"""Replay: offline sources published onto the per-symbol streams exactly as
live ingest publishes them (same keys, same payloads, several events of a
stream to an entry, ``ts_arrival`` kept
from the source, ``ts_recv`` stamped when the batch is sealed for publishing,
at most one batch before its XADD).

One generator, :func:`prepare_batches`, turns source events into sealed,
encoded batches (rejects counted, duplicates dropped, sides classified,
pacing by event time). Two ways to drive it:

* :func:`replay` — in this process (the demo and tests; embedded bus);
* :func:`replay_files` — in a worker process that parses while this one
  publishes, through a bounded queue (at most ``QUEUE_BATCHES`` batches wait,
  so memory stays bounded): parsing a LOBSTER day costs about as much CPU as
  publishing it, and the machine has two cores.

Pacing: ``speed=10`` plays ten seconds of market time per wall second;
``speed=None`` publishes as fast as Redis takes it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue as queue_module
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import NamedTuple

import msgspec

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.entries import pack_market_events
from orderflow_client.bus.keys import Keys
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, now_ns
from orderflow_client.wire import FeedStatus, MarketEvent, encode
from services.ingest.classify import Method
from services.ingest.normalise import Normaliser, normalised
from services.ingest.rejects import Reject, RejectCounter
from shared import service_metrics
from shared.conditions import ConditionTable

QUEUE_BATCHES = 8
_replace = msgspec.structs.replace


@dataclass
class ReplaySummary:
    """What a replay did; ``events_by_kind`` counts published events."""

    events_by_kind: Counter = field(default_factory=Counter)
    rejects: RejectCounter = field(default_factory=RejectCounter)
    duplicates: int = 0
    elapsed_seconds: float = 0.0
    symbols: set[str] = field(default_factory=set)

    @property
    def published(self) -> int:
        return sum(self.events_by_kind.values())

    @property
    def events_per_second(self) -> float:
        return self.published / self.elapsed_seconds if self.elapsed_seconds else 0.0


class PreparedBatch(NamedTuple):
    """Encoded ``(stream, type tag, payload)`` entries and the events they hold, by kind."""

    entries: list[tuple[str, bytes, bytes]]
    kinds: Counter


class Wait(NamedTuple):
    """Pacing: publish nothing more before ``perf_counter() >= until``."""

    until: float


def stream_keys(keys: Keys, event: MarketEvent) -> list[str]:
    """Where an event goes: its symbol's market stream; a status without symbols
    goes on the status stream."""
    if isinstance(event, FeedStatus):
        return [keys.market(symbol) for symbol in event.symbols] or [keys.status]
    return [keys.market(event.symbol)]


def prepare_batches(
    events: Iterable[MarketEvent | Reject],
    keys: Keys,
    summary: ReplaySummary,
    *,
    normaliser: Normaliser | None = None,
    speed: float | None = None,
    batch_size: int = 1000,
) -> Iterator[PreparedBatch | Wait]:
    """Sealed batches in source order, with :class:`Wait` where pacing asks."""
    normaliser = normaliser or Normaliser()
    pending: list[MarketEvent] = []
    anchor_event: int | None = None
    anchor_wall = 0.0

    def seal() -> PreparedBatch:
        stamp = now_ns()
        on_markets: list[tuple[str, MarketEvent]] = []
        entries: list[tuple[str, bytes, bytes]] = []  # statuses without symbols: one entry each on the status stream
        for pending_event in pending:
            event = _replace(pending_event, ts_recv=stamp)
            if isinstance(event, FeedStatus) and not event.symbols:
                entries.append((keys.status, b"status", encode(event)))
            else:
                on_markets.extend((key, event) for key in stream_keys(keys, event))
        entries.extend(pack_market_events(on_markets))
        kinds = Counter(str(type(event).__struct_config__.tag) for event in pending)
        pending.clear()
        return PreparedBatch(entries, kinds)

    for event in normalised(events, normaliser, summary.rejects):
        if speed is not None:
            if anchor_event is None:
                anchor_event, anchor_wall = event.ts_event, time.perf_counter()
            due = anchor_wall + (event.ts_event - anchor_event) / NANOSECONDS_PER_SECOND / speed
            if due > time.perf_counter():
                if pending:
                    yield seal()
                yield Wait(due)
        if not isinstance(event, FeedStatus):
            summary.symbols.add(event.symbol)
        pending.append(event)
        if len(pending) >= batch_size:
            yield seal()
    if pending:
        yield seal()
    summary.duplicates = normaliser.duplicates


class _Publisher:
    """Publishes prepared batches with at most one in flight."""

    def __init__(self, bus: Bus, summary: ReplaySummary, on_published: Callable[[int], None] | None) -> None:
        self.bus, self.summary, self.on_published = bus, summary, on_published
        self.in_flight: asyncio.Future | None = None

    async def send(self, batch: PreparedBatch) -> None:
        await self.drain()
        self.in_flight = asyncio.ensure_future(self._publish_batch(batch))
        await asyncio.sleep(0)  # let it go out before more work is done

    async def drain(self) -> None:
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            await in_flight

    async def _publish_batch(self, batch: PreparedBatch) -> None:
        await self.bus.publish_encoded(batch.entries)
        for kind, count in batch.kinds.items():
            self.summary.events_by_kind[kind] += count
            service_metrics.EVENTS_PUBLISHED.labels(kind=kind).inc(count)
        if self.on_published is not None:
            self.on_published(sum(batch.kinds.values()))


async def replay(
    bus: Bus,
    events: Iterable[MarketEvent | Reject],
    *,
    normaliser: Normaliser | None = None,
    speed: float | None = None,
    batch_size: int = 1000,
    on_published: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Publish ``events`` (in source order) from this process."""
    summary = ReplaySummary()
    publisher = _Publisher(bus, summary, on_published)
    started = time.perf_counter()
    for item in prepare_batches(events, bus.keys, summary, normaliser=normaliser, speed=speed, batch_size=batch_size):
        if isinstance(item, Wait):
            await publisher.drain()
            await asyncio.sleep(max(0.0, item.until - time.perf_counter()))
        else:
            await publisher.send(item)
    await publisher.drain()
    _count_rejects(summary)
    summary.elapsed_seconds = time.perf_counter() - started
    return summary


def _count_rejects(summary: ReplaySummary) -> None:
    for code, count in summary.rejects.by_code.items():
        source = next((r.source for r in summary.rejects.examples if r.code == code), "replay")
        service_metrics.FRAMES_REJECTED.labels(source=source, code=code).inc(count)


@dataclass(frozen=True)
class SourceSpec:
    """What the worker process reads (picklable)."""

    format: str
    paths: tuple[Path, ...]
    symbol: str | None = None
    day: date | None = None
    quote_size_multiplier: int = 1
    side_method: Method = "lee_ready"


def _worker(
    spec: SourceSpec,
    conditions: ConditionTable | None,
    prefix: str,
    speed: float | None,
    batch_size: int,
    out: multiprocessing.Queue,
) -> None:
    """Child process: parse, normalise, encode; ship batches, then the summary."""
    from services.ingest.sources import read_events

    summary = ReplaySummary()
    try:
        events = read_events(
            spec.format,
            list(spec.paths),
            symbol=spec.symbol,
            day=spec.day,
            quote_size_multiplier=spec.quote_size_multiplier,
        )
        normaliser = Normaliser(conditions, method=spec.side_method)
        for item in prepare_batches(
            events, Keys(prefix), summary, normaliser=normaliser, speed=speed, batch_size=batch_size
        ):
            if isinstance(item, Wait):
                time.sleep(max(0.0, item.until - time.perf_counter()))
            else:
                out.put(("batch", item))
        out.put(("done", (summary.rejects, summary.duplicates, summary.symbols)))
    except Exception as error:  # reported to the parent, which raises it
        out.put(("error", f"{type(error).__name__}: {error}"))


class ReplayWorkerError(RuntimeError):
    """The parsing worker failed; the message is its error."""


async def replay_files(
    bus: Bus,
    spec: SourceSpec,
    *,
    conditions: ConditionTable | None = None,
    speed: float | None = None,
    batch_size: int = 1000,
    on_published: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Replay files with parsing in a worker process and publishing here."""
    # fork starts in milliseconds; the worker touches only files and the queue,
    # never this process's event loop or sockets. spawn where fork is missing.
    context = (
        multiprocessing.get_context("fork")
        if "fork" in multiprocessing.get_all_start_methods()
        else multiprocessing.get_context("spawn")
    )
    batches: multiprocessing.Queue = context.Queue(maxsize=QUEUE_BATCHES)
    worker = context.Process(
        target=_worker, args=(spec, conditions, bus.keys.prefix, speed, batch_size, batches), daemon=True
    )
    summary = ReplaySummary()
    publisher = _Publisher(bus, summary, on_published)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    worker.start()
    try:
        while True:
            try:
                kind, payload = await loop.run_in_executor(None, batches.get, True, 1.0)
            except queue_module.Empty:
                if not worker.is_alive():
                    raise ReplayWorkerError(f"replay worker exited with code {worker.exitcode}") from None
                continue
            if kind == "batch":
                await publisher.send(payload)
            elif kind == "done":
                summary.rejects, summary.duplicates, summary.symbols = payload
                break
            else:
                raise ReplayWorkerError(payload)
        await publisher.drain()
    finally:
        if worker.is_alive():
            worker.terminate()
        worker.join(timeout=5)
    _count_rejects(summary)
    summary.elapsed_seconds = time.perf_counter() - started
    return summary
