"""What a step's output is (email, text, anything else), its one-line summary, and checks on an edit."""

from __future__ import annotations

from email.utils import getaddresses
from typing import Any

EMAIL_FIELDS = ("from", "to", "subject", "body")
EDITABLE_KINDS = ("email", "text")


def detect_kind(output: Any) -> str:
    if isinstance(output, dict):
        if all(k in output for k in EMAIL_FIELDS):
            return "email"
        if set(output) == {"text"} and isinstance(output["text"], str):
            return "text"
    return "json"


def summarize(output: Any, kind: str) -> str:
    if kind == "email" and isinstance(output, dict):
        to = output.get("to")
        to_text = ", ".join(to) if isinstance(to, list) else str(to)
        return f"To {to_text}: {output.get('subject', '')}"[:500]
    if kind == "text" and isinstance(output, dict):
        return " ".join(str(output.get("text", "")).split())[:200]
    if isinstance(output, dict):
        for key in ("title", "summary", "name"):
            if isinstance(output.get(key), str):
                return output[key][:200]
        return ", ".join(list(output)[:6])
    return str(output)[:200]


def _address_errors(name: str, value: Any, *, many: bool) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        return [f"{name} is required"]
    if not many and len(values) != 1:
        return [f"{name} must be one address"]
    errors = []
    for raw in values:
        for part in raw.split(","):
            parsed = getaddresses([part.strip()])
            addr = parsed[0][1] if parsed else ""
            local, _, domain = addr.partition("@")
            if not local or "." not in domain or any(c.isspace() for c in addr):
                errors.append(f"{name}: {part.strip()!r} is not an email address")
    return errors


def field_errors(kind: str, edited: Any) -> dict[str, str]:
    """Field -> message for an edited output; empty when it is valid for its kind."""
    if kind not in EDITABLE_KINDS:
        return {"output": f"output of kind {kind} cannot be edited (only email and text)"}
    if not isinstance(edited, dict):
        return {"output": "must be an object"}
    errors: dict[str, str] = {}
    if kind == "email":
        unknown = sorted(set(edited) - set(EMAIL_FIELDS) - {"cc", "bcc", "reply_to"})
        if unknown:
            errors["output"] = f"unknown field(s): {', '.join(unknown)}"
        for name in ("from", "to"):
            problems = _address_errors(name, edited.get(name), many=name == "to")
            if problems:
                errors[name] = problems[0]
        subject = edited.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            errors["subject"] = "subject is required"
        elif "\n" in subject or "\r" in subject:
            errors["subject"] = "subject must be one line"
        body = edited.get("body")
        if not isinstance(body, str) or not body.strip():
            errors["body"] = "body is required"
    else:
        text = edited.get("text")
        if not isinstance(text, str) or not text.strip():
            errors["text"] = "text is required"
    return errors
