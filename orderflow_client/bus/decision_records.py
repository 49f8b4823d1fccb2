"""What a bot decided on each exit recommendation: ``orderflow:riskmanager:<bot>:decision:<id>``.

The handled mark (:mod:`orderflow_client.bus.marks`) says only whether a bot is done with a recommendation; this
record says what it decided, for the dashboards to show. The value is a small JSON object::

    {"action":"tighten_stop","reasons":["tighten the stop to 186.49","order flow: …"],"new_stop":186490000000,
     "last_price":187430000000,"decided_ns":1718900000000000000}

``action``: the reference evaluator's ``exit``, ``tighten_stop`` or ``hold`` (or a bot's own word); prices in
nano-dollars, 0 when none; ``decided_ns``: when, ns since the epoch (UTC). A record expires like the handled marks.
Recording is the bot's choice: a bot that records nothing works as before (marks only). Readers take several
records in one round trip (a pipeline of GETs: on a cluster the keys may lie in different slots) and skip a value
they cannot decode.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from orderflow_client.bus.connection import Bus

MAX_REASONS = 8
MAX_REASON_CHARACTERS = 200


class DecisionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One bot's decision on one recommendation. Prices in nano-dollars (0: none); times in ns (UTC)."""

    action: str
    reasons: tuple[str, ...] = ()
    new_stop: int = 0
    last_price: int = 0
    decided_ns: int = 0

    def shortened(self) -> DecisionRecord:
        """The record as stored: at most :data:`MAX_REASONS` reasons of at most :data:`MAX_REASON_CHARACTERS`."""
        reasons = tuple(
            reason if len(reason) <= MAX_REASON_CHARACTERS else reason[: MAX_REASON_CHARACTERS - 1] + "…"
            for reason in self.reasons[:MAX_REASONS]
        )
        return msgspec.structs.replace(self, reasons=reasons)


_decoder = msgspec.json.Decoder(DecisionRecord)


def decoded(value: bytes | str | None) -> DecisionRecord | None:
    """A stored record; None when there is none or it is not one (a foreign or damaged value)."""
    if value is None:
        return None
    try:
        return _decoder.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class DecisionRecords:
    """The decision records of one bot name."""

    def __init__(self, bus: Bus, bot_name: str) -> None:
        self.bus = bus
        self.bot_name = bot_name

    def key(self, recommendation_id: str) -> str:
        return self.bus.keys.decision(self.bot_name, recommendation_id)

    async def record(self, recommendation_id: str, record: DecisionRecord, seconds: int) -> None:
        """SET the record (shortened) for ``seconds``, replacing one recorded before."""
        payload = msgspec.json.encode(record.shortened())
        async with self.bus.calling("record_decision"):
            await self.bus.client.set(self.key(recommendation_id), payload, ex=seconds)

    async def read(self, recommendation_ids: Iterable[str]) -> dict[str, DecisionRecord]:
        """The records of ``recommendation_ids`` that exist, in one round trip; none asked, no call."""
        wanted = list(dict.fromkeys(recommendation_ids))
        if not wanted:
            return {}
        async with self.bus.calling("read_decisions"):
            pipeline = self.bus.client.pipeline(transaction=False)
            for recommendation_id in wanted:
                pipeline.get(self.key(recommendation_id))
            values = await pipeline.execute()
        found = {identifier: decoded(value) for identifier, value in zip(wanted, values, strict=True)}
        return {identifier: record for identifier, record in found.items() if record is not None}


async def read_decisions(bus: Bus, bot_name: str, recommendation_ids: Iterable[str]) -> dict[str, DecisionRecord]:
    """What ``bot_name`` decided on each of ``recommendation_ids``: id → record, for those it recorded (one round
    trip; GETs only, which the bot's and the dashboard's Redis users may send)."""
    return await DecisionRecords(bus, bot_name).read(recommendation_ids)
