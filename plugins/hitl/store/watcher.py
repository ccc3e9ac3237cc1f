"""One shared watcher per triggerer event loop: every parked gate is answered by one batched query.

A thousand parked gates cost one ``SELECT ... WHERE id IN (...) AND status <> 'pending'``
per poll interval (in chunks of 500 ids), not a thousand. On PostgreSQL a LISTEN on
``hitl_decision`` wakes the watcher the moment a decision commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hitl.store import NOTIFY_CHANNEL, PENDING, ApprovalRequest
from hitl.store.engine import SQLITE_BUSY_TIMEOUT_MS, async_url
from hitl.store.schema import approval_request

log = logging.getLogger(__name__)

CHUNK = 500


class DecisionWatcher:
    def __init__(self, url: str, poll_interval: float) -> None:
        self.url = url
        self.poll_interval = poll_interval
        self.polls = 0  # batched queries made; tests read it
        self.failures = 0  # polls failed in a row: an outage is logged once, when it starts, and when it ends
        self._waiters: dict[int, set[asyncio.Future[ApprovalRequest]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._engine: AsyncEngine | None = None
        self._listener: Any = None

    async def wait(self, request_id: int) -> ApprovalRequest:
        """Return the request once it is no longer pending."""
        fut: asyncio.Future[ApprovalRequest] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, set()).add(fut)
        if self._task is None or self._task.done():
            # A fresh context: the watcher serves every trigger, so what it logs (a store outage) goes to the
            # triggerer's own log rather than to the log of whichever gate happened to start it.
            self._task = asyncio.create_task(self._run(), name="hitl-decision-watcher", context=contextvars.Context())
        self._wake.set()  # look at the newcomer now, not one interval later
        try:
            return await fut
        finally:
            waiting = self._waiters.get(request_id)
            if waiting is not None:
                waiting.discard(fut)
                if not waiting:
                    del self._waiters[request_id]

    def _engine_for(self) -> AsyncEngine:
        if self._engine is None:
            url = async_url(self.url)
            args: dict[str, Any] = (
                {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000} if url.get_backend_name() == "sqlite" else {}
            )
            self._engine = create_async_engine(url, connect_args=args, pool_pre_ping=True)
        return self._engine

    async def _listen(self) -> None:
        if make_url(self.url).get_backend_name() != "postgresql":
            return
        if self._listener is not None and not self._listener.is_closed():
            return
        import asyncpg

        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            self._listener = await asyncpg.connect(dsn)
            await self._listener.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
        except Exception as exc:  # polling still works
            log.warning(
                "hitl: LISTEN %s failed (%s); polling every %ss", NOTIFY_CHANNEL, type(exc).__name__, self.poll_interval
            )
            self._listener = None

    async def poll_once(self) -> None:
        ids = list(self._waiters)
        if not ids:
            return
        engine = self._engine_for()
        found: list[ApprovalRequest] = []
        async with engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                result = await conn.execute(
                    select(approval_request).where(
                        approval_request.c.id.in_(chunk), approval_request.c.status != PENDING
                    )
                )
                found.extend(ApprovalRequest.from_row(r) for r in result)
        self.polls += 1
        for req in found:
            for fut in self._waiters.get(req.id, ()):
                if not fut.done():
                    fut.set_result(req)

    async def _run(self) -> None:
        try:
            while True:
                if not self._waiters:
                    await self._wake.wait()
                self._wake.clear()
                try:
                    await self._listen()
                    await self.poll_once()
                except Exception as exc:  # the store is down: keep waiting, try again next interval
                    if not self.failures:
                        log.error(
                            "hitl: the decision store is unavailable (%s: %s); %d parked gate(s) keep waiting",
                            type(exc).__name__,
                            str(exc).splitlines()[0] if str(exc) else "",
                            len(self._waiters),
                        )
                    self.failures += 1
                else:
                    if self.failures:
                        log.warning("hitl: the decision store is reachable again after %d failed polls", self.failures)
                    self.failures = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            if self._listener is not None:
                with contextlib.suppress(Exception):
                    await self._listener.close()
                self._listener = None
            if self._engine is not None:
                with contextlib.suppress(Exception):
                    await self._engine.dispose()
                self._engine = None


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, DecisionWatcher]] = (
    weakref.WeakKeyDictionary()
)


def watcher_for(url: str, poll_interval: float) -> DecisionWatcher:
    """The watcher of the running event loop for this store (the triggerer runs one loop)."""
    per_loop = _watchers.setdefault(asyncio.get_running_loop(), {})
    if url not in per_loop:
        per_loop[url] = DecisionWatcher(url, poll_interval)
    return per_loop[url]
