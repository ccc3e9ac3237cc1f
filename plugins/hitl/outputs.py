"""What a step's output is (email, text, anything else), its one-line summary, and checks on what will be acted on.

``field_errors(kind, edited)`` checks a reviewer's edit; ``sendable_errors(kind, output)`` checks any output, edited or
not, for what approving it will do: an email must be one the email step can send as it reads (no header injection
through CR/LF, no NUL, real addresses, bounded sizes), a text output must be one string.
"""

from __future__ import annotations

from email import errors as email_errors
from email import policy
from email.headerregistry import Address
from typing import Any

EMAIL_FIELDS = ("from", "to", "subject", "body")
OPTIONAL_EMAIL_FIELDS = ("cc", "bcc", "reply_to")
ADDRESS_FIELDS = ("from", "to", "cc", "bcc", "reply_to")
RECIPIENT_FIELDS = ("to", "cc", "bcc")
EDITABLE_KINDS = ("email", "text")

MAX_DEPTH = 20  # levels of nested objects and lists
MAX_SUBJECT_CHARS = 998  # RFC 5322's line length
MAX_BODY_BYTES = 1_000_000
MAX_TEXT_BYTES = 1_000_000
MAX_RECIPIENTS = 100  # to, cc and bcc together; also the most addresses in reply_to
MAX_ADDRESS_FIELD_CHARS = 32_000  # all of one address field's text

# Characters that end a header line for Python's email package (str.splitlines) or are otherwise control characters.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


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
        to_text = ", ".join(str(t) for t in to) if isinstance(to, list) else str(to)
        return f"To {to_text}: {output.get('subject', '')}"[:500]
    if kind == "text" and isinstance(output, dict):
        return " ".join(str(output.get("text", "")).split())[:200]
    if isinstance(output, dict):
        for key in ("title", "summary", "name"):
            if isinstance(output.get(key), str):
                return output[key][:200]
        return ", ".join(str(k) for k in list(output)[:6])
    return str(output)[:200]


def value_depth(value: Any) -> int:
    """How deeply objects and lists nest in a JSON-like value (iterative: no recursion on hostile input)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether objects/lists nest more than ``limit`` levels."""
    return value_depth(value) > limit


def _text_problem(name: str, value: str, *, one_line: bool) -> str | None:
    """NUL, line breaks (for header fields), other control characters, text that cannot be encoded."""
    if "\x00" in value:
        return f"{name} must not contain NUL characters"
    if one_line:
        if any(c in _LINE_BREAKS for c in value):
            return f"{name} must be one line"
        if any((ord(c) < 32 and c != "\t") or 127 <= ord(c) < 160 for c in value):
            return f"{name} must not contain control characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{name} is not valid text"
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def parse_addresses(name: str, value: Any) -> list[Address]:
    """The addresses in an address field (a string, or a list of strings, each holding one or more
    comma-separated addresses), parsed as the email step's message will parse them. ValueError says what is wrong."""
    if value is not None and not isinstance(value, str | list | tuple):
        raise ValueError(f"{name} must be an address or a list of addresses")
    items = _as_list(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"{name} must be an address or a list of addresses")
    if len(items) > MAX_RECIPIENTS:
        raise ValueError(f"{name}: at most {MAX_RECIPIENTS} addresses")
    if sum(len(item) for item in items) > MAX_ADDRESS_FIELD_CHARS:
        raise ValueError(f"{name} is too long")
    addresses: list[Address] = []
    for raw in items:
        problem = _text_problem(name, raw, one_line=True)
        if problem:
            raise ValueError(problem)
        if not raw.strip():
            raise ValueError(f"{name}: an address is empty")
        try:
            header = policy.default.header_factory("To", raw)  # the address-list parser every address header uses
            found = list(header.addresses)
            defects = [d for d in header.defects if not isinstance(d, email_errors.ObsoleteHeaderDefect)]
        except Exception:  # the parser gave up: not an address list
            found, defects = [], [True]
        bad = (
            defects
            or not found
            or any(not a.username or "." not in a.domain or any(c.isspace() for c in a.addr_spec) for a in found)
        )
        if bad:
            raise ValueError(f"{name}: {raw.strip()!r} is not an email address")
        addresses.extend(found)
    if len(addresses) > MAX_RECIPIENTS:
        raise ValueError(f"{name}: at most {MAX_RECIPIENTS} addresses")
    return addresses


def _email_errors(output: dict[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    unknown = [k for k in output if k not in EMAIL_FIELDS and k not in OPTIONAL_EMAIL_FIELDS]
    if unknown:
        shown = ", ".join(str(k)[:40] for k in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        errors["output"] = f"unknown field(s): {shown}"
    recipients = 0
    for name in ADDRESS_FIELDS:
        value = output.get(name)
        required = name in ("from", "to")
        if value is None or value == "" or value == [] or (isinstance(value, str) and not value.strip()):
            if required:
                errors[name] = f"{name} is required"
            continue
        try:
            addresses = parse_addresses(name, value)
        except ValueError as exc:
            errors[name] = str(exc)
            continue
        if name == "from" and len(addresses) != 1:
            errors[name] = "from must be one address"
        if name in RECIPIENT_FIELDS:
            recipients += len(addresses)
    if recipients > MAX_RECIPIENTS and "to" not in errors:
        errors["to"] = f"at most {MAX_RECIPIENTS} recipients (to, cc and bcc together)"
    subject = output.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        errors["subject"] = (
            "subject is required" if subject is None or isinstance(subject, str) else "subject must be text"
        )
    elif len(subject) > MAX_SUBJECT_CHARS:
        errors["subject"] = f"subject is longer than {MAX_SUBJECT_CHARS} characters"
    else:
        problem = _text_problem("subject", subject, one_line=True)
        if problem:
            errors["subject"] = problem
    body = output.get("body")
    if not isinstance(body, str) or not body.strip():
        errors["body"] = "body is required" if body is None or isinstance(body, str) else "body must be text"
    else:
        problem = _text_problem("body", body, one_line=False)
        if problem:
            errors["body"] = problem
        elif len(body.encode("utf-8")) > MAX_BODY_BYTES:
            errors["body"] = f"body is larger than {MAX_BODY_BYTES // 1_000_000} MB"
    return errors


def _text_errors(output: dict[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    unknown = [k for k in output if k != "text"]
    if unknown:
        shown = ", ".join(str(k)[:40] for k in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        errors["output"] = f"unknown field(s): {shown}"
    text = output.get("text")
    if not isinstance(text, str) or not text.strip():
        errors["text"] = "text is required" if text is None or isinstance(text, str) else "text must be a string"
    else:
        problem = _text_problem("text", text, one_line=False)
        if problem:
            errors["text"] = problem
        elif len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            errors["text"] = f"text is larger than {MAX_TEXT_BYTES // 1_000_000} MB"
    return errors


def sendable_errors(kind: str, output: Any) -> dict[str, str]:
    """Field -> why this output (edited or not) cannot be acted on if approved; empty when it can.

    Email: what the email step would send (address lists, one-line subject, sizes). Text: one string.
    Other kinds are data for later steps: nothing here to check."""
    if kind not in EDITABLE_KINDS:
        return {}
    if not isinstance(output, dict):
        return {"output": "must be an object"}
    if too_deep(output):
        return {"output": f"nested more than {MAX_DEPTH} levels deep"}
    return _email_errors(output) if kind == "email" else _text_errors(output)


def field_errors(kind: str, edited: Any) -> dict[str, str]:
    """Field -> message for an edited output; empty when it is valid for its kind (and so can be acted on)."""
    if kind not in EDITABLE_KINDS:
        return {"output": f"output of kind {kind} cannot be edited (only email and text)"}
    return sendable_errors(kind, edited)
