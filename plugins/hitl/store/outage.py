"""Waiting out a decision-store outage in a step, instead of failing its run.

A step after a gate (the guard's approval check, the email step's at-most-once ledger) and a gated step
re-run after "request changes" (its review rounds) each read the store before they act. A store that is
down for a minute or two (a failover, a restart) must not fail such a step on its first try: it would fail
an approved run, and the email would never go out. So those reads go through ``through_outage``:

- an error that says the store is unreachable (``is_outage``) is retried with exponential backoff
  (0.5 s, doubling, at most 15 s apart) for up to ``[hitl] store_outage_wait`` seconds (default 300);
- the outage is logged once, when it starts, and once more when the store answers again;
- when the wait runs out the last error is raised: the step fails without having acted.

Nothing is acted on during the wait: the call that waits is the read or write the step needs before (or,
for the ledger, right after) it acts, and "exactly once" is the ledger's (``Store.claim_side_effect``).
Any other error (a bad query, a refused approval) is raised at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_WAIT = 300.0  # declared as store_outage_wait's default in hitl.settings
FIRST_DELAY = 0.5
MAX_DELAY = 15.0
# A store that answers but lacks the schema (not migrated: ``python -m hitl db upgrade``) is no outage to wait out.
NOT_AN_OUTAGE = ("no such table", "no such column", "syntax error", "does not exist")


def outage_wait() -> float:
    """``[hitl] store_outage_wait``: seconds a step waits for the store to come back (0: not at all)."""
    from hitl.settings import setting

    raw = setting("store_outage_wait").strip()
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"[hitl] store_outage_wait: {raw!r} is not a number of seconds") from None
    if value < 0:
        raise ValueError(f"[hitl] store_outage_wait: {raw!r} is negative")
    return value


def is_outage(exc: BaseException) -> bool:
    """True for errors that mean the store cannot be reached now (a later try may succeed), not a bad request."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, OperationalError) and any(m in str(exc).lower() for m in NOT_AN_OUTAGE):
        return False  # SQLite says "no such table" with the same class as "database is locked"
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ConnectionError)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def through_outage(
    what: str,
    call: Callable[[], T],
    *,
    wait: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    logger: logging.Logger | None = None,
) -> T:
    """``call()``, retried through a store outage for up to ``wait`` seconds (``[hitl] store_outage_wait``).

    ``what`` names the step's need in the log lines ("checking the approval of gate X in run Y"). ``sleep`` and
    ``clock`` are seams for tests that must not wait for real.
    """
    out = logger or log
    limit = outage_wait() if wait is None else wait
    started: float | None = None
    delay = FIRST_DELAY
    while True:
        try:
            value = call()
        except Exception as exc:
            if not is_outage(exc):
                raise
            now = clock()
            if started is None:
                started = now
                out.warning(
                    "The decision store is unavailable (%s: %s); waiting up to %.0f s for it before %s",
                    type(exc).__name__,
                    first_line(exc),
                    limit,
                    what,
                )
            waited = now - started
            if waited >= limit:
                out.error("The decision store is still unavailable after %.0f s; giving up on %s", waited, what)
                raise
            sleep(min(delay, max(limit - waited, 0.0)))
            delay = min(delay * 2, MAX_DELAY)
            continue
        if started is not None:
            out.warning("The decision store is back after %.0f s; continuing with %s", clock() - started, what)
        return value
