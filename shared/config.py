"""OrderFlowConfig: the one frozen, validated settings model.

Precedence: environment > ``config/order_flow_config.json`` > defaults.
Environment names are ``ORDER_FLOW_<FIELD>`` (e.g.
``ORDER_FLOW_LARGE_ORDER_SIZE=20000``) except the two the spec fixes:
``POLYGON_API_KEY`` and ``REDIS_URL``. Unknown keys in the file and unknown
``ORDER_FLOW_*`` variables are rejected, so a typo never silently falls back
to a default.

Load it with :func:`load_config`; a bad value raises :class:`ConfigError`
whose message names the variable, the value and the allowed range::

    ORDER_FLOW_VOLUME_SPIKE_THRESHOLD=20 (environment) is invalid: allowed range 1.5 to 10.0
"""

from __future__ import annotations

import contextvars
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from orderflow_client.errors import ConfigError
from orderflow_client.logs import mask_url

ENV_PREFIX = "ORDER_FLOW_"
DEFAULT_CONFIG_FILE = Path("config/order_flow_config.json")
CONFIG_FILE_VARIABLE = "ORDER_FLOW_CONFIG_FILE"
"""Names the config file; read by the CLI, not a setting of the model."""

SECRET_FIELDS = frozenset(
    {
        "polygon_api_key",
        "redis_url",
        "signing_key",
        "redis_password",
        "redis_ingest_password",
        "redis_detector_password",
        "redis_bot_password",
    }
)

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("orderflow_config_file", default=None)


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

    # --- the spec's variables -------------------------------------------------
    data_source: Literal["polygon"] = Field("polygon", description="Live market-data provider (Polygon/Massive).")
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

    # --- infrastructure --------------------------------------------------------
    redis_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
        description="redis:// or rediss:// URL; unset runs on the embedded in-process bus.",
    )
    key_prefix: str = Field("orderflow", pattern=r"^[A-Za-z0-9_.\-]+$", description="Prefix of every Redis key.")
    stream_max_length: int = Field(
        250_000, ge=1_000, description="Approximate cap (MAXLEN ~) of each per-symbol stream, in entries."
    )
    polygon_feed: str = Field("socket.polygon.io", description="WebSocket host[:port] of the Polygon feed.")
    polygon_secure: bool = Field(True, description="Use wss:// (false only for a local simulator).")
    polygon_rest_url: str = Field(
        "https://api.polygon.io", description="Base URL of the Polygon REST API (backfill, conditions)."
    )
    polygon_rest_requests_per_minute: float = Field(
        300.0, gt=0, le=100_000, description="Client-side cap on REST calls (the plan's rate limit)."
    )
    watchdog_seconds: float = Field(
        30.0, ge=2.0, le=3600.0, description="No frame for this long while the market is open: reconnect and report."
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

    # --- detection ---------------------------------------------
    spike_window_seconds: int = Field(60, ge=5, le=600, description="Red-burst spike window.")
    baseline_window_seconds: int = Field(
        300, ge=30, le=3600, description="Baseline before the spike window (the spec's 5 minutes)."
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
        description="adaptive: a red burst's volume ratio must also reach this quantile of the symbol's own per-second ratios.",
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

    # --- integrity ---------------------------------------------
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
    max_deliveries: int = Field(
        5,
        ge=1,
        le=100,
        description="An entry delivered this many times without being acknowledged (its reader crashed on it each time) "
        "is moved to its stream's dead-letter stream instead of being handled again.",
    )

    # --- observability --------------------------------------------------------
    log_dir: Path = Field(Path("logs/order_flow"), description="JSONL logs, one file per UTC day.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Console and file log level.")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus metrics port (0 disables).")
    metrics_host: str = Field(
        "127.0.0.1",
        pattern=r"^[0-9A-Za-z.:\-]+$",
        description="Address the metrics endpoint listens on: this machine only by default; 0.0.0.0 where a "
        "scraper elsewhere (another container) must reach it.",
    )

    signing_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="Secret (16+ characters) the detector signs exit recommendations with and the bot's client verifies "
        "them with (HMAC-SHA256). Environment only, never logged. Unset: recommendations go unsigned and the "
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

    # --- Redis users (compose's ACL file, ``orderflow redis-users``) ----------------
    redis_password: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_PASSWORD", "redis_password"),
        description="Password of Redis's administrative user (default) in compose: operators, health checks, calibrate. "
        "Secret: environment only.",
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
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (e.g. redis://localhost:6379/0)")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_relations(self) -> OrderFlowConfig:
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
                    f"symbol_overrides[{symbol}]: red_burst_threshold ({burst}) must be >= volume_spike_threshold ({spike})"
                )
        if self.stale_failure_seconds < self.stale_warning_seconds:
            raise ValueError(
                f"stale_failure_seconds ({self.stale_failure_seconds}) must be >= "
                f"stale_warning_seconds ({self.stale_warning_seconds})"
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
        return (init_settings, env_settings, JsonConfigSettingsSource(settings_cls, json_file=_config_file.get()))

    # --- helpers ----------------------------------------------------------------
    def secret_values(self) -> list[str]:
        """The secret strings that must never reach logs, errors or metrics."""
        secrets = []
        if self.polygon_api_key is not None and self.polygon_api_key.get_secret_value():
            secrets.append(self.polygon_api_key.get_secret_value())
        for secret in (
            self.signing_key,
            self.redis_password,
            self.redis_ingest_password,
            self.redis_detector_password,
            self.redis_bot_password,
        ):
            if secret is not None:
                secrets.append(secret.get_secret_value())
        if self.redis_url is not None:
            password = _url_password(self.redis_url.get_secret_value())
            if password:
                secrets.append(password)
        return secrets


def environment_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    if field == "polygon_api_key":
        return "POLYGON_API_KEY"
    if field == "redis_url":
        return "REDIS_URL"
    if field.startswith("redis_") and field.endswith("password"):
        return field.upper()
    return ENV_PREFIX + field.upper()


def load_config(config_file: Path | None = None, **overrides: Any) -> OrderFlowConfig:
    """Load and validate; raise :class:`ConfigError` with one clear message.

    ``config_file`` defaults to ``config/order_flow_config.json`` (missing is
    fine). ``overrides`` beat every other source (tests, CLI flags).
    """
    path = config_file if config_file is not None else DEFAULT_CONFIG_FILE
    file_values = _read_config_file(path)
    _reject_unknown_environment()
    token = _config_file.set(path if path.exists() else None)
    try:
        return OrderFlowConfig(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error, file_values, path)) from None
    except SettingsError as error:  # e.g. a JSON setting that is not JSON
        raise ConfigError(_unparsable(error)) from None
    finally:
        _config_file.reset(token)


def _unparsable(error: SettingsError) -> str:
    """One line for a value pydantic-settings could not even parse (JSON settings)."""
    match = re.search(r'field "([a-z_]+)"', str(error))
    field = match.group(1) if match else "a setting"
    name = environment_name(field) if match else field
    return f'{name} (environment) is not valid JSON; e.g. {name}=\'{{"BAC": {{"large_order_size": 200000}}}}\''


def value_origins(config_file: Path | None = None) -> dict[str, str]:
    """Where each setting's value comes from: ``environment``, ``file …`` or ``default``."""
    path = config_file if config_file is not None else DEFAULT_CONFIG_FILE
    from_environment = _environment_values()
    from_file = _read_config_file(path)
    return {name: _origin(name, from_environment, from_file, path) for name in OrderFlowConfig.model_fields}


def _environment_values() -> dict[str, Any]:
    """Settings found in the environment, keyed by field name."""
    try:
        values = EnvSettingsSource(OrderFlowConfig)()
    except SettingsError as error:
        raise ConfigError(_unparsable(error)) from None
    return {key.lower(): value for key, value in values.items()}


def _origin(field: str, from_environment: dict[str, Any], from_file: dict[str, Any], path: Path) -> str:
    if field in from_environment:
        return "environment"
    if field in from_file:
        return f"file {path}"
    return "default"


def display_value(config: OrderFlowConfig, field: str) -> str:
    """A value as ``config show`` prints it: secrets masked."""
    value = getattr(config, field)
    if field == "polygon_api_key":
        return "(unset)" if value is None else "****** (set)"
    if field == "redis_url":
        return "(unset: embedded bus)" if value is None else mask_url(value.get_secret_value())
    if field == "symbol_overrides":
        return json.dumps({symbol: override.model_dump(exclude_none=True) for symbol, override in value.items()})
    return str(value)


def _url_password(url: str) -> str | None:
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return None
    credentials = rest.rpartition("@")[0]
    user, has_password, password = credentials.partition(":")
    return password if has_password else user or None


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"config file {path} is not readable JSON: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    if "polygon_api_key" in values or "POLYGON_API_KEY" in values:
        raise ConfigError(f"config file {path} holds the API key; secrets belong in the environment (POLYGON_API_KEY)")
    return values


def _reject_unknown_environment() -> None:
    known = {environment_name(name) for name in OrderFlowConfig.model_fields} | {CONFIG_FILE_VARIABLE}
    unknown = sorted(name for name in os.environ if name.startswith(ENV_PREFIX) and name not in known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in the environment: {', '.join(unknown)}")


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def _describe(error: ValidationError, file_values: dict[str, Any], path: Path) -> str:
    from_environment = _environment_values()
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]).lower() if problem["loc"] else ""
        if field in OrderFlowConfig.model_fields:
            origin = _origin(field, from_environment, file_values, path)
            name = environment_name(field) if origin == "environment" else field
            nested = problem["loc"][1:]
            if nested:  # e.g. symbol_overrides → [BAC].large_order_size
                name += f"[{nested[0]}]" + "".join(f".{part}" for part in nested[1:])
            shown = "******" if field in SECRET_FIELDS else problem.get("input")
            allowed = _allowed(field)
            reason = problem["msg"].lower()
            if allowed:
                reason = allowed if problem["type"] in _RANGE_ERRORS else f"{reason}; {allowed}"
            lines.append(f"{name}={shown} ({origin}) is invalid: {reason}")
        elif problem["type"] == "extra_forbidden":
            lines.append(f"unknown setting {field!r} in {path}")
        else:
            lines.append(problem["msg"].removeprefix("Value error, "))
    return "; ".join(lines)


def _allowed(field: str) -> str:
    info = OrderFlowConfig.model_fields[field]
    low = high = None
    low_text = high_text = ""
    for rule in info.metadata:
        if isinstance(rule, Ge):
            low, low_text = rule.ge, ""
        elif isinstance(rule, Gt):
            low, low_text = rule.gt, " (exclusive)"
        elif isinstance(rule, Le):
            high, high_text = rule.le, ""
        elif isinstance(rule, Lt):
            high, high_text = rule.lt, " (exclusive)"
    if low is not None and high is not None:
        return f"allowed range {low}{low_text} to {high}{high_text}"
    if low is not None:
        return f"must be {'>' if low_text else '>='} {low}"
    if high is not None:
        return f"must be {'<' if high_text else '<='} {high}"
    return ""
