"""Structured logging: JSONL files per UTC day plus readable console output.

Every line in ``logs/order_flow/YYYY-MM-DD.jsonl`` is one compact JSON object
with a UTC ISO timestamp, so these queries work as written::

    {"event":"order_flow.large_seller_detected","symbol":"AAPL","order_size":12000,
     "latency_ms":1.8,"service":"detector","level":"warning",
     "timestamp":"2026-11-25T14:31:07.412345Z"}

    grep '"event":"order_flow.exit_signal_triggered"' logs/order_flow/*.jsonl | wc -l
    jq -r '.latency_ms' logs/order_flow/*.jsonl

Secrets (the API key, the Redis password) are masked in every event, every
formatted exception and every foreign library's log record before anything
is written: :func:`mask_secrets` runs last before rendering.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import structlog

MASK = "***"

# The event names the documented log queries count (docs/operations.md).
LARGE_SELLER_DETECTED = "order_flow.large_seller_detected"
RED_BURST_DETECTED = "order_flow.red_burst_detected"
EXIT_SIGNAL_TRIGGERED = "order_flow.exit_signal_triggered"
DATA_VALIDATION_ERROR = "order_flow.data_validation_error"
ALERT_WINDOW_EXPIRED = "order_flow.alert_window_expired"
LARGE_ORDER_PULLED = "order_flow.large_order_pulled"

_secrets: set[str] = set()
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s/]+)@")
_API_KEY_PARAMETER = re.compile(r"(?P<name>apiKey|api_key|apikey)=(?P<value>[^&\s\"']+)", re.IGNORECASE)


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in any later log output."""
    if value and len(value) >= 3:
        _secrets.add(value)


def registered_secrets() -> frozenset[str]:
    """The values :func:`register_secret` was given (a child process registers them again)."""
    return frozenset(_secrets)


def mask_url(url: str) -> str:
    """``redis://user:pw@host:6379/0`` → ``redis://user:***@host:6379/0``."""
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, has_password, _ = credentials.partition(":")
    if not has_password:
        # redis://password@host is also a password (redis-py reads it so).
        return f"{scheme}://***@{host}"
    return f"{scheme}://{user}:***@{host}"


def mask_text(text: str) -> str:
    """Replace registered secrets, URL passwords and ``apiKey=`` values by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _API_KEY_PARAMETER.sub(lambda m: f"{m['name']}={MASK}", text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: _mask_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mask_value(item) for item in value)
    if isinstance(value, BaseException):
        return mask_text(repr(value))
    return value


def mask_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: mask every string value of the event."""
    return {key: _mask_value(value) for key, value in event_dict.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return repr(value)


_json_encoder = msgspec.json.Encoder(enc_hook=_json_default)


def _serialize(event_dict: dict[str, Any], **_kwargs: Any) -> str:
    return _json_encoder.encode(event_dict).decode()


class DailyJsonlFileHandler(logging.Handler):
    """Appends formatted records to ``<directory>/<UTC date>.jsonl``, switching
    files when the UTC day of the record changes."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self._day: str | None = None
        self._stream: Any = None
        self.directory.mkdir(parents=True, exist_ok=True)  # OSError (e.g. PermissionError) for an unusable folder
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise PermissionError(f"log folder {self.directory} is not writable by this user (uid {os.getuid()})")

    def path_for(self, day: str) -> Path:
        return self.directory / f"{day}.jsonl"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            day = datetime.fromtimestamp(record.created, tz=UTC).strftime("%Y-%m-%d")
            line = self.format(record)
            if day != self._day:
                if self._stream is not None:
                    self._stream.close()
                self._stream = self.path_for(day).open("a", encoding="utf-8")
                self._day = day
            self._stream.write(line + "\n")
            self._stream.flush()
        except Exception:  # logging must never take the service down
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
                self._day = None
        finally:
            self.release()
        super().close()


_NEW_YORK = ZoneInfo("America/New_York")
_CONSOLE_SKIP = frozenset({"event", "level", "timestamp", "service", "evidence", "alert_ids", "reasoning", "exception"})
CONSOLE_WIDTH = 180


def human_line(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    """One short console line for people: New York time (labelled), level, what happened.

    ``15:59:51 ET warning  large seller DEMO 12,000 @ 49.62 (tape, warning; threshold 10,000 absolute) 30.3 ms``
    The JSONL files keep every field; the console keeps what a person reads at a glance.
    """
    stamp = event.get("timestamp", "")
    try:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).astimezone(_NEW_YORK).strftime("%H:%M:%S ET")
    except ValueError:
        moment = str(stamp)
    name = str(event.get("event", "")).removeprefix("order_flow.")
    level = str(event.get("level", "")).ljust(8)
    given_evidence = event.get("evidence")
    evidence: dict[str, Any] = given_evidence if isinstance(given_evidence, dict) else {}
    if name == "large_seller_detected":
        text = (
            f"large seller {event.get('symbol')} {event.get('order_size', 0):,} @ {event.get('price_level')} "
            f"({event.get('source')}, {event.get('severity')}; threshold {evidence.get('threshold', '?'):,} "
            f"{evidence.get('threshold_source', '')}) {event.get('latency_ms', '')} ms"
        )
    elif name == "red_burst_detected":
        text = (
            f"red burst {event.get('symbol')} volume {event.get('volume_ratio')}x, "
            f"sells {float(event.get('sell_ratio', 0)):.0%} ({event.get('severity')}) {event.get('latency_ms', '')} ms"
        )
    elif name == "exit_signal_triggered":
        trigger = event.get("trigger", event.get("decision", ""))
        text = f"EXIT {event.get('symbol')} {trigger}: {event.get('reasoning', '')}"
    else:
        details = " ".join(f"{key}={value}" for key, value in event.items() if key not in _CONSOLE_SKIP)
        text = f"{name} {details}".strip()
    line = f"{moment} {level} {text}"
    if len(line) > CONSOLE_WIDTH:
        line = line[: CONSOLE_WIDTH - 1] + "…"
    if event.get("exception"):
        line += "\n" + str(event["exception"])
    return line


def configure_logging(
    *,
    service: str,
    log_dir: Path | None,
    level: str = "INFO",
    secrets: Iterable[str] = (),
    console: bool = True,
    console_stream: Any = None,
) -> None:
    """Set up structlog for one process. Call once at start, before any I/O.

    ``log_dir=None`` writes no files (some CLI commands); ``console=False``
    keeps the terminal clean (the demo prints its own view).
    """
    for secret in secrets:
        register_secret(secret)

    pre_chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    render_chain_start: list[Any] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info,
        mask_secrets,
    ]

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)

    if log_dir is not None:
        file_handler = DailyJsonlFileHandler(Path(log_dir))
        file_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[*render_chain_start, structlog.processors.JSONRenderer(serializer=_serialize)],
                foreign_pre_chain=pre_chain,
            )
        )
        root.addHandler(file_handler)
    if console:
        stream = console_stream or sys.stderr
        console_handler = logging.StreamHandler(stream)
        console_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[*render_chain_start, human_line],
                foreign_pre_chain=pre_chain,
            )
        )
        root.addHandler(console_handler)

    if not root.handlers:
        root.addHandler(logging.NullHandler())  # not Python's last-resort stderr handler
    structlog.configure(
        processors=[*pre_chain, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)


GUEST_LOGGERS = ("shared", "services", "orderflow_client")
"""The stdlib loggers orderflow's code logs under (its package names): a host routes them like any other."""


def guest_logging(
    log_dir: Path | None = Path("logs/order_flow"), *, level: str = "INFO", secrets: Iterable[str] = ()
) -> None:
    """orderflow as a guest in someone else's process (a bot): its JSONL file handler is added to orderflow's own
    loggers (:data:`GUEST_LOGGERS`) and nothing else. The host's root handlers stay as they were and keep their
    lines, and orderflow's records still propagate to them (the decisions reach the bot's own log files too)."""
    for secret in secrets:
        register_secret(secret)
    pre_chain: list[Any] = [structlog.stdlib.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)]
    handlers: list[logging.Handler] = []
    if log_dir is not None:
        handler = DailyJsonlFileHandler(Path(log_dir))
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    mask_secrets,
                    structlog.processors.JSONRenderer(serializer=_serialize),
                ],
                foreign_pre_chain=pre_chain,
            )
        )
        handlers.append(handler)
    for name in GUEST_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for guest_handler in handlers:
            logger.addHandler(guest_handler)
    structlog.configure(  # records carry the event dict: the JSONL handler renders it, a host's formatter prints it
        processors=[*pre_chain, mask_secrets, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; events are dotted names (``order_flow.<what happened>``)."""
    return structlog.get_logger(name)
