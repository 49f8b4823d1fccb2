"""Which of the monitored symbols this process owns: a lease in Redis each (:mod:`orderflow_client.bus.leases`), so
that several detectors (or several ingests: ``kind``) share the symbols among themselves, each symbol handled by
exactly one. Written for detectors below; ingest uses it the same way (one vendor connection each, subscribing to
the symbols it owns: :mod:`services.ingest.subscriptions`).

At every refresh (each second) :meth:`SymbolOwnership.settle` does, in this order:

1. a heartbeat: this detector is alive, and the detectors alive now are known (heard from within the lease time);
2. for each monitored symbol, its **preferred** detector: the alive one with the highest hash of (symbol, name)
   (rendezvous hashing: every detector computes the same answer, and when one joins or leaves only the symbols it
   gains or loses move);
3. a symbol held: renewed — or released when another alive detector is preferred (a newcomer gets its share; the
   batch in hand was handled and acknowledged before the refresh, so nothing is lost between the two owners); a
   renewal refused (another holds it: this detector was paused past its lease) drops it;
4. a symbol not held: taken when this detector is preferred, or when it has seen it held by nobody for a whole
   lease time (its preferred detector does not take it);
5. a symbol no longer monitored: released.

A detector that dies keeps its leases until they expire (``lease_seconds``, 5 s by default): then the preferred
among the living takes each over, rebuilds its windows from the stream's history and reclaims the entries the dead
one left pending (:class:`~services.detector.consumer.GroupConsumer`), so it neither misses nor invents an alert.
:meth:`holds` answers from this process's clock (renewed within the lease time, less a margin): a detector paused
past its lease stops handling a symbol as soon as it wakes, and the publish it may already be in is refused by Redis
(fencing: :meth:`fence` names the lease value each output is published under).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time

from orderflow_client import logs
from orderflow_client.bus.calls import OUTAGE_ERRORS
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.leases import Leases, holder_of

KIND = "detector"  # the default kind; ingest's is "ingest"
SAFETY = 0.75  # a lease counts as held locally for this share of its time since the last renewal
JOIN_WATCH_SECONDS = 1.5  # how long a newcomer watches a recent heartbeat of its own name (others beat each second)
log = logs.get_logger(__name__)


def preferred(symbol: str, members: list[str]) -> str:
    """The member that should own ``symbol`` (rendezvous hashing), e.g. ``preferred("AAPL", ["a", "b"])``."""
    return max(members, key=lambda member: hashlib.blake2b(f"{symbol}\0{member}".encode(), digest_size=8).digest())


class NameInUseError(RuntimeError):
    """Another live process of the same kind heartbeats under this process's name: two of them would share its
    leases (and a detector its pending entries). Start each with a name of its own."""


class SymbolOwnership:
    """This process's leases (see the module docstring): ``name`` its name among the processes of ``kind``."""

    def __init__(self, bus: Bus, name: str, lease_seconds: float, kind: str = KIND, *, exclusive: bool = False) -> None:
        self.leases = Leases(bus)
        self.keys = bus.keys
        self.name = name
        self.kind = kind
        self.exclusive = exclusive  # given its own symbols (--symbol): it holds them, whoever else is alive
        self.ttl_ms = int(lease_seconds * 1000)
        self.seen_held: dict[str, str] = {}  # symbol → another holder seen on its lease (a take is then a hand-over)
        self.handed_over: set[str] = set()  # symbols taken after another held them, not yet asked about
        self.held: dict[str, str] = {}  # symbol → the lease value held
        self.renewed: dict[str, float] = {}  # symbol → monotonic time of the last renewal or taking
        self.free_since: dict[str, float] = {}  # symbol → when this detector first saw its lease free
        self.members: list[str] = []
        self.joined = False  # the name checked (:meth:`_join`): until then no heartbeat is sent

    async def settle(self, wanted: list[str]) -> list[str]:
        """The symbols of ``wanted`` this detector owns after this round (see the module docstring)."""
        if not self.joined:
            await self._join()
        self.members = await self.leases.heartbeat(self.kind, self.name, ttl_ms=self.ttl_ms)
        alive = self.members if self.name in self.members else [*self.members, self.name]
        wanted_set = set(wanted)
        for symbol in [symbol for symbol in self.held if symbol not in wanted_set]:
            await self._release(symbol, "no longer monitored")
        # a detector given its own symbols takes and keeps them (the others alive may not want them: preferring one
        # of those would leave the symbol free for a lease time, then taken back and warmed up again)
        choices = {symbol: self.name if self.exclusive else preferred(symbol, alive) for symbol in wanted}
        for symbol in [symbol for symbol in self.held if choices[symbol] != self.name]:
            await self._release(symbol, f"{choices[symbol]} is preferred")
        await self._renew_held()
        now = time.monotonic()
        holders = await self.leases.holders(self.kind, [symbol for symbol in wanted if symbol not in self.held])
        for symbol in wanted:
            if symbol in self.held:
                continue
            choice = choices[symbol]
            holder = holder_of(holders.get(symbol, ""))
            if holder and holder != self.name:
                self.free_since.pop(symbol, None)
                self.seen_held[symbol] = holder
                continue
            if holder == self.name:  # its own lease from before a restart, adopted: what came between is unknown
                self.seen_held[symbol] = self.name
            free_since = self.free_since.setdefault(symbol, now)
            if choice == self.name or holder == self.name or now - free_since >= self.ttl_ms / 1000:
                await self._take(symbol, now)
        return [symbol for symbol in wanted if symbol in self.held]

    async def renew(self) -> None:
        """The heartbeat and every lease held renewed, nothing taken or given up: what :meth:`keep` does each
        second, apart from the refreshes (a long warm-up or backfill in a refresh must not let the leases lapse)."""
        if not self.joined:  # the first refresh checks the name first
            return
        self.members = await self.leases.heartbeat(self.kind, self.name, ttl_ms=self.ttl_ms)
        await self._renew_held()

    async def _renew_held(self) -> None:
        held = dict(self.held)
        now = time.monotonic()
        renewed = await self.leases.renew(self.kind, held, ttl_ms=self.ttl_ms)
        for symbol, kept in renewed.items():
            if self.held.get(symbol) != held[symbol]:
                continue  # released or retaken meanwhile (settle and keep interleave at their awaits)
            if kept:
                self.renewed[symbol] = now
            else:
                self._drop(symbol, "renewal refused: another holds it")

    async def keep(self, stop: asyncio.Event, every_seconds: float = 1.0) -> None:
        """Renew the leases every ``every_seconds`` until ``stop``, on a timer of their own; a Redis outage is
        waited out here (the leases then lapse, as they must: the service's own loop reports the outage)."""
        while not stop.is_set():
            with contextlib.suppress(*OUTAGE_ERRORS):
                await self.renew()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_seconds)

    async def _join(self) -> None:
        """Before the first heartbeat: a heartbeat of this name heard within the lease time is either a predecessor
        that died (this is its restart: it adopts its leases) or another live process using the same name. Watched
        for :data:`JOIN_WATCH_SECONDS`: if it beats again meanwhile, :class:`NameInUseError`."""
        first = (await self.leases.members_seen(self.kind)).get(self.name)
        if first is not None and first < self.ttl_ms / 1000:
            started = time.monotonic()
            await asyncio.sleep(JOIN_WATCH_SECONDS)
            again = (await self.leases.members_seen(self.kind)).get(self.name)
            if again is not None and again < first + (time.monotonic() - started) - JOIN_WATCH_SECONDS / 2:
                raise NameInUseError(
                    f"another {self.kind} is running under the name {self.name!r} (its heartbeat is {again:.1f} s "
                    "old): give each process a name of its own"
                )
        self.joined = True

    async def _take(self, symbol: str, now: float) -> None:
        value = await self.leases.acquire(self.kind, symbol, self.name, ttl_ms=self.ttl_ms)
        if holder_of(value) == self.name:
            self.held[symbol], self.renewed[symbol] = value, now
            self.free_since.pop(symbol, None)
            if self.seen_held.pop(symbol, None) is not None:
                self.handed_over.add(symbol)
            log.info("order_flow.lease_taken", symbol=symbol, lease=value, kind=self.kind)

    async def _release(self, symbol: str, reason: str) -> None:
        value = self.held.pop(symbol)
        self.renewed.pop(symbol, None)
        await self.leases.release(self.kind, symbol, value)
        log.info("order_flow.lease_released", symbol=symbol, lease=value, reason=reason, kind=self.kind)

    def _drop(self, symbol: str, reason: str) -> None:
        value = self.held.pop(symbol, "")
        self.renewed.pop(symbol, None)
        self.seen_held[symbol] = "?"  # taken again later (even by this process), it is a hand-over: data may be missing
        log.warning("order_flow.lease_lost", symbol=symbol, lease=value, detail=reason, kind=self.kind)

    def lost(self, symbol: str) -> None:
        """Redis refused a publish under ``symbol``'s lease: it is another's now."""
        if symbol in self.held:
            self._drop(symbol, "publish refused")

    def holds(self, symbol: str) -> bool:
        """Whether this detector may handle ``symbol`` now, by its own clock: held, and renewed recently enough."""
        renewed = self.renewed.get(symbol)
        return renewed is not None and time.monotonic() - renewed < SAFETY * self.ttl_ms / 1000

    def fence(self, symbol: str) -> tuple[str, str] | None:
        """``(lease key, value held)`` to publish ``symbol``'s outputs under; None when not held."""
        value = self.held.get(symbol)
        return None if value is None else (self.keys.lease(self.kind, symbol), value)

    def took_over(self, symbol: str) -> bool:
        """Whether ``symbol`` was taken from another holder, taken again after this process lost it (a pause, a Redis
        restart that forgot the leases), or adopted from this name's predecessor (a restart), since last asked: its
        data may have a hole (ingest bridges it)."""
        if symbol in self.handed_over:
            self.handed_over.discard(symbol)
            return True
        return False

    async def leave(self) -> None:
        """A clean stop: every lease released and this detector out of the members, so others take over at once
        (nothing, if it never joined: the name may be another live process's)."""
        if not self.joined:
            return
        for symbol in list(self.held):
            await self._release(symbol, "stopping")
        await self.leases.leave(self.kind, self.name)
