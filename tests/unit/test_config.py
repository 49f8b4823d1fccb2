"""OrderFlowConfig: defaults, precedence, validation messages, secrets, schema."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from orderflow_client.errors import ConfigError
from shared.config import OrderFlowConfig
from shared.config_loading import display_value, load_config, value_origins
from shared.config_schema import SCHEMA_FILE, schema_document
from tests.support.paths import REPO


def test_defaults_are_the_specs(clean_environment):
    config = load_config()
    assert config.large_order_size == 10_000
    assert config.volume_spike_threshold == 3.0
    assert config.red_burst_threshold == 4.0
    assert config.alert_window_seconds == 120
    assert config.data_source == "polygon"
    assert config.monitoring_mode == "positions_only"
    assert config.polygon_api_key is None
    assert config.redis_url is None


def test_environment_beats_file_beats_default(clean_environment, monkeypatch):
    path = clean_environment / "config.json"
    path.write_text(json.dumps({"large_order_size": 20_000, "alert_window_seconds": 90}))
    monkeypatch.setenv("ORDER_FLOW_LARGE_ORDER_SIZE", "30000")
    config = load_config(path)
    assert config.large_order_size == 30_000  # environment
    assert config.alert_window_seconds == 90  # file
    assert config.volume_spike_threshold == 3.0  # default
    origins = value_origins(path)
    assert origins["large_order_size"] == "environment"
    assert origins["alert_window_seconds"] == f"file {path}"
    assert origins["volume_spike_threshold"] == "default"


def test_default_file_location_is_config_order_flow_config_json(clean_environment):
    (clean_environment / "config").mkdir()
    (clean_environment / "config" / "order_flow_config.json").write_text('{"red_burst_threshold": 5.5}')
    assert load_config().red_burst_threshold == 5.5


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "ORDER_FLOW_VOLUME_SPIKE_THRESHOLD",
            "20",
            "ORDER_FLOW_VOLUME_SPIKE_THRESHOLD=20 (environment) is invalid: allowed range 1.5 to 10.0",
        ),
        ("ORDER_FLOW_VOLUME_SPIKE_THRESHOLD", "1.4", "allowed range 1.5 to 10.0"),
        (
            "ORDER_FLOW_LARGE_ORDER_SIZE",
            "1000",
            "ORDER_FLOW_LARGE_ORDER_SIZE=1000 (environment) is invalid: must be > 1000",
        ),
        ("ORDER_FLOW_LARGE_ORDER_SIZE", "lots", "valid integer"),
        ("ORDER_FLOW_ALERT_WINDOW_SECONDS", "29", "allowed range 30 to 300"),
        ("ORDER_FLOW_ALERT_WINDOW_SECONDS", "301", "allowed range 30 to 300"),
        ("ORDER_FLOW_RED_BURST_THRESHOLD", "2.0", "red_burst_threshold (2.0) must be >= volume_spike_threshold (3.0)"),
        ("ORDER_FLOW_QUOTE_SIZE_UNIT", "lots", "'shares' or 'round_lots'"),
        ("ORDER_FLOW_DATA_SOURCE", "robinhood", "'polygon'"),
    ],
)
def test_bad_values_name_variable_value_and_range(clean_environment, monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_config()
    assert expected in str(raised.value)


def test_boundaries_are_accepted(clean_environment, monkeypatch):
    monkeypatch.setenv("ORDER_FLOW_LARGE_ORDER_SIZE", "1001")
    monkeypatch.setenv("ORDER_FLOW_VOLUME_SPIKE_THRESHOLD", "10.0")
    monkeypatch.setenv("ORDER_FLOW_RED_BURST_THRESHOLD", "10.0")
    monkeypatch.setenv("ORDER_FLOW_ALERT_WINDOW_SECONDS", "30")
    config = load_config()
    assert (config.large_order_size, config.volume_spike_threshold, config.alert_window_seconds) == (1001, 10.0, 30)


def test_bad_file_value_names_the_file(clean_environment):
    path = clean_environment / "c.json"
    path.write_text('{"alert_window_seconds": 5}')
    with pytest.raises(
        ConfigError, match=rf"alert_window_seconds=5 \(file {path}\) is invalid: allowed range 30 to 300"
    ):
        load_config(path)


def test_unknown_keys_are_rejected(clean_environment, monkeypatch):
    path = clean_environment / "c.json"
    path.write_text('{"large_order_sise": 20000}')
    with pytest.raises(ConfigError, match="large_order_sise"):
        load_config(path)
    monkeypatch.setenv("ORDER_FLOW_LARGE_ORDER_SISE", "20000")
    with pytest.raises(ConfigError, match="ORDER_FLOW_LARGE_ORDER_SISE"):
        load_config()


@pytest.mark.parametrize(
    ("name", "variable"), [("polygon_api_key", "POLYGON_API_KEY"), ("databento_api_key", "DATABENTO_API_KEY")]
)
def test_api_key_in_the_file_is_refused(clean_environment, name, variable):
    path = clean_environment / "c.json"
    path.write_text(f'{{"{name}": "abc123"}}')
    with pytest.raises(ConfigError, match=f"secrets belong in the environment \\({variable}\\)") as raised:
        load_config(path)
    assert "abc123" not in str(raised.value)


def test_config_is_frozen(clean_environment):
    config = load_config()
    with pytest.raises(ValidationError):  # pydantic's frozen_instance error
        config.large_order_size = 5  # type: ignore[misc]


def test_secrets_are_masked_for_display(clean_environment, monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", "pk_live_SECRET123")
    monkeypatch.setenv("DATABENTO_API_KEY", "db-DATABENTOSECRET9")
    monkeypatch.setenv("REDIS_URL", "redis://bot:redispw99@127.0.0.1:6379/2")
    config = load_config()
    assert config.polygon_api_key.get_secret_value() == "pk_live_SECRET123"
    assert display_value(config, "polygon_api_key") == "****** (set)"
    assert display_value(config, "databento_api_key") == "****** (set)"
    assert display_value(config, "redis_url") == "redis://bot:***@127.0.0.1:6379/2"
    assert set(config.secret_values()) == {"pk_live_SECRET123", "db-DATABENTOSECRET9", "redispw99"}
    assert "SECRET123" not in repr(config) and "redispw99" not in repr(config) and "DATABENTOSECRET" not in repr(config)


def test_committed_schema_is_current():
    committed = (REPO / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == schema_document(), "config/config.schema.json is stale: run `orderflow config schema --write`"
    schema = json.loads(committed)
    assert schema["additionalProperties"] is False
    assert "polygon_api_key" not in schema["properties"]
    assert schema["properties"]["volume_spike_threshold"]["maximum"] == 10.0
    environment_only = {
        "polygon_api_key",
        "databento_api_key",
        "redis_password",
        "redis_ingest_password",
        "redis_detector_password",
        "redis_bot_password",
    }
    assert set(schema["properties"]) == set(OrderFlowConfig.model_fields) - environment_only


def test_configuration_reference_documents_every_setting():
    from shared.config import environment_name

    reference = (REPO / "docs" / "configuration.md").read_text()
    for name in OrderFlowConfig.model_fields:
        assert f"| `{environment_name(name)}` |" in reference, f"docs/configuration.md lacks {environment_name(name)}"


def test_symbol_overrides_are_validated_and_shown(clean_environment, monkeypatch):
    monkeypatch.setenv(
        "ORDER_FLOW_SYMBOL_OVERRIDES", '{"BAC": {"large_order_size": 200000, "volume_spike_threshold": 3.5}}'
    )
    config = load_config()
    assert config.symbol_overrides["BAC"].large_order_size == 200_000
    assert (
        display_value(config, "symbol_overrides")
        == '{"BAC": {"large_order_size": 200000, "volume_spike_threshold": 3.5}}'
    )
    monkeypatch.setenv("ORDER_FLOW_SYMBOL_OVERRIDES", '{"BAC": {"large_order_size": 5}}')
    with pytest.raises(
        ConfigError, match=r"ORDER_FLOW_SYMBOL_OVERRIDES\[BAC\]\.large_order_size=5 \(environment\) is invalid"
    ):
        load_config()
    monkeypatch.setenv(
        "ORDER_FLOW_SYMBOL_OVERRIDES", '{"BAC": {"volume_spike_threshold": 5.0}}'
    )  # above the global 4.0 burst
    with pytest.raises(
        ConfigError,
        match=r"symbol_overrides\[BAC\]: red_burst_threshold \(4.0\) must be >= volume_spike_threshold \(5.0\)",
    ):
        load_config()
    monkeypatch.setenv("ORDER_FLOW_SYMBOL_OVERRIDES", '{"BAC": {"large_order_sise": 5}}')
    with pytest.raises(ConfigError, match="large_order_sise"):
        load_config()
