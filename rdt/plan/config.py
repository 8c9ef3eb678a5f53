"""The workflow configuration as the plan reads it: the schema (``workflow/schemas/config.schema.yaml``), the
conversion of ``--config`` strings to the schema's types, its defaults filled in, validation with errors that name
the key, and the recursive merge of a run's overrides over the base sections.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from rdt.errors import UserError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
#: the sections of settings that a run may override
SECTIONS = ("demos", "data", "train", "eval")


@lru_cache(maxsize=1)
def load_schema(path: str = str(SCHEMA_PATH)) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _types(schema: dict) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _from_string(text: str, types: list[str]) -> Any:
    """A --config string as the schema's scalar type (the first that parses), else unchanged."""
    low = text.strip().lower()
    if "null" in types and low in ("null", "none", "~", ""):
        return None
    if "boolean" in types and low in ("true", "false"):
        return low == "true"
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    return text


def coerce(value: Any, schema: dict, root: dict) -> Any:
    """``value`` with strings converted to the numbers, booleans and nulls the schema expects.

    ``snakemake --config 'train={max_steps: 90}'`` parses the mapping with YAML's BaseLoader, so every scalar in
    it is a string; the schema says which should be numbers. Strings the schema wants as strings stay strings."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[1:]
        target = root
        for part in ref:
            target = target[part]
        schema = target
    types = _types(schema)
    if isinstance(value, str) and not ("string" in types and len(types) == 1):
        if "string" in types:  # e.g. [string, "null"]: only the null spelling converts
            return None if value.strip().lower() in ("null", "none", "~") and "null" in types else value
        return _from_string(value, types)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for k, v in value.items():
            sub = props.get(k) if k in props else (extra if isinstance(extra, dict) else None)
            out[k] = coerce(v, sub, root) if sub is not None else v
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce(v, schema["items"], root) for v in value]
    return value


def _validator(schema: dict):
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, sub):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if isinstance(prop, dict) and "default" in prop and name not in instance:
                    instance[name] = copy.deepcopy(prop["default"])
        yield from check_properties(validator, properties, instance, sub)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})(schema)


def validate(config: dict, where: str = "config", schema: dict | None = None) -> dict:
    """A copy of ``config`` with command-line strings converted, the schema's defaults filled in, and validated;
    a violation is a UserError naming the key, the value and the expected form."""
    schema = schema or load_schema()
    if not isinstance(config, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(config).__name__}")
    out = coerce(copy.deepcopy(config), schema, schema)
    errors = sorted(_validator(schema).iter_errors(out), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for e in errors[:10]:
            key = ".".join(map(str, e.absolute_path)) or "(top level)"
            lines.append(f"  {key}: {e.message}")
        hint = (
            "\nOn the command line give numbers unquoted, e.g. snakemake --config 'train={max_steps: 90}' "
            "or 'eval={exec_horizons: [8, 16]}'; every key is described in config/README.md."
        )
        raise UserError(f"{where} does not fit workflow/schemas/config.schema.yaml:\n" + "\n".join(lines) + hint)
    return out


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` applied recursively (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
