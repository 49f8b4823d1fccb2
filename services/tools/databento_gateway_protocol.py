"""The Databento Live (raw API) control lines, gateway side: parse what a client sends, format what it answers.

Before the binary DBN stream, client and gateway talk in text lines: ``key=value`` fields joined by ``|``, each line
ended by ``\\n``. The exchange the official ``databento`` client (0.88) had with
:mod:`services.tools.databento_gateway` (captured through a relay; ``←`` gateway to client, ``→`` client to gateway;
the key was the example ``db-EXAMPLEexample0123456789ABCDE``; the ``auth`` line is one line, cut here at a ``|``)::

    ← lsg_version=0.1.0-orderflow
    ← cram=5kWeij0soAuGejG79fuOONd1WW3ZcoBA
    → auth=c63bc07c77af8d16d7434e0f95162108427d35fb3ad0077be59294884d5581ef-ABCDE|dataset=XNAS.ITCH|encoding=dbn
      |ts_out=0|compression=none|heartbeat_interval_s=30|client=Databento/0.87.0 Python/3.11.7 Linux/6.18.44-fc-v1272
    ← success=1|session_id=1
    → schema=trades|stype_in=raw_symbol|symbols=AMZN|snapshot=0|id=0|is_last=1
    → start_session=0
    ← DBN metadata, then records (binary)

The ``auth`` value is the CRAM response: the SHA-256 hex digest of ``"{cram}|{key}"``, a dash, and the key's last five
characters (its bucket id) — so the key itself never crosses the wire. A wrong key is answered
``success=0|error=Authentication failed.`` and the connection is closed.

Everything here is pure (no sockets): :func:`parse_client_line` turns one line into a request or raises
:class:`ControlLineError`, whose ``code`` names the fault for logs and whose message says it in words.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

BUCKET_ID_LENGTH = 5
"""The key's last characters sent in clear beside the CRAM digest (``databento.common.cram``)."""
CHALLENGE_LENGTH = 32
MAXIMUM_LINE_BYTES = 65_536
"""A control line longer than this is refused (the client sends at most 500 symbols a line, ~12 KB)."""
GATEWAY_VERSION = "0.1.0-orderflow"
AUTHENTICATION_FAILED = "Authentication failed."

SCHEMAS = frozenset(
    {
        "mbo", "mbp-1", "mbp-10", "tbbo", "trades", "bbo-1s", "bbo-1m", "cbbo-1s", "cbbo-1m", "tcbbo", "cmbp-1",
        "ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "ohlcv-eod", "definition", "statistics", "status", "imbalance",
    }
)  # fmt: skip
"""Every schema name Databento defines (``databento_dbn.Schema``); which of them a gateway serves is its own list."""
SYMBOL_TYPES = frozenset({"raw_symbol", "instrument_id", "parent", "continuous"})
ENCODINGS = frozenset({"dbn", "csv", "json"})
COMPRESSIONS = frozenset({"none", "zstd"})
SLOW_READER_BEHAVIORS = frozenset({"warn", "skip"})
ALL_SYMBOLS = "ALL_SYMBOLS"

_AUTH_RESPONSE = re.compile(rf"[0-9a-f]{{64}}-[^\s|=]{{{BUCKET_ID_LENGTH}}}")
_SYMBOL = re.compile(r"[!-<>-~]+")  # printable ASCII without blank or "=" ("," and "|" are split on)


class ControlLineError(ValueError):
    """A control line the gateway refuses. ``code`` (``bad_line``, ``unknown_message``, ``missing_field``,
    ``unknown_field``, ``bad_value``) is for logs; the message says what is wrong in words, e.g.
    ``schema 'mbp-11' is not a Databento schema``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AuthenticationRequest:
    """``auth=…|dataset=XNAS.ITCH|encoding=dbn|ts_out=0|…``: the CRAM response and the session's options."""

    auth: str
    dataset: str
    encoding: str = "dbn"
    compression: str = "none"
    ts_out: bool = False
    heartbeat_interval_seconds: int | None = None
    slow_reader_behavior: str | None = None
    client: str = ""


@dataclass(frozen=True)
class SubscriptionRequest:
    """``schema=mbp-10|stype_in=raw_symbol|symbols=AMZN,AAPL|snapshot=0|id=0|is_last=1``. ``start`` is the replay
    start as sent (ns or ISO 8601), ``None`` for live; ``is_last=False`` says more symbols of it follow."""

    schema: str
    symbol_type: str
    symbols: tuple[str, ...]
    start: str | None = None
    snapshot: bool = False
    subscription_id: int | None = None
    is_last: bool = True


@dataclass(frozen=True)
class UnsubscribeRequest:
    """``unsubscribe|schema=trades|stype_in=raw_symbol|symbols=NQZ6`` (the raw API's; the Python client has none)."""

    schema: str
    symbol_type: str
    symbols: tuple[str, ...]
    is_last: bool = True


@dataclass(frozen=True)
class SessionStart:
    """``start_session=0``: start streaming (the value is ignored)."""


ClientRequest = AuthenticationRequest | SubscriptionRequest | UnsubscribeRequest | SessionStart


def new_challenge() -> str:
    """A fresh random CRAM challenge: 32 letters and digits, e.g. ``pB3xCQWHRsgqeXgV9DrkdGGuA1t0AzmN``."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(CHALLENGE_LENGTH))


def challenge_response(challenge: str, key: str) -> str:
    """What a client holding ``key`` answers to ``challenge``: ``sha256("{challenge}|{key}")`` hex, ``-``, bucket."""
    digest = hashlib.sha256(f"{challenge}|{key}".encode()).hexdigest()
    return f"{digest}-{key[-BUCKET_ID_LENGTH:]}"


def response_matches(challenge: str, key: str, response: str) -> bool:
    """True when ``response`` proves knowledge of ``key`` (compared in constant time)."""
    return hmac.compare_digest(challenge_response(challenge, key).encode(), response.encode())


def format_line(**fields: str | int) -> bytes:
    """One gateway line, e.g. ``format_line(success=1, session_id=7)`` → ``b"success=1|session_id=7\\n"``.
    A value holding ``|`` or a line break would change the framing: refused with ``ValueError``."""
    for name, value in fields.items():
        if re.search(r"[|\r\n]", str(value)):
            raise ValueError(f"field {name} holds a character the framing forbids: {value!r}")
    return ("|".join(f"{name}={value}" for name, value in fields.items()) + "\n").encode()


def greeting_lines(challenge: str) -> bytes:
    """The two lines a gateway sends on connect: its version, then the CRAM challenge."""
    return format_line(lsg_version=GATEWAY_VERSION) + format_line(cram=challenge)


def authentication_reply(session_id: int | None, error: str | None = None) -> bytes:
    """``success=1|session_id=7`` when ``error`` is None, else ``success=0|error=…``."""
    if error is not None:
        return format_line(success=0, error=error)
    return format_line(success=1, session_id=str(session_id))


def parse_client_line(line: bytes) -> ClientRequest:
    """One client line (with or without its ``\\n``) → the request it holds; :class:`ControlLineError` else."""
    fields = _fields(line)
    if "auth" in fields:
        return _authentication(fields)
    if "start_session" in fields:
        _only(fields, {"start_session"}, "a session start")
        return SessionStart()
    if "unsubscribe" in fields:
        _only(fields, {"unsubscribe", "schema", "stype_in", "symbols", "is_last"}, "an unsubscribe request")
        return UnsubscribeRequest(
            schema=_schema(fields),
            symbol_type=_symbol_type(fields),
            symbols=_symbols(fields),
            is_last=_flag(fields, "is_last", default=True),
        )
    if "schema" in fields:
        return _subscription(fields)
    raise ControlLineError("unknown_message", f"not a request the gateway knows (fields: {', '.join(fields)})")


def _fields(line: bytes) -> dict[str, str]:
    if len(line) > MAXIMUM_LINE_BYTES:
        raise ControlLineError("bad_line", f"line of {len(line):,} bytes, longer than {MAXIMUM_LINE_BYTES:,}")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ControlLineError("bad_line", "line is not ASCII text") from None
    text = text.removesuffix("\n")
    if not text:
        raise ControlLineError("bad_line", "empty line")
    if any(not character.isprintable() for character in text):
        raise ControlLineError("bad_line", "line holds control characters")
    fields: dict[str, str] = {}
    for position, token in enumerate(text.split("|")):
        name, equals, value = token.partition("=")
        if not equals and not (position == 0 and name == "unsubscribe"):
            raise ControlLineError("bad_line", f"field {token[:40]!r} is not name=value")
        if not name:
            raise ControlLineError("bad_line", f"field {token[:40]!r} has no name")
        if name in fields:
            raise ControlLineError("bad_line", f"field {name[:40]!r} given twice")
        fields[name] = value
    return fields


def _only(fields: dict[str, str], allowed: set[str], what: str) -> None:
    unknown = [name for name in fields if name not in allowed]
    if unknown:
        raise ControlLineError("unknown_field", f"unknown field {unknown[0][:40]!r} in {what}")


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if value is None or value == "":
        raise ControlLineError("missing_field", f"field {name} is missing")
    return value


def _choice(fields: dict[str, str], name: str, allowed: frozenset[str], what: str, default: str) -> str:
    value = fields.get(name, default)
    if value not in allowed:
        raise ControlLineError("bad_value", f"{name} {value[:40]!r} is not {what} ({', '.join(sorted(allowed))})")
    return value


def _flag(fields: dict[str, str], name: str, *, default: bool) -> bool:
    value = fields.get(name)
    if value is None:
        return default
    if value not in ("0", "1"):
        raise ControlLineError("bad_value", f"{name} must be 0 or 1, not {value[:40]!r}")
    return value == "1"


def _integer(fields: dict[str, str], name: str, maximum: int) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or int(value) > maximum:
        raise ControlLineError("bad_value", f"{name} must be a whole number from 0 to {maximum}, not {value[:40]!r}")
    return int(value)


def _schema(fields: dict[str, str]) -> str:
    value = _required(fields, "schema")
    if value not in SCHEMAS:
        raise ControlLineError("bad_value", f"schema {value[:40]!r} is not a Databento schema")
    return value


def _symbol_type(fields: dict[str, str]) -> str:
    _required(fields, "stype_in")
    return _choice(fields, "stype_in", SYMBOL_TYPES, "a symbology type", "")


def _symbols(fields: dict[str, str]) -> tuple[str, ...]:
    symbols = tuple(_required(fields, "symbols").split(","))
    for symbol in symbols:
        if not _SYMBOL.fullmatch(symbol):
            raise ControlLineError("bad_value", f"symbol {symbol[:40]!r} is empty or not printable ASCII")
    return symbols


def _subscription(fields: dict[str, str]) -> SubscriptionRequest:
    allowed = {"schema", "stype_in", "symbols", "start", "snapshot", "id", "is_last"}
    _only(fields, allowed, "a subscription request")
    start = fields.get("start")
    if start is not None and not start:
        raise ControlLineError("bad_value", "start is empty")
    return SubscriptionRequest(
        schema=_schema(fields),
        symbol_type=_symbol_type(fields),
        symbols=_symbols(fields),
        start=start,
        snapshot=_flag(fields, "snapshot", default=False),
        subscription_id=_integer(fields, "id", 2**32 - 1),
        is_last=_flag(fields, "is_last", default=True),
    )


def _authentication(fields: dict[str, str]) -> AuthenticationRequest:
    allowed = {
        "auth", "dataset", "encoding", "compression", "ts_out", "pretty_px", "pretty_ts", "heartbeat_interval_s",
        "slow_reader_behavior", "details", "client",
    }  # fmt: skip
    _only(fields, allowed, "an authentication request")
    auth = _required(fields, "auth")
    if not _AUTH_RESPONSE.fullmatch(auth):
        raise ControlLineError("bad_value", "auth is not a CRAM response (64 hex digits, '-', the 5-character bucket)")
    behavior = fields.get("slow_reader_behavior")
    return AuthenticationRequest(
        auth=auth,
        dataset=_required(fields, "dataset"),
        encoding=_choice(fields, "encoding", ENCODINGS, "an encoding", "dbn"),
        compression=_choice(fields, "compression", COMPRESSIONS, "a compression", "none"),
        ts_out=_flag(fields, "ts_out", default=False),
        heartbeat_interval_seconds=_integer(fields, "heartbeat_interval_s", 2**32 - 1),
        slow_reader_behavior=None
        if behavior is None
        else _choice(fields, "slow_reader_behavior", SLOW_READER_BEHAVIORS, "a slow-reader behavior", ""),
        client=fields.get("client", ""),
    )
