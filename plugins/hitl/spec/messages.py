"""Spec errors in words: a key path as ``steps[0].next.conditions``, and pydantic's errors as what a person fixes.

Unknown keys get a "did you mean" from the keys that model has (``hitl.spec.suggest``) and, for a key that belongs
one level up or down, where it goes; type errors say what was expected and what was found.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from hitl.spec.schema import (
    STEP_CONFIGS,
    AiActionConfig,
    Approver,
    Conditions,
    EmailTemplate,
    Next,
    Notify,
    SlackNotify,
    Step,
    WorkflowSpec,
)
from hitl.spec.suggest import normal as _normal
from hitl.spec.suggest import suggest

KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe(value: Any) -> str:
    if isinstance(value, dict | list) and len(value) > 20:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _keys(model: type[BaseModel] | None) -> list[str]:
    fields = getattr(model, "model_fields", {})
    return sorted(info.alias or name for name, info in fields.items())


# Where a key that is unknown at one place belongs instead, per model it was found in.
_ELSEWHERE: dict[Any, list[tuple[str, Any]]] = {
    WorkflowSpec: [("in a step (under steps)", Step), ("under a step's next.conditions", Conditions)],
    Step: [
        ("under next.conditions", Conditions),
        ("under next", Next),
        ("under config", "config"),
        ("at the top level of the spec", WorkflowSpec),
    ],
    Next: [("under next.conditions", Conditions), ("on the step itself, not under next", Step)],
    Conditions: [("under next, one level up", Next), ("on the step itself", Step)],
    Notify: [("under notify.slack", SlackNotify)],
    SlackNotify: [("under notify, one level up", Notify)],
    EmailTemplate: [("under config, one level up", AiActionConfig)],
    Approver: [("under next.conditions", Conditions)],
    "config": [("on the step itself, not in its config", Step), ("under next.conditions", Conditions)],
}


def _unknown_key_message(key: str, model: type[BaseModel] | None, present: set[str], step_type: str | None) -> str:
    known = [k for k in _keys(model) if k not in present]
    close = suggest(key, known)
    if close is not None and _normal(close) == _normal(key):
        return f"unknown key {key!r} (did you mean {close!r}?)"
    table = _ELSEWHERE.get("config" if model in STEP_CONFIGS.values() else model, [])
    for where, other in table:
        other_model = STEP_CONFIGS.get(step_type or "") if other == "config" else other
        if key in _keys(other_model):
            return f"unknown key {key!r} here: it belongs {where}"
    if close is not None:
        return f"unknown key {key!r} (did you mean {close!r}?)"
    given = suggest(key, sorted(present & set(_keys(model))))
    if given is not None:
        return f"unknown key {key!r} (a second {given!r}? that key is already given)"
    return f"unknown key {key!r} (known keys: {', '.join(_keys(model))})"


def _model_at(model: type[BaseModel], loc: KeyPath) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            info = next((i for i in getattr(current, "model_fields", {}).values() if i.alias == part), None)
        if info is None:
            return None
        annotation = info.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return None
        current = candidates[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def at(data: Any, loc: KeyPath) -> Any:
    for part in loc:
        if isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


_EXPECTED = {
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def pydantic_message(err: Any, model: type[BaseModel], data: Any, step_type: str | None) -> tuple[KeyPath, str]:
    loc: KeyPath = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    if kind == "missing":
        return loc, "is required"
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = at(data, loc[:-1])
        where = _model_at(model, loc[:-1])
        present = {k for k in _keys(where) if k in parent} if isinstance(parent, dict) else set()
        return loc, _unknown_key_message(key, where, present, step_type)
    expected = _EXPECTED.get(kind)
    if expected:
        return loc, f"{expected}, got {describe(value)}"
    if kind == "literal_error":
        return loc, f"must be one of {err['ctx']['expected']}, got {describe(value)}"
    if kind == "string_pattern_mismatch":
        what = "an email address" if loc and loc[-1] == "email" else f"text matching {err['ctx']['pattern']}"
        return loc, f"must be {what}, got {describe(value)}"
    if kind == "value_error":
        return loc, str(err["ctx"]["error"])
    if kind == "too_long":
        count = len(value) if isinstance(value, dict | list) else err["ctx"].get("actual_length")
        return loc, f"has {count:,} items; at most {err['ctx']['max_length']} are allowed"
    if kind == "string_too_long":
        return loc, f"must be at most {err['ctx']['max_length']} characters, got {len(value):,}"
    return loc, f"{err['msg'][0].lower()}{err['msg'][1:]}, got {describe(value)}"


MEANT = re.compile(r"\(did you mean '([^']+)'\?")
