"""Turning a step's output into what a reviewer reads: email preview, research fields, JSON tree, edit diff."""

from __future__ import annotations

import difflib
from typing import Any

from hitl.outputs import EMAIL_FIELDS


def email_fields(output: Any) -> list[tuple[str, str]]:
    out = output if isinstance(output, dict) else {}
    return [(name, _text(out.get(name, ""))) for name in EMAIL_FIELDS]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def diff(original: Any, edited: Any) -> list[dict[str, Any]]:
    """Per changed field, unified-diff lines tagged add / del / ctx for the template."""
    if not isinstance(original, dict) or not isinstance(edited, dict):
        return []
    changes = []
    for key in sorted(set(original) | set(edited)):
        before, after = _text(original.get(key)), _text(edited.get(key))
        if before == after:
            continue
        lines = []
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=2):
            if line.startswith(("---", "+++", "@@")):
                continue
            tag = "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx"
            lines.append({"tag": tag, "text": line})
        changes.append({"field": key, "lines": lines})
    return changes


def edit_from_form(kind: str, form: Any) -> dict[str, Any]:
    """The edited output from the form; browsers send textarea line breaks as CRLF, the output uses LF."""

    def field(name: str) -> str:
        return str(form.get(f"edit_{name}", "")).replace("\r\n", "\n")

    if kind == "email":
        return {name: field(name) for name in EMAIL_FIELDS}
    return {"text": field("text")}
