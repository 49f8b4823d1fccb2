"""Loading the settings: the sources, where each value came from, one-line errors, values as ``config show`` shows.

:func:`load_config` reads ``config/order_flow_config.json`` (or the file given) and the environment into the model
of ``shared/config.py`` and turns any problem into one :class:`ConfigError` naming the variable, the value, its
origin and the allowed range, secrets masked::

    ORDER_FLOW_VOLUME_SPIKE_THRESHOLD=20 (environment) is invalid: allowed range 1.5 to 10.0
    unknown setting(s) in the environment: ORDER_FLOW_LARGE_ORDER_SIZ
    config file config/order_flow_config.json holds the API key; secrets belong in the environment (POLYGON_API_KEY)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import ValidationError
from pydantic_settings import EnvSettingsSource, SettingsError

from orderflow_client.errors import ConfigError
from orderflow_client.logs import mask_url
from shared.config import (
    CONFIG_FILE_VARIABLE,
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    SECRET_FIELDS,
    OrderFlowConfig,
    environment_name,
    reading_config_file,
)

_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def load_config(config_file: Path | None = None, **overrides: Any) -> OrderFlowConfig:
    """Load and validate; raise :class:`ConfigError` with one clear message.

    ``config_file`` defaults to ``config/order_flow_config.json`` (missing is
    fine). ``overrides`` beat every other source (tests, CLI flags).
    """
    path = config_file if config_file is not None else DEFAULT_CONFIG_FILE
    file_values = _read_config_file(path)
    _reject_unknown_environment()
    try:
        with reading_config_file(path if path.exists() else None):
            return OrderFlowConfig(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error, file_values, path)) from None
    except SettingsError as error:  # e.g. a JSON setting that is not JSON
        raise ConfigError(_unparsable(error)) from None


def value_origins(config_file: Path | None = None) -> dict[str, str]:
    """Where each setting's value comes from: ``environment``, ``file <path>`` or ``default``."""
    path = config_file if config_file is not None else DEFAULT_CONFIG_FILE
    from_environment = _environment_values()
    from_file = _read_config_file(path)
    return {name: _origin(name, from_environment, from_file, path) for name in OrderFlowConfig.model_fields}


def display_value(config: OrderFlowConfig, field: str) -> str:
    """A value as ``config show`` prints it: secrets masked (``****** (set)``, a Redis URL without its password)."""
    value = getattr(config, field)
    if field in ("polygon_api_key", "databento_api_key"):
        return "(unset)" if value is None else "****** (set)"
    if field == "redis_url":
        return "(unset: embedded bus)" if value is None else mask_url(value.get_secret_value())
    if field == "symbol_overrides":
        return json.dumps({symbol: override.model_dump(exclude_none=True) for symbol, override in value.items()})
    return str(value)


def _unparsable(error: SettingsError) -> str:
    """One line for a value pydantic-settings could not even parse (JSON settings)."""
    match = re.search(r'field "([a-z_]+)"', str(error))
    field = match.group(1) if match else "a setting"
    name = environment_name(field) if match else field
    return f'{name} (environment) is not valid JSON; e.g. {name}=\'{{"BAC": {{"large_order_size": 200000}}}}\''


def _environment_values() -> dict[str, Any]:
    """Settings found in the environment, keyed by field name."""
    try:
        values = EnvSettingsSource(OrderFlowConfig)()
    except SettingsError as error:
        raise ConfigError(_unparsable(error)) from None
    return {key.lower(): value for key, value in values.items()}


def _origin(field: str, from_environment: dict[str, Any], from_file: dict[str, Any], path: Path) -> str:
    """``environment``, ``file <path>`` or ``default``: the first source that sets ``field``."""
    if field in from_environment:
        return "environment"
    if field in from_file:
        return f"file {path}"
    return "default"


def _read_config_file(path: Path) -> dict[str, Any]:
    """The file's settings (a missing file: none); refuses unreadable JSON, a non-object and the API key."""
    if not path.exists():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"config file {path} is not readable JSON: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    for name, variable in (("polygon_api_key", "POLYGON_API_KEY"), ("databento_api_key", "DATABENTO_API_KEY")):
        if name in values or variable in values:
            raise ConfigError(f"config file {path} holds an API key; secrets belong in the environment ({variable})")
    return values


def _reject_unknown_environment() -> None:
    """An ``ORDER_FLOW_*`` variable that names no setting is a typo: refuse it rather than fall back to a default."""
    known = {environment_name(name) for name in OrderFlowConfig.model_fields} | {CONFIG_FILE_VARIABLE}
    unknown = sorted(name for name in os.environ if name.startswith(ENV_PREFIX) and name not in known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in the environment: {', '.join(unknown)}")


def _describe(error: ValidationError, file_values: dict[str, Any], path: Path) -> str:
    """Every problem of ``error`` as ``NAME=value (origin) is invalid: reason``, joined by ``; ``."""
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
    """The field's bounds in words: ``allowed range 1.5 to 10.0``, ``must be > 1000``, or ``""`` when unbounded."""
    info = OrderFlowConfig.model_fields[field]
    low: object = None
    high: object = None
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
