"""docs/configuration.md is what scripts/config_reference.py writes from the settings model, and says it all."""

from __future__ import annotations

import pytest

from orderflow_client.errors import ConfigError
from scripts import config_reference
from shared.config import SETTING_GROUPS, SETTING_RELATIONS, OrderFlowConfig, environment_name
from shared.config_loading import load_config


def test_committed_reference_is_what_the_generator_writes():
    committed = (
        config_reference.REFERENCE_FILE.read_text(encoding="utf-8") if config_reference.REFERENCE_FILE.exists() else ""
    )
    assert committed == config_reference.render(), (
        f"docs/configuration.md is stale (the settings model changed): run `{config_reference.REGENERATE}`"
    )


def test_every_setting_has_one_row_in_one_group():
    document = config_reference.render()
    grouped = [field for _title, fields in config_reference.grouped_settings() for field in fields]
    assert grouped == list(OrderFlowConfig.model_fields)
    rows = [line for line in document.splitlines() if line.startswith("| `")]
    for field in OrderFlowConfig.model_fields:
        assert sum(row.startswith(f"| `{environment_name(field)}` |") for row in rows) == 1, environment_name(field)


def test_groups_start_at_settings_and_the_first_setting_starts_one():
    assert set(SETTING_GROUPS) <= set(OrderFlowConfig.model_fields)
    assert next(iter(OrderFlowConfig.model_fields)) in SETTING_GROUPS
    assert len(set(SETTING_GROUPS.values())) == len(SETTING_GROUPS)


# each relation broken with both values inside their own bounds
_BROKEN = {
    ("red_burst_threshold", "volume_spike_threshold"): {"red_burst_threshold": 2.0, "volume_spike_threshold": 3.0},
    ("baseline_window_seconds", "spike_window_seconds"): {"baseline_window_seconds": 60, "spike_window_seconds": 120},
    ("stale_failure_seconds", "stale_warning_seconds"): {"stale_failure_seconds": 5.0, "stale_warning_seconds": 10.0},
}


def test_the_documented_rules_between_settings_are_the_enforced_ones(clean_environment):
    assert set(_BROKEN) == set(SETTING_RELATIONS), "give each relation of SETTING_RELATIONS a case here"
    for (first, other), values in _BROKEN.items():
        with pytest.raises(ConfigError, match=f"{first} .* must be >= {other}"):
            load_config(**values)
        load_config(**{first: values[other], other: values[other]})  # equal is allowed


def test_check_reports_a_stale_file_and_write_fixes_it(tmp_path, capsys):
    reference = tmp_path / "configuration.md"
    reference.write_text("# old\n")
    assert config_reference.main(["--check", "--file", str(reference)]) == 1
    assert "scripts/config_reference.py --write" in capsys.readouterr().err
    assert config_reference.main(["--write", "--file", str(reference)]) == 0
    assert config_reference.main(["--check", "--file", str(reference)]) == 0
