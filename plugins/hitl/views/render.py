"""Turning a step's output into what a reviewer reads: email preview, research fields, JSON tree, edit diff."""

from __future__ import annotations

import difflib
import json
from typing import Any

from markupsafe import Markup, escape

from hitl.outputs import EMAIL_FIELDS

TREE_DEPTH = 40  # deeper parts of a JSON output show as JSON text
TREE_TEXT_CHARS = 20_000


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


def json_tree(value: Any, max_depth: int = TREE_DEPTH) -> Markup:
    """A JSON output as nested ``<details>``, built with a stack, not recursion: any depth renders.

    Objects and arrays nested deeper than ``max_depth`` show as (shortened) JSON text.
    """
    out: list[str] = []
    stack: list[tuple[Any, Any, int] | None] = [(value, None, 0)]  # None closes a <details>
    while stack:
        item = stack.pop()
        if item is None:
            out.append("</details>")
            continue
        node, key, depth = item
        if isinstance(node, dict | list) and node and depth >= max_depth:
            out.append(_leaf(key, _deep_text(node), deep=True))
        elif isinstance(node, dict):
            out.append(f'<details class="json" open><summary>{escape("{…}" if key is None else key)}</summary>')
            stack.append(None)
            stack.extend((child, k, depth + 1) for k, child in reversed(list(node.items())))
        elif isinstance(node, list):
            label = escape("[…]" if key is None else key)
            out.append(f'<details class="json" open><summary>{label} [{len(node)}]</summary>')
            stack.append(None)
            stack.extend((child, i, depth + 1) for i, child in reversed(list(enumerate(node))))
        else:
            out.append(_leaf(key, node))
    return Markup("".join(out))


def _leaf(key: Any, value: Any, *, deep: bool = False) -> str:
    label = "" if key is None else f"<strong>{escape(key)}</strong>: "
    note = ' <span class="muted small">(nested too deeply to show as a tree)</span>' if deep else ""
    return f'<div class="json-leaf">{label}<pre style="display:inline">{escape(value)}</pre>{note}</div>'


def _deep_text(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        return "…"
    return text if len(text) <= TREE_TEXT_CHARS else text[:TREE_TEXT_CHARS] + "…"
