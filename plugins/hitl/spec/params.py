"""A spec's ``params``: a plain default, or a declared param Airflow's Trigger form explains and checks.

``prospect_url: ""`` is a param whose meaning lives in a YAML comment. Declared instead::

    params:
      prospect_url:
        default: ""
        description: The prospect's web site (empty: the demo's bakery site)
        type: string
        maxLength: 500

the Trigger form shows the description under the field and refuses a value outside the bounds
(``hitl.factory`` passes these to ``airflow.sdk.Param``, whose keywords are JSON Schema's). A mapping is a
declaration when it has ``default`` and only the keys below; any other mapping stays a plain (object) default.
"""

from __future__ import annotations

from typing import Any

TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
NUMBER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
LENGTH_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems")
KEYS = ("default", "description", "title", "type", "enum", "pattern", "format", *NUMBER_BOUNDS, *LENGTH_BOUNDS)


def is_declared(value: Any) -> bool:
    return isinstance(value, dict) and "default" in value and all(isinstance(k, str) for k in value)


def problems(value: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(key or None, message) for each mistake of a declared param."""
    found: list[tuple[str | None, str]] = []
    for key in value:
        if key not in KEYS:
            found.append((key, f"unknown key {key!r} in a param (it takes {', '.join(KEYS)})"))
    kind = value.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in TYPES:
            found.append(("type", f"type {k!r} is not one of {', '.join(TYPES)}"))
    for key in NUMBER_BOUNDS:
        if key in value and (isinstance(value[key], bool) or not isinstance(value[key], int | float)):
            found.append((key, f"{key} must be a number"))
    for key in LENGTH_BOUNDS:
        if key in value and (isinstance(value[key], bool) or not isinstance(value[key], int) or value[key] < 0):
            found.append((key, f"{key} must be a whole number, 0 or more"))
    for key in ("description", "title", "pattern", "format"):
        if key in value and not isinstance(value[key], str):
            found.append((key, f"{key} must be text"))
    if "enum" in value and not isinstance(value["enum"], list):
        found.append(("enum", "enum must be a list of the allowed values"))
    if found:
        return found
    schema = {k: v for k, v in value.items() if k != "default"}
    try:
        import jsonschema

        jsonschema.validate(value["default"], schema)
    except ImportError:  # pragma: no cover - Airflow brings jsonschema
        pass
    except jsonschema.SchemaError as exc:
        found.append((None, f"not a valid param: {exc.message}"))
    except jsonschema.ValidationError as exc:
        found.append(("default", f"the default does not fit the param: {exc.message}"))
    return found


def param_kwargs(value: Any) -> tuple[Any, dict[str, Any]]:
    """(default, keywords for airflow.sdk.Param) of a spec param."""
    if is_declared(value):
        return value["default"], {k: v for k, v in value.items() if k != "default"}
    return value, {}
