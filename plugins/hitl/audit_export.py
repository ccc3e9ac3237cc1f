"""The audit trail as JSON Lines or CSV, for compliance reviews (``python -m hitl audit export``, ``GET /api/audit``).

One row per audit event, oldest first, with the request it belongs to: what was shown (the draft and its hash, on
the ``requested`` row; the hash on every row, so a decision can be tied to the version it was made on), what was
decided (the event: ``approved``, ``edited``, ``rejected``, ``changes_requested``, ``expired``, ``refused``, ...), by
whom, on which channel, with which reason and which edit. Rows are read in pages by id (``Store.audit_page``), so an
export of a year streams in constant memory and never holds a lock.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

FORMATS = ("jsonl", "csv")
COLUMNS = (
    "id",
    "at",
    "request_id",
    "workflow",
    "run_id",
    "step_id",
    "revision",
    "event",
    "actor",
    "channel",
    "comment",
    "edited_output",
    "shown_output",
    "output_hash",
    "detail",
)
PAGE = 1000


@dataclass(frozen=True)
class AuditFilter:
    """Which events to export: one request, one workflow, a time range (``since`` inclusive, ``until`` exclusive)."""

    request_id: int | None = None
    workflow: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since >= self.until:
            raise ValueError(f"--since ({self.since.isoformat()}) must be before --until ({self.until.isoformat()})")
        for name in ("since", "until"):
            when = getattr(self, name)
            if when is not None and when.tzinfo is None:
                raise ValueError(f"{name} must carry a time zone (e.g. 2026-12-01T00:00:00+00:00), not {when}")


def parse_time(text: str, name: str) -> datetime:
    """``since`` / ``until`` as given on the CLI or the API: ISO 8601 with a time zone (a bare time is ambiguous)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        example = "2026-12-01T00:00:00Z"
        raise ValueError(f"{name} must be an ISO 8601 time with a zone (e.g. {example}), not {text[:40]!r}") from None
    if when.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone (Z or +HH:MM), not {text[:40]!r}")
    return when


def rows(store: Any, which: AuditFilter, *, page_size: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every matching event as one flat dict (``COLUMNS``), oldest first, read ``page_size`` events at a time."""
    after = 0
    while True:
        page = store.audit_page(which, after_id=after, limit=page_size)
        for event, req in page:
            detail = dict(event.detail)
            yield {
                "id": event.id,
                "at": event.at.isoformat(),
                "request_id": event.request_id,
                "workflow": req.dag_id if req else None,
                "run_id": req.run_id if req else None,
                "step_id": req.step_id if req else None,
                "revision": req.revision if req else None,
                "event": event.event,
                "actor": event.actor,
                "channel": detail.get("channel"),
                "comment": detail.get("comment") or detail.get("reason"),
                "edited_output": detail.get("edited_output"),
                "shown_output": req.output if req is not None and event.event == "requested" else None,
                "output_hash": req.output_hash if req else None,
                "detail": detail,
            }
        if len(page) < page_size:
            return
        after = page[-1][0].id


def render(records: Iterable[dict[str, Any]], fmt: str) -> Iterator[str]:
    """The rows as text chunks: one JSON object per line, or CSV with a header (nested values as JSON)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt[:20]!r}: jsonl or csv")
    if fmt == "jsonl":
        for record in records:
            yield json.dumps(record, sort_keys=True, default=str, ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _cell(v) for k, v in record.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _cell(value: Any) -> Any:
    """A CSV cell: nested values as JSON; text that a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
