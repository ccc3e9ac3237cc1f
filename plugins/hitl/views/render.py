"""Turning a step's output into what a reviewer reads: email preview, research fields, JSON tree, edit diff."""

from __future__ import annotations

import difflib
import json
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


EDIT_FIELDS = {"email": EMAIL_FIELDS, "text": ("text",)}


def field_text(output: Any, name: str) -> str:
    """One editable field of an output as the form shows it (an address list as "a, b")."""
    return _text(output.get(name)) if isinstance(output, dict) else ""


def edited_output(kind: str, original: Any, form: Any) -> dict[str, Any] | None:
    """What the single review form sends: the original with every field the reviewer changed, or None.

    Only fields present in the form count (``edit_<name>``); a field shown unchanged keeps its
    original value and type (a list of addresses stays a list), so an untouched form is a plain
    approval. Browsers send textarea line breaks as CRLF: both sides are compared with LF line breaks, so
    an untouched field whose original holds CRLF is no edit and keeps its original value.
    """
    names = EDIT_FIELDS.get(kind)
    if names is None or not isinstance(original, dict):
        return None
    edited = dict(original)
    changed = False
    for name in names:
        raw = form.get(f"edit_{name}")
        if raw is None:
            continue
        value = _lf(str(raw))
        if value != _lf(field_text(original, name)):  # an untouched CRLF original is not an edit
            edited[name] = value
            changed = True
    return edited if changed else None


def _lf(text: str) -> str:
    """``text`` with LF line breaks (browsers post CRLF; an output may hold either)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def form_values(kind: str, original: Any, form: Any | None) -> dict[str, str]:
    """The editable fields as the form should show them: what was posted, else the original."""
    names = EDIT_FIELDS.get(kind, ())
    values = {name: field_text(original, name) for name in names}
    if form is not None:
        for name in names:
            raw = form.get(f"edit_{name}")
            if raw is not None:
                values[name] = str(raw).replace("\r\n", "\n").replace("\r", "\n")
    return values


def context_fields(output: Any, limit: int = 12) -> list[tuple[str, Any, bool]]:
    """An upstream step's output as (key, text, long) rows for the "why" panel; long text is folded."""
    if not isinstance(output, dict):
        text = _short(output)
        return [("output", text, len(text) > 200)]
    rows = []
    for key, value in list(output.items())[:limit]:
        text = _short(value)
        rows.append((str(key), text, len(text) > 200 or "\n" in text))
    return rows


def _short(value: Any, chars: int = 4000) -> str:
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, dict | list):
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (RecursionError, ValueError):
            text = "…"
    else:
        text = "" if value is None else str(value)
    return text if len(text) <= chars else text[:chars] + "…"


# -- times: in Airflow's timezone, labelled -------------------------------------------------
def ui_timezone() -> tuple[str, tzinfo]:
    """The timezone pages are rendered in without JavaScript: Airflow's ``[core] default_timezone``.

    Airflow 3's UI has no server-side UI timezone (``[webserver] default_ui_timezone`` is gone): it
    shows the timezone the user picked (localStorage ``timezone``), else the browser's. The pages'
    script does the same with the ``<time>`` elements rendered here, so they read like Airflow's own.
    """
    try:
        from airflow.configuration import conf

        name = (conf.get("core", "default_timezone", fallback="utc") or "utc").strip()
    except Exception:  # pragma: no cover - no Airflow configuration in this process
        name = "utc"
    if name.lower() in ("utc", "z", "etc/utc"):
        return "UTC", UTC
    if name.lower() == "system":
        local = datetime.now().astimezone().tzinfo or UTC
        return str(local), local
    try:
        return name, ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC", UTC


def when(value: datetime | None, zone: tuple[str, tzinfo], seconds: bool = False) -> Markup:
    """A ``<time>`` in the given timezone with its abbreviation (the script re-renders it in Airflow's)."""
    if value is None:
        return Markup("")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone[1])
    text = local.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else "")) + " " + (local.tzname() or zone[0])
    return Markup('<time datetime="{}" data-seconds="{}" title="{}">{}</time>').format(
        value.astimezone(UTC).isoformat(), "1" if seconds else "", zone[0], text
    )


def span(seconds: float) -> str:
    """A duration as "2d 3h", "3h 20m", "5m" or "under a minute"."""
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else "under a minute"


# What a status, an event's channel reads as on a page: words, as Airflow writes its own states.
STATUS_WORDS = {
    "pending": "Pending",
    "approved": "Approved",
    "rejected": "Rejected",
    "changes_requested": "Changes requested",
    "superseded": "Superseded",
    "timed_out": "Timed out",
}
CHANNEL_WORDS = {"ui": "the review page", "api": "the API", "cli": "the CLI", "slack": "Slack", "email": "email"}


def status_words(status: str, edited: bool = False) -> str:
    """``changes_requested`` -> "Changes requested"; an approval with an edit -> "Approved (edited)"."""
    words = STATUS_WORDS.get(status) or status.replace("_", " ").capitalize()
    return f"{words} (edited)" if edited and status == "approved" else words


def channel_words(channel: str) -> str:
    return CHANNEL_WORDS.get(channel, channel.replace("_", " "))
