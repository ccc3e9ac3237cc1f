"""What every channel accepts: bounded sizes, well-formed ids, JSON of limited depth, safe redirects.

Plain Python (no Flask), so the review UI, the JSON API, the Slack endpoint and the CLI check
input the same way before anything reaches the decision service or the store. A refusal is a
``BadInput`` whose ``str()`` is the one-line reason shown to the caller. ``open_store`` is how
every channel opens the store: one that cannot be opened or reached is ``store_unavailable``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hitl.outputs import value_depth

if TYPE_CHECKING:
    from hitl.store import Store

MAX_BODY_BYTES = 1 << 20  # a request body to any of the plugin's routes
MAX_COMMENT_CHARS = 2000  # a reason or comment
MAX_EDIT_BYTES = 256 << 10  # an edited output, as UTF-8 JSON
MAX_JSON_DEPTH = 32  # nesting of a JSON body, a Slack payload or an edit
MAX_ID = 2**63 - 1  # request ids are 64-bit integers in the store
MAX_BULK_IDS = 100
MAX_PAGE = 1_000_000
MAX_OFFSET = 1_000_000_000
MAX_HASH_CHARS = 128
MAX_BACK_CHARS = 2048


class BadInput(Exception):
    """Refused input. ``status``: 400, or 413 when it is too large."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def shown(value: object, limit: int = 24) -> str:
    """A caller's value, short enough to quote back in a one-line message."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "..."


def parse_id(value: object) -> int | None:
    """A request id: ASCII digits (or an int) from 1 to 2**63-1; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 1 <= value <= MAX_ID else None
    if not isinstance(value, str) or not 0 < len(value) <= 19 or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ID else None


def int_arg(raw: str | None, name: str, default: int, lowest: int, highest: int, *, clamp: bool = False) -> int:
    """A whole-number query argument. Out of range: clamped when ``clamp``, else refused like a malformed one."""
    if raw is None or raw == "":
        return default
    digits = raw[1:] if raw.startswith("-") else raw
    if not (digits.isascii() and digits.isdigit()):
        raise BadInput(f"{name} must be a whole number from {lowest} to {highest}, not {shown(raw)!r}")
    number = int(raw) if len(digits) <= 18 else (highest + 1 if raw[0] != "-" else lowest - 1)
    if lowest <= number <= highest:
        return number
    if clamp:
        return min(max(number, lowest), highest)
    raise BadInput(f"{name} must be a whole number from {lowest} to {highest}, not {shown(raw)!r}")


def check_text(value: object, name: str, *, max_chars: int = MAX_COMMENT_CHARS) -> str | None:
    """A reason or comment: text (or None), at most ``max_chars``, without NUL (PostgreSQL refuses it)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"the {name} must be text, not {type(value).__name__}")
    if len(value) > max_chars:
        raise BadInput(f"the {name} is too long ({len(value)} characters; at most {max_chars})")
    if "\x00" in value:
        raise BadInput(f"the {name} must not contain NUL characters")
    return value


_JSON_TOKENS = re.compile(r'\\.|["\[\]{}]', re.S)


def nesting_depth(text: str, stop_at: int | None = None) -> int:
    """How deeply the arrays and objects of JSON text nest, counted without parsing (brackets in strings skipped)."""
    depth = deepest = 0
    in_string = False
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_at is not None and deepest > stop_at:
                    return deepest
        else:
            depth -= 1
    return deepest


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_json(data: bytes | str, *, what: str = "the body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text of bounded depth (checked before parsing: the parser recurses). NaN / Infinity are refused."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"{what} is not UTF-8 text") from exc
    if nesting_depth(data, stop_at=max_depth) > max_depth:
        raise BadInput(f"{what} is nested too deeply (more than {max_depth} levels)")
    try:
        return json.loads(data, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInput(f"{what} is not valid JSON: {reason}") from exc


def check_edit(value: Any, *, what: str = "the edited output") -> dict[str, Any]:
    """An edited output: a JSON object of bounded depth and size."""
    if not isinstance(value, dict):
        raise BadInput(f"{what} must be a JSON object, not {type(value).__name__}")
    if value_depth(value) > MAX_JSON_DEPTH:
        raise BadInput(f"{what} is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{what} is not plain JSON: {exc}") from exc
    if size > MAX_EDIT_BYTES:
        raise BadInput(f"{what} is too large ({size} bytes of JSON; at most {MAX_EDIT_BYTES})", 413, "too_large")
    return value


def check_hash(value: object) -> str | None:
    """The output hash the reviewer saw (optional)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_HASH_CHARS:
        raise BadInput("seen_hash must be the output hash shown with the request")
    return value


def safe_back(value: object) -> str | None:
    """``value`` when it is a same-site relative path ("/..."), else None.

    Refused: other sites (``//evil``, ``/\\evil``, ``https://evil``), schemes (``javascript:``),
    and anything with spaces, control characters, backslashes or non-ASCII (browsers drop or
    rewrite those, which can turn a path into another host).
    """
    if not isinstance(value, str) or not 0 < len(value) <= MAX_BACK_CHARS:
        return None
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    if not value.isascii() or any(c <= " " or c in "\\\x7f" for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


class StoreUnavailable(Exception):
    """The decision store could not be opened (a bad path or URL)."""


def open_store() -> Store:
    """The configured store. Opening it can fail before any query (a SQLite path under a file, a bad URL)."""
    from sqlalchemy.exc import SQLAlchemyError

    from hitl.store import get_store

    try:
        return get_store()
    except (OSError, SQLAlchemyError) as exc:
        raise StoreUnavailable(str(exc)) from exc


def store_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the decision store cannot be opened or reached (-> 503, or the CLI's exit 3)."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return isinstance(exc, StoreUnavailable | DBAPIError | PoolTimeout)
