"""OrderFlowConfig: the one frozen, validated settings model (every setting, its default, bounds and meaning).

Precedence: environment > ``config/order_flow_config.json`` > defaults.
Environment names are ``ORDER_FLOW_<FIELD>`` (e.g.
``ORDER_FLOW_LARGE_ORDER_SIZE=20000``) except ``POLYGON_API_KEY``, ``DATABENTO_API_KEY``, ``REDIS_URL``
and compose's four Redis passwords (``REDIS_PASSWORD``, ``REDIS_<USER>_PASSWORD``).
Unknown keys in the file and unknown ``ORDER_FLOW_*`` variables are rejected, so a
typo never silently falls back to a default.

Load it with :func:`shared.config_loading.load_config`, which turns a bad value into
one :class:`~orderflow_client.errors.ConfigError` naming the variable, the value and
the allowed range::

    ORDER_FLOW_VOLUME_SPIKE_THRESHOLD=20 (environment) is invalid: allowed range 1.5 to 10.0

Why this file is over 400 lines: it is one pydantic class, and pydantic needs every
field and every cross-field rule (``red_burst_threshold >= volume_spike_threshold``,
the windows, the stale limits) in that class. About 510 of its lines are the 86
field declarations, each with its bounds and the one-sentence description that
``docs/configuration.md`` and ``config/config.schema.json`` are generated from;
splitting the fields over mixin classes would scatter one table over several files
for no gain. What is not the model — reading the sources, the origin of each value,
the one-line error messages, the values as ``orderflow config show`` prints them —
lives in ``shared/config_loading.py``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "ORDER_FLOW_"
DEFAULT_CONFIG_FILE = Path("config/order_flow_config.json")
CONFIG_FILE_VARIABLE = "ORDER_FLOW_CONFIG_FILE"
"""Names the config file; read by the CLI, not a setting of the model."""

SECRET_FIELDS = frozenset(
    {
        "polygon_api_key",
        "databento_api_key",
        "redis_url",
        "signing_key",
        "redis_password",
        "redis_ingest_password",
        "redis_detector_password",
        "redis_bot_password",
        "dashboard_token",
    }
)

ENVIRONMENT_ONLY_FIELDS = (
    "polygon_api_key",
    "databento_api_key",
    "redis_password",
    "redis_ingest_password",
    "redis_detector_password",
    "redis_bot_password",
)
"""Secrets set in the environment only: left out of the config file's JSON schema (the API key is refused in the
file)."""

SETTING_RELATIONS: tuple[tuple[str, str], ...] = (
    ("red_burst_threshold", "volume_spike_threshold"),
    ("baseline_window_seconds", "spike_window_seconds"),
    ("stale_failure_seconds", "stale_warning_seconds"),
)
"""Pairs ``(a, b)`` where ``a`` must be >= ``b`` (``OrderFlowConfig._check_relations`` enforces them; a symbol's
overrides keep the first)."""

SETTING_GROUPS: dict[str, str] = {
    "data_source": "Data source and the main thresholds",
    "redis_url": "Redis and the Polygon feed",
    "spike_window_seconds": "Detection rules",
    "threshold_mode": "Adaptive thresholds",
    "market_symbols": "Market context",
    "exit_horizon_seconds": "Exit recommendations' cost",
    "symbol_overrides": "Per-symbol and extended-hours thresholds",
    "stale_warning_seconds": "Data integrity",
    "consumer_group": "Detector service",
    "log_dir": "Logs and metrics",
    "dashboard_host": "Web dashboard",
    "signing_key": "Signing exit recommendations",
    "redis_password": "Redis users (compose)",
}
"""The settings in groups, keyed by each group's first field: a group runs, in the model's field order, up to the
next group's first field (the sections of the class below and of ``docs/configuration.md``)."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
"""Addresses of this machine only: the dashboard listens there without an access token."""

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("orderflow_config_file", default=None)


@contextlib.contextmanager
def reading_config_file(path: Path | None) -> Iterator[None]:
    """Within this block, ``OrderFlowConfig()`` reads ``path`` as its JSON file source (``None``: no file)."""
    token = _config_file.set(path)
    try:
        yield
    finally:
        _config_file.reset(token)


class SymbolOverride(BaseModel):
    """Thresholds of one symbol that differ from the global ones (unset: the global value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    large_order_size: int | None = Field(None, ge=100)
    volume_spike_threshold: float | None = Field(None, ge=1.5, le=10.0)
    red_burst_threshold: float | None = Field(None, ge=1.5, le=20.0)
    min_baseline_volume: int | None = Field(None, ge=0)


class OrderFlowConfig(BaseSettings):
    """Every setting of orderflow. Units are in the field names."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # --- data source and the main thresholds ----------------------------------
    data_source: Literal["polygon", "databento"] = Field(
        "polygon",
        description="Where live ingest reads market data: polygon (Polygon/Massive: NBBO quotes and trades, sides "
        "inferred) or databento (the book to ten levels or order by order, and trades with their aggressor side).",
    )
    monitoring_mode: Literal["positions_only"] = Field(
        "positions_only", description="Monitor only symbols with open positions."
    )
    polygon_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("POLYGON_API_KEY", "polygon_api_key"),
        description="Polygon/Massive API key. Secret: environment only, never logged.",
    )
    large_order_size: int = Field(10_000, gt=1000, description="absolute mode: shares that make an order large.")
    volume_spike_threshold: float = Field(
        3.0, ge=1.5, le=10.0, description="Spike-window volume / baseline average that flags a burst."
    )
    red_burst_threshold: float = Field(
        4.0, ge=1.5, le=20.0, description="Volume ratio of a critical red burst; triggers an exit."
    )
    alert_window_seconds: int = Field(
        120, ge=30, le=300, description="Window in which 3 large-seller alerts trigger an exit."
    )

    # --- Redis and the Polygon feed -------------------------------------------
    redis_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
        description="redis://, rediss:// or unix:// URL, with an optional user and password (masked everywhere); unset "
        "runs on the embedded in-process bus.",
    )
    key_prefix: str = Field("orderflow", pattern=r"^[A-Za-z0-9_.\-]+$", description="Prefix of every Redis key.")
    stream_max_length: int = Field(
        250_000,
        ge=1_000,
        description="Approximate cap (MAXLEN ~) of each per-symbol stream, in entries (an entry holds 1 to 64 "
        "events: more when ingest is busy).",
    )
    databento_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DATABENTO_API_KEY", "databento_api_key"),
        description="Databento API key (live source databento). Secret: environment only, never logged.",
    )
    databento_dataset: str = Field(
        "XNAS.ITCH",
        pattern=r"^[A-Z0-9]+\.[A-Z0-9]+$",
        description="Databento dataset of the live source: XNAS.ITCH (Nasdaq's full book) by default; EQUS.MINI "
        "carries the top of the book only.",
    )
    databento_schema: Literal["mbp-10", "mbo"] = Field(
        "mbp-10",
        description="Databento live schema, trades included: mbp-10 (the book's ten best levels a side) or mbo "
        "(every order, the book rebuilt from them).",
    )
    databento_gateway: str = Field(
        "",
        pattern=r"^$|^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$",
        description="host[:port] of the Databento Live gateway; empty: the client's own for the dataset (a local "
        "gateway such as orderflow simulate-databento for tests).",
    )
    databento_historical_url: str = Field(
        "https://hist.databento.com",
        pattern=r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?/?$",
        description="Base URL of Databento's historical API, from which a live gap's trades are backfilled "
        "(timeseries.get_range); a local stand-in for tests.",
    )
    databento_historical_requests_per_minute: float = Field(
        600.0, gt=0, le=6_000, description="Client-side cap on requests to Databento's historical API."
    )
    polygon_client: Literal["massive", "polygon-api-client"] = Field(
        "massive",
        description="The Python client ingest and calibrate speak to Polygon/Massive through: massive (Massive's "
        "maintained client) or polygon-api-client (Polygon's last release, 1.16).",
    )
    polygon_feed: str = Field(
        "socket.massive.com",
        description="WebSocket host[:port] of the Polygon/Massive feed (socket.polygon.io still serves too).",
    )
    polygon_secure: bool = Field(True, description="Use wss:// (false only for a local simulator).")
    polygon_rest_url: str = Field(
        "https://api.massive.com",
        description="Base URL of the Polygon/Massive REST API (backfill, conditions; https://api.polygon.io still "
        "serves too).",
    )
    polygon_rest_requests_per_minute: float = Field(
        300.0, gt=0, le=100_000, description="Client-side cap on REST calls (the plan's rate limit)."
    )
    watchdog_seconds: float = Field(
        30.0, ge=2.0, le=3600.0, description="No frame for this long while the market is open: reconnect and report."
    )
    ingest_lease_seconds: float = Field(
        5.0,
        ge=0.0,
        le=300.0,
        description="Several ingests (one vendor connection or key each) share the open positions' symbols through "
        "a lease each in Redis: a dead ingest's symbols are taken over after this long, with a handover gap and its "
        "trades backfilled. Each ingest needs its own name (--name; the host name by default). 0: no leases.",
    )
    ingest_queue_frames: int = Field(
        50_000, ge=100, le=5_000_000, description="Frames that may wait between socket and publisher before drops."
    )
    ingest_queue_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        le=8 * 1024**3,
        description="Bytes of frames that may wait between socket and publisher before drops (with the frame cap: "
        "whichever is reached first). Memory held is a few times this once parsed.",
    )
    quote_size_unit: Literal["shares", "round_lots"] = Field(
        "shares", description="Unit of Polygon quote sizes (Polygon's documentation disagrees with itself)."
    )
    round_lot_size: int = Field(100, ge=1, description="Shares per round lot when quote_size_unit=round_lots.")
    side_method: Literal["lee_ready", "emo", "quote", "tick"] = Field(
        "lee_ready", description="Trade-side inference for sources without a side."
    )

    # --- detection rules -------------------------------------------------------
    spike_window_seconds: int = Field(60, ge=5, le=600, description="Red-burst spike window.")
    baseline_window_seconds: int = Field(
        300, ge=30, le=3600, description="Baseline before the spike window (5 minutes)."
    )
    sell_ratio_threshold: float = Field(
        0.6, ge=0.5, le=1.0, description="Minimum sell share of classified volume in a red burst."
    )
    min_baseline_volume: int = Field(
        20_000, ge=0, description="Minimum baseline volume (shares) before a red burst can fire."
    )
    sweep_window_ms: int = Field(
        5, ge=0, le=1000, description="Prints within this many ms at non-increasing prices form one sweep."
    )
    book_persistence_seconds: float = Field(
        2.0, ge=0.0, le=60.0, description="A large resting offer must persist this long (anti-flicker)."
    )
    book_return_seconds: float = Field(
        60.0,
        ge=0.0,
        le=3600.0,
        description="A reported large offer that leaves its price and returns within this time is the same seller "
        "refilling: not reported again (0: every return is reported).",
    )
    two_sided_ratio: float = Field(
        0.8, gt=0.0, le=1.0, description="A bid of at least this fraction of the large offer marks it two-sided."
    )

    # --- adaptive thresholds ----------------------------------------------------
    threshold_mode: Literal["adaptive", "absolute"] = Field(
        "adaptive",
        description="adaptive: thresholds from each symbol's own profile (history, else its first minutes); "
        "absolute: large_order_size and the trailing baseline for every symbol.",
    )
    large_order_quantile: float = Field(
        0.999,
        ge=0.9,
        le=0.99999,
        description="adaptive: quantile of the symbol's aggressive sell order sizes that makes an order large.",
    )
    offer_size_quantile: float = Field(
        0.999,
        ge=0.9,
        le=0.99999,
        description="adaptive: quantile of the symbol's time-weighted displayed ask sizes that makes an offer large.",
    )
    adaptive_min_large_order_size: int = Field(
        1_000, ge=100, description="adaptive: a large order has at least this many shares."
    )
    adaptive_min_large_order_notional: float = Field(
        100_000.0,
        ge=0.0,
        description="adaptive: a large order is worth at least this many dollars (at the profile's VWAP).",
    )
    burst_ratio_quantile: float = Field(
        0.995,
        ge=0.9,
        le=0.99999,
        description="adaptive: a red burst's volume ratio must also reach this quantile of the symbol's own "
        "per-second ratios.",
    )
    profile_days: int = Field(
        5, ge=1, le=60, description="adaptive: regular sessions a profile is built from (the latest ones)."
    )
    calibration_confidence: float = Field(
        0.95,
        ge=0.0,
        le=0.999,
        description="adaptive, a symbol with no profile: thresholds fitted from the session so far are the upper "
        "bound of their quantile at this confidence (few observations: higher); 0 takes the estimate.",
    )
    calibration_minutes: float = Field(
        15.0,
        ge=1.0,
        le=390.0,
        description="adaptive, no profile: regular-session minutes before the status says calibrated.",
    )

    first_day_thresholds: Literal["prior", "absolute"] = Field(
        "prior",
        description="adaptive, a symbol with no profile: its first day starts from a prior fitted across stocks "
        "(by price and typical volume) until the session calibrates it; absolute starts from large_order_size.",
    )
    profile_max_age_days: int = Field(
        5,
        ge=1,
        le=60,
        description="adaptive, live: a stored profile whose newest session is older than this many trading days is "
        "stale, and the calibration worker rebuilds it from REST history.",
    )
    calibration_fetch_seconds: float = Field(
        180.0,
        ge=1.0,
        le=3600.0,
        description="adaptive, live: the calibration worker stops fetching one symbol's REST history after this long "
        "and builds its profile from what it has.",
    )
    calibration_fetch_requests: int = Field(
        300,
        ge=1,
        le=100_000,
        description="adaptive, live: at most this many REST requests for one symbol's calibration.",
    )
    profile_refresh_minutes_before_open: float = Field(
        30.0,
        ge=0.0,
        le=600.0,
        description="adaptive, live: profiles of the held symbols are rebuilt this many minutes before each regular "
        "open (0: not refreshed before the open).",
    )

    # --- market context ---------------------------------------------------------
    market_symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        ("SPY",),
        description="Index symbols ingested beside the positions and run through the same rules, for each alert's "
        "market context and the market-wide sell-off signal (each costs one more subscription; empty: off). "
        "Comma-separated in the environment, e.g. SPY,QQQ.",
    )
    sector_etfs: dict[str, str] = Field(
        default_factory=dict,
        description='Optional: a symbol\'s sector ETF, e.g. {"AAPL": "XLK"}; the ETF is ingested too and is that '
        "symbol's index for its context (the first market symbol otherwise).",
    )
    context_window_seconds: int = Field(
        300, ge=30, le=3600, description="The window over which an alert's stock and index returns are compared."
    )
    context_fall_bps: float = Field(
        10.0,
        gt=0.0,
        le=500.0,
        description="An index falling at least this much over the context window is a falling market; a stock "
        "falling this much beyond what its beta explains makes a falling market's alert mixed.",
    )
    context_stale_seconds: float = Field(
        60.0,
        gt=0.0,
        le=3600.0,
        description="An index whose last event is older than this at an alert gives no context (label unknown).",
    )
    market_selloff_sigmas: float = Field(
        3.0,
        gt=0.0,
        le=20.0,
        description="The index falling this many of its own standard deviations (over the context window, from its "
        "profile) raises a market_selloff alert.",
    )
    market_selloff_min_bps: float = Field(
        30.0,
        gt=0.0,
        le=1000.0,
        description="… and at least this many basis points (also the fall that counts with no profile).",
    )

    # --- exit recommendations' cost ------------------------------------------------
    exit_horizon_seconds: int = Field(
        300, ge=30, le=3600, description="The horizon of an exit recommendation's expected fall."
    )
    exit_expected_fall_sigmas: float = Field(
        0.5,
        ge=0.0,
        le=10.0,
        description="An exit recommendation expects a fall of this many of the stock's standard deviations over the "
        "exit horizon (the backtest measures the ratio; docs/results.md).",
    )
    exit_cost_multiple: float = Field(
        2.0,
        ge=0.0,
        le=20.0,
        description="The default policy says exit only when the expected fall is at least this multiple of the cost "
        "of acting now (half the quoted spread); otherwise watch. 0: always exit. The default is the backtest's "
        "walk-forward choice (docs/results.md).",
    )

    # --- per-symbol and extended-hours thresholds --------------------------------
    symbol_overrides: dict[str, SymbolOverride] = Field(
        default_factory=dict,
        description='Per-symbol thresholds, e.g. {"BAC": {"large_order_size": 200000}} (JSON in the environment).',
    )
    extended_hours_large_order_size: int | None = Field(
        None, gt=1000, description="large_order_size in pre-market and after-hours (unset: the same)."
    )
    extended_hours_volume_spike_threshold: float | None = Field(
        None, ge=1.5, le=10.0, description="volume_spike_threshold in pre-market and after-hours (unset: the same)."
    )

    # --- data integrity ---------------------------------------------------------
    stale_warning_seconds: float = Field(
        10.0, gt=0.0, le=300.0, description="An event older than this at arrival is a validation error."
    )
    stale_failure_seconds: float = Field(
        30.0, gt=0.0, le=600.0, description="An event older than this at arrival fails the feed."
    )
    resume_after_seconds: float = Field(
        30.0, ge=1.0, le=600.0, description="Fresh valid data needed before a halted symbol resumes."
    )
    chronology_tolerance_ms: int = Field(
        500, ge=0, le=60_000, description="How far back in time a print may step before it is out of order."
    )
    gap_silence_seconds: float = Field(
        30.0, ge=1.0, le=3600.0, description="Event-time silence on a symbol that counts as a feed gap (windows reset)."
    )

    # --- detector service -----------------------------------------------------
    consumer_group: str = Field(
        "detector", pattern=r"^[A-Za-z0-9_.\-]+$", description="Redis consumer group of the detectors."
    )
    reclaim_idle_seconds: float = Field(
        30.0, ge=1.0, le=3600.0, description="Pending entries idle this long are reclaimed from a stalled detector."
    )
    detector_lease_seconds: float = Field(
        5.0,
        ge=0.0,
        le=300.0,
        description="Detectors share the monitored symbols through a lease each in Redis, renewed every second: a "
        "dead detector's symbols are taken over by the others after this long. Each detector needs its own "
        "consumer name (--consumer; the host name by default). 0: no leases (one detector, or disjoint --symbol "
        "lists).",
    )
    max_deliveries: int = Field(
        5,
        ge=1,
        le=100,
        description="An entry delivered this many times without being acknowledged (its reader crashed on it each "
        "time) is moved to its stream's dead-letter stream instead of being handled again.",
    )

    # --- logs and metrics -----------------------------------------------------
    log_dir: Path = Field(Path("logs/order_flow"), description="JSONL logs, one file per UTC day.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Console and file log level.")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus metrics port (0 disables).")
    metrics_host: str = Field(
        "127.0.0.1",
        pattern=r"^[0-9A-Za-z.:\-]+$",
        description="Address the metrics endpoint listens on: this machine only by default; 0.0.0.0 where a "
        "scraper elsewhere (another container) must reach it.",
    )

    # --- web dashboard (``orderflow dashboard``) ---------------------------------
    dashboard_host: str = Field(
        "127.0.0.1",
        pattern=r"^[0-9A-Za-z.:\-]+$",
        description="Address the web dashboard listens on: this machine only by default; any other address "
        "requires ORDER_FLOW_DASHBOARD_TOKEN.",
    )
    dashboard_port: int = Field(8765, ge=0, le=65535, description="Port of the web dashboard (0: a free port).")
    dashboard_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Access token (16+ characters) of the web dashboard, required when it listens beyond this "
        "machine: open it with ?token=… once (then kept in a cookie) or send Authorization: Bearer. Secret: never "
        "logged; set it in the environment.",
    )

    # --- signing exit recommendations -------------------------------------------
    signing_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="Secret (16+ characters) the detector signs exit recommendations with and the bot's client "
        "verifies them with (HMAC-SHA256). Environment only, never logged. Unset: recommendations go unsigned and the "
        "client accepts anything on the channel, and says so at start.",
    )
    signing_key_id: str = Field(
        "k1",
        pattern=r"^[A-Za-z0-9_.\-]{1,32}$",
        description="Name of the signing key, carried in each signature (for rotating keys).",
    )
    signature_max_age_seconds: float = Field(
        600.0,
        ge=1.0,
        le=86_400.0,
        description="The client refuses a signed recommendation signed longer ago than this (a replayed old one).",
    )

    # --- Redis users (compose's ACL file, ``orderflow config redis-users``) -----
    redis_password: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_PASSWORD", "redis_password"),
        description="Password of Redis's administrative user (default) in compose: operators, health checks, "
        "calibrate. Secret: environment only.",
    )
    redis_ingest_password: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_INGEST_PASSWORD", "redis_ingest_password"),
        description="Password of the Redis user ingest: writes the market streams and statuses, reads positions.",
    )
    redis_detector_password: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_DETECTOR_PASSWORD", "redis_detector_password"),
        description="Password of the Redis user detector: reads the market streams, writes alerts, exits, statuses.",
    )
    redis_bot_password: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_BOT_PASSWORD", "redis_bot_password"),
        description="Password of the Redis user bot: reads exits and statuses, writes positions; cannot write exits.",
    )

    @field_validator(
        "polygon_api_key",
        "redis_url",
        "signing_key",
        "redis_password",
        "redis_ingest_password",
        "redis_detector_password",
        "redis_bot_password",
        "dashboard_token",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """``POLYGON_API_KEY=`` (as .env.example ships) is no key, not an empty one."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        """A Redis URL, e.g. ``redis://localhost:6379/0``; anything else is refused here, before any connection."""
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (e.g. redis://localhost:6379/0)")
        return value

    @field_validator("market_symbols", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``ORDER_FLOW_MARKET_SYMBOLS=SPY,QQQ`` (or a JSON list in the file); upper case, blanks dropped."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(str(symbol).strip().upper() for symbol in value if str(symbol).strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        """``ORDER_FLOW_LOG_LEVEL=debug`` is ``DEBUG``."""
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_relations(self) -> OrderFlowConfig:
        """The rules between settings (``SETTING_RELATIONS``): burst >= spike (globally and per symbol),
        baseline >= spike window, stale failure >= stale warning."""
        if self.red_burst_threshold < self.volume_spike_threshold:
            raise ValueError(
                f"red_burst_threshold ({self.red_burst_threshold}) must be >= "
                f"volume_spike_threshold ({self.volume_spike_threshold})"
            )
        if self.baseline_window_seconds < self.spike_window_seconds:
            raise ValueError(
                f"baseline_window_seconds ({self.baseline_window_seconds}) must be >= "
                f"spike_window_seconds ({self.spike_window_seconds})"
            )
        for symbol, override in self.symbol_overrides.items():
            spike = override.volume_spike_threshold or self.volume_spike_threshold
            burst = override.red_burst_threshold or self.red_burst_threshold
            if burst < spike:
                raise ValueError(
                    f"symbol_overrides[{symbol}]: red_burst_threshold ({burst}) must be >= "
                    f"volume_spike_threshold ({spike})"
                )
        if self.stale_failure_seconds < self.stale_warning_seconds:
            raise ValueError(
                f"stale_failure_seconds ({self.stale_failure_seconds}) must be >= "
                f"stale_warning_seconds ({self.stale_warning_seconds})"
            )
        if self.dashboard_host not in LOOPBACK_HOSTS and self.dashboard_token is None:
            raise ValueError(
                f"dashboard_host {self.dashboard_host} is beyond this machine: set ORDER_FLOW_DASHBOARD_TOKEN "
                "(16+ characters), or listen on 127.0.0.1"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword overrides, then the environment, then the JSON file (no ``.env`` file, no secrets folder)."""
        return (init_settings, env_settings, JsonConfigSettingsSource(settings_cls, json_file=_config_file.get()))

    # --- helpers ----------------------------------------------------------------
    def secret_values(self) -> list[str]:
        """The secret strings that must never reach logs, errors or metrics."""
        secrets = []
        if self.polygon_api_key is not None and self.polygon_api_key.get_secret_value():
            secrets.append(self.polygon_api_key.get_secret_value())
        for secret in (
            self.databento_api_key,
            self.signing_key,
            self.redis_password,
            self.redis_ingest_password,
            self.redis_detector_password,
            self.redis_bot_password,
            self.dashboard_token,
        ):
            if secret is not None:
                secrets.append(secret.get_secret_value())
        if self.redis_url is not None:
            password = _url_password(self.redis_url.get_secret_value())
            if password:
                secrets.append(password)
        return secrets


def environment_name(field: str) -> str:
    """The environment variable that sets ``field``, e.g. ``large_order_size`` → ``ORDER_FLOW_LARGE_ORDER_SIZE``."""
    if field in ("polygon_api_key", "databento_api_key"):
        return field.upper()
    if field == "redis_url":
        return "REDIS_URL"
    if field.startswith("redis_") and field.endswith("password"):
        return field.upper()
    return ENV_PREFIX + field.upper()


def _url_password(url: str) -> str | None:
    """The password in a URL's ``user:password@`` (or a lone ``password@``), else ``None``."""
    _scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return None
    credentials = rest.rpartition("@")[0]
    user, has_password, password = credentials.partition(":")
    return password if has_password else user or None
