"""The configuration reference, ``docs/configuration.md``, generated from the settings model.

Every setting of ``shared.config.OrderFlowConfig`` with its environment variable, type, default, allowed values and
description, in the model's groups (``SETTING_GROUPS``), then the per-symbol overrides and the rules between
settings. Types, defaults and bounds come from the model's JSON schema — the same schema ``orderflow config schema``
writes to ``config/config.schema.json`` — so the reference, the schema and the validation cannot disagree::

    .venv/bin/python scripts/config_reference.py           # print it
    .venv/bin/python scripts/config_reference.py --write   # rewrite docs/configuration.md
    .venv/bin/python scripts/config_reference.py --check   # exit 1 when docs/configuration.md is stale

``tests/unit/test_config_reference.py`` fails when the committed file is not what this writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.config import (
    DEFAULT_CONFIG_FILE,
    ENVIRONMENT_ONLY_FIELDS,
    SETTING_GROUPS,
    SETTING_RELATIONS,
    OrderFlowConfig,
    environment_name,
)

REPO = Path(__file__).resolve().parents[1]
REFERENCE_FILE = REPO / "docs" / "configuration.md"
REGENERATE = ".venv/bin/python scripts/config_reference.py --write"

_BINARY_UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))

_INTRODUCTION = f"""\
# Configuration reference

<!-- Generated from the settings model (shared/config.py) by scripts/config_reference.py: do not edit by hand.
     Regenerate with `{REGENERATE}`. -->

Every setting of orderflow, from the one settings model every command loads. Where a value comes from, first
match wins:

1. the **environment** — `ORDER_FLOW_<SETTING>` (e.g. `ORDER_FLOW_LARGE_ORDER_SIZE=20000`), except
   `POLYGON_API_KEY`, `REDIS_URL` and compose's four Redis passwords, which have the names shown below;
2. the **config file** `{DEFAULT_CONFIG_FILE}` (a JSON object; `--config-file` or `ORDER_FLOW_CONFIG_FILE` names
   another), whose keys are the settings' names: the variable without `ORDER_FLOW_`, in lower case
   (`{{"large_order_size": 20000}}`); `config/config.schema.json` is its JSON schema, for editors;
3. the **default** below.

Unknown keys in the file and unknown `ORDER_FLOW_*` variables are errors, so a typo never falls back to a
default silently. Secrets marked *environment only* are left out of the file's schema, and the API key is
refused in the file. A bad value stops every command with exit status 2 before it touches Redis or the network,
with one message naming the variable, the value, where it came from and the allowed range:

```
$ ORDER_FLOW_VOLUME_SPIKE_THRESHOLD=20 orderflow config show
configuration error: ORDER_FLOW_VOLUME_SPIKE_THRESHOLD=20 (environment) is invalid: allowed range 1.5 to 10.0
```

`orderflow config show` prints the effective configuration, secrets masked, with the origin of each value
(`--json` for machines); `orderflow config schema --write` regenerates `config/config.schema.json`.

Ranges are inclusive unless marked `>` or `<`; "(unset)" means the setting is off or falls back as its
description says. What the detection settings do, with the reasons: [how it works](how-it-works.md#detection).
"""


def grouped_settings() -> list[tuple[str, list[str]]]:
    """The model's fields in their groups, in field order: ``[(title, [field, …]), …]``."""
    groups: list[tuple[str, list[str]]] = []
    for field in OrderFlowConfig.model_fields:
        if field in SETTING_GROUPS:
            groups.append((SETTING_GROUPS[field], []))
        if not groups:
            raise ValueError(f"the first setting, {field}, starts no group in SETTING_GROUPS")
        groups[-1][1].append(field)
    return groups


def render() -> str:
    """The whole of ``docs/configuration.md``."""
    schema = OrderFlowConfig.model_json_schema(by_alias=False)
    parts = [_INTRODUCTION]
    for title, fields in grouped_settings():
        parts.append(f"## {title}\n")
        parts.append("| variable | type | default | allowed | meaning |\n|---|---|---|---|---|")
        parts.extend(_setting_row(field, schema["properties"][field]) for field in fields)
        parts.append("")
    parts.append(_overrides_section(schema["$defs"]["SymbolOverride"]))
    parts.append(_relations_section())
    return "\n".join(parts)


def _setting_row(field: str, property_schema: dict[str, Any]) -> str:
    """One table row: variable, type, default, allowed values, description."""
    value_schema, optional = _unwrap_optional(property_schema)
    meaning = property_schema.get("description", "")
    if field in ENVIRONMENT_ONLY_FIELDS and "environment only" not in meaning.lower():
        meaning += " *Environment only.*"
    cells = (
        f"`{environment_name(field)}`",
        _type_name(value_schema),
        _default(field, OrderFlowConfig.model_fields[field].get_default(call_default_factory=True), optional),
        _allowed(field, value_schema),
        meaning,
    )
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _unwrap_optional(property_schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``anyOf: [X, null]`` → ``(X, True)``; anything else → ``(itself, False)``."""
    choices = property_schema.get("anyOf")
    if choices is None:
        return property_schema, False
    values = [choice for choice in choices if choice.get("type") != "null"]
    if len(values) != 1:
        raise ValueError(f"cannot describe a setting of several types: {property_schema}")
    return values[0], True


def _type_name(value_schema: dict[str, Any]) -> str:
    """``integer``, ``number``, ``true/false``, ``string``, ``secret``, ``path``, ``list`` or ``JSON object``."""
    if value_schema.get("format") == "password":
        return "secret"
    if value_schema.get("format") == "path":
        return "path"
    kind = value_schema.get("type")
    if kind == "boolean":
        return "true/false"
    if kind == "object":
        return "JSON object"
    if kind == "array":
        return "list"
    if kind in ("integer", "number", "string"):
        return str(kind)
    raise ValueError(f"no name for the type of {value_schema}")


def _default(field: str, default: Any, optional: bool) -> str:
    """The default as one would write it, e.g. `` `250000` ``, `` `true` ``, ``(unset)``; sizes in bytes also in MiB."""
    if default is None and optional:
        return "(unset)"
    if isinstance(default, Path):
        default = str(default)
    shown = f"`{json.dumps(default) if not isinstance(default, str) else default}`"
    if field.endswith("_bytes") and isinstance(default, int):
        shown += f" ({_binary_size(default)})"
    return shown


def _allowed(field: str, value_schema: dict[str, Any]) -> str:
    """The values the model accepts, e.g. ``1.5 – 10.0``, ``> 1000``, `` `shares`, `round_lots` ``."""
    rules = []
    if value_schema.get("type") == "boolean":
        rules.append("`true`, `false`")
    if value_schema.get("type") == "object":
        items = value_schema.get("additionalProperties", {})
        rules.append(
            "symbol → a symbol" if items.get("type") == "string" else "symbol → [its overrides](#per-symbol-overrides)"
        )
    if value_schema.get("type") == "array":
        rules.append("symbols, comma-separated")
    if "const" in value_schema:
        rules.append(f"`{value_schema['const']}`")
    if "enum" in value_schema:
        rules.append(", ".join(f"`{choice}`" for choice in value_schema["enum"]))
    rules.extend(_bounds(field, value_schema))
    if "minLength" in value_schema:
        rules.append(f"at least {value_schema['minLength']} characters")
    if "pattern" in value_schema:
        rules.append(f"matches `{value_schema['pattern']}`")
    rules.extend(f"≥ `{environment_name(other)}`" for first, other in SETTING_RELATIONS if first == field)
    rules.extend(f"≤ `{environment_name(first)}`" for first, other in SETTING_RELATIONS if other == field)
    return "; ".join(rules) if rules else "any"


def _bounds(field: str, value_schema: dict[str, Any]) -> list[str]:
    """The numeric bounds in words: ``["1.5 – 10.0"]``, ``["> 0", "≤ 1.0"]``, ``["≥ 1000"]`` or ``[]``."""

    def shown(bound: Any) -> str:
        if field.endswith("_bytes") and isinstance(bound, int):
            return f"{bound} ({_binary_size(bound)})"
        return json.dumps(bound)

    low, high = value_schema.get("minimum"), value_schema.get("maximum")
    if low is not None and high is not None:
        return [f"{shown(low)} – {shown(high)}"]
    bounds = []
    if low is not None:
        bounds.append(f"≥ {shown(low)}")
    if "exclusiveMinimum" in value_schema:
        bounds.append(f"> {shown(value_schema['exclusiveMinimum'])}")
    if high is not None:
        bounds.append(f"≤ {shown(high)}")
    if "exclusiveMaximum" in value_schema:
        bounds.append(f"< {shown(value_schema['exclusiveMaximum'])}")
    return bounds


def _binary_size(size: int) -> str:
    """``67108864`` → ``64 MiB``: the largest binary unit that divides it."""
    for unit, factor in _BINARY_UNITS:
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def _overrides_section(override_schema: dict[str, Any]) -> str:
    """The keys one symbol's entry of ``ORDER_FLOW_SYMBOL_OVERRIDES`` may hold."""
    lines = [
        "## Per-symbol overrides\n",
        f"`{environment_name('symbol_overrides')}` (JSON in the environment, an object in the file) maps a symbol to",
        "the thresholds that differ from the global ones; a key left out keeps the global value. A symbol's",
        "`large_order_size` wins over the adaptive threshold too.",
        "",
        "```",
        f'{environment_name("symbol_overrides")}=\'{{"BAC": {{"large_order_size": 200000}}}}\'',
        "```",
        "",
        "| key | type | allowed | the global setting it overrides |",
        "|---|---|---|---|",
    ]
    for key, property_schema in override_schema["properties"].items():
        value_schema, _optional = _unwrap_optional(property_schema)
        lines.append(
            f"| `{key}` | {_type_name(value_schema)} | {'; '.join(_bounds(key, value_schema)) or 'any'} "
            f"| `{environment_name(key)}` |"
        )
    lines.append("")
    return "\n".join(lines)


def _relations_section() -> str:
    """The rules between settings that no single setting's bounds express."""
    lines = ["## Rules between settings\n", "Checked after every value is read, whatever its source:", ""]
    for first, other in SETTING_RELATIONS:
        lines.append(f"- `{environment_name(first)}` ≥ `{environment_name(other)}`")
    first, other = SETTING_RELATIONS[0]
    lines.append(f"- in each symbol's overrides too: its `{first}` ≥ its `{other}` (a key left out: the global value)")
    lines.append("")
    return "\n".join(lines)


def main(arguments: list[str] | None = None) -> int:
    """Print, write or check the reference; 0 when done (or up to date), 1 when ``--check`` finds it stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite the reference file")
    action.add_argument("--check", action="store_true", help="exit 1 when the reference file is stale")
    parser.add_argument("--file", type=Path, default=REFERENCE_FILE, help="the reference file (docs/configuration.md)")
    options = parser.parse_args(arguments)
    document = render()
    if options.check:
        current = options.file.read_text(encoding="utf-8") if options.file.exists() else ""
        if current != document:
            sys.stderr.write(f"{options.file} is stale: run `{REGENERATE}`\n")
            return 1
        sys.stdout.write(f"{options.file} is up to date\n")
        return 0
    if options.write:
        options.file.parent.mkdir(parents=True, exist_ok=True)
        options.file.write_text(document, encoding="utf-8")
        sys.stdout.write(f"wrote {options.file}\n")
        return 0
    sys.stdout.write(document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
