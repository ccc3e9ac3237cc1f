"""One shared watcher per triggerer event loop: parked gates cost the store nothing that grows with their count.

Each look is one ``SELECT id ... WHERE decided_at >= <a moment before the last look>``: it returns the
requests decided since, whatever the number of parked gates, and only then are the full rows of the
ones a gate waits for read. A gate that just parked is looked up by id once (its request may have
been decided while no trigger ran). Between looks the watcher waits for a sign of change that costs no
query: on PostgreSQL a LISTEN on ``hitl_decision`` (every decision NOTIFYs), on SQLite the store file's
size and modification time (a stat() every 0.1 s); a NOTIFY names the request, which is then looked up by
id. Without such a sign it looks every ``poll_interval``; with one, it still makes a safety look every
``safety_interval``, by id for every waiting gate (one query per 500), in case a sign was lost or a
decider's clock is behind the triggerer's by more than the 10 s overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import weakref
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hitl.store import NOTIFY_CHANNEL, PENDING, ApprovalRequest, utcnow
from hitl.store.engine import SQLITE_BUSY_TIMEOUT_MS, async_url
from hitl.store.schema import approval_request

log = logging.getLogger(__name__)

CHUNK = 500  # ids per IN (...) when looking up newly parked gates or the rows of decided ones
OVERLAP = timedelta(seconds=10)  # a decision's timestamp is taken just before its commit: look back this far
SAFETY_INTERVAL = 30.0  # seconds between safety looks while a change signal (LISTEN, the SQLite file) is used
STAT_TICK = 0.1  # seconds between looks at the SQLite file's stamp (a stat(), no query)

Stamp = tuple[tuple[int, int], ...]


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


class DecisionWatcher:
    def __init__(self, url: str, poll_interval: float, *, safety_interval: float = SAFETY_INTERVAL) -> None:
        self.url = url
        self.poll_interval = poll_interval
        self.safety_interval = max(safety_interval, poll_interval)
        self.polls = 0  # looks at the store; tests and benchmarks read it
        self.failures = 0  # looks failed in a row: an outage is logged once, when it starts, and when it ends
        self._waiters: dict[int, set[asyncio.Future[ApprovalRequest]]] = {}
        self._fresh: set[int] = set()  # parked since the last look: looked up by id once
        self._since: datetime | None = None  # the next look asks for decisions at or after this
        self._last_safety: datetime | None = None
        self._stamp: Stamp | None = None  # the SQLite files as of the last look
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._engine: AsyncEngine | None = None
        self._listener: Any = None
        backend = make_url(url)
        database = backend.database if backend.get_backend_name() == "sqlite" else None
        if database and database != ":memory:" and "mode=memory" not in url:
            database = os.path.realpath(database)  # SQLite keeps its -wal beside the link's target
            self._sqlite_files: tuple[str, ...] = (database, f"{database}-wal")
        else:
            self._sqlite_files = ()

    async def wait(self, request_id: int) -> ApprovalRequest:
        """Return the request once it is no longer pending."""
        fut: asyncio.Future[ApprovalRequest] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, set()).add(fut)
        self._fresh.add(request_id)
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
                    self._fresh.discard(request_id)

    @property
    def signalled(self) -> bool:
        """Whether a change reaches the watcher without a query (LISTEN, or the SQLite file's stamp)."""
        return bool(self._sqlite_files) or (self._listener is not None and not self._listener.is_closed())

    def _engine_for(self) -> AsyncEngine:
        if self._engine is None:
            url = async_url(self.url)
            args: dict[str, Any] = (
                {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000} if url.get_backend_name() == "sqlite" else {}
            )
            self._engine = create_async_engine(url, connect_args=args, pool_pre_ping=True)
        return self._engine

    def _file_stamp(self) -> Stamp:
        stamps = []
        for path in self._sqlite_files:
            try:
                st = os.stat(path)
            except OSError:
                stamps.append((0, 0))
            else:
                stamps.append((st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    async def _listen(self) -> None:
        if make_url(self.url).get_backend_name() != "postgresql":
            return
        if self._listener is not None and not self._listener.is_closed():
            return
        import asyncpg

        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            self._listener = await asyncpg.connect(dsn)
            await self._listener.add_listener(NOTIFY_CHANNEL, self._notified)
        except Exception as exc:  # polling still works
            log.warning(
                "hitl: LISTEN %s failed (%s); polling every %ss", NOTIFY_CHANNEL, type(exc).__name__, self.poll_interval
            )
            self._listener = None

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        """A NOTIFY names the request decided: looked up by id, whatever the clocks say."""
        with contextlib.suppress(ValueError):
            request_id = int(payload)
            if request_id in self._waiters:
                self._fresh.add(request_id)
        self._wake.set()

    async def poll_once(self) -> None:
        """One look: one query for the decisions since the last look, whatever the number of parked gates.

        A safety look (every ``safety_interval``) asks for every waiting gate by id instead, one query per 500."""
        if not self._waiters:
            return
        now = utcnow()
        stamp = self._file_stamp()  # before the query: a commit during it is seen at the next look
        safety = (
            self._since is None
            or self._last_safety is None
            or now - self._last_safety >= timedelta(seconds=self.safety_interval)
        )
        # The safety look asks for every waiting gate by id (one query per 500): a decision stamped by a clock far
        # behind the triggerer's, or a lost NOTIFY, is seen within safety_interval whatever the timestamps say.
        by_id = list(self._waiters) if safety else [i for i in self._fresh if i in self._waiters]
        async with self._engine_for().connect() as conn:
            decided: set[int] = set()
            for chunk in _chunks(by_id):
                decided.update(await self._decided_ids(conn, approval_request.c.id.in_(chunk)))
            if not safety:
                assert self._since is not None
                recent = await self._decided_ids(conn, approval_request.c.decided_at >= self._since)
                decided.update(i for i in recent if i in self._waiters)
            found = await self._rows(conn, sorted(decided))
        self._fresh.difference_update(by_id)
        self._since = now - OVERLAP
        if safety:
            self._last_safety = now
        self._stamp = stamp
        self.polls += 1
        for req in found:
            for fut in self._waiters.get(req.id, ()):
                if not fut.done():
                    fut.set_result(req)

    @staticmethod
    async def _decided_ids(conn: AsyncConnection, where: Any) -> list[int]:
        result = await conn.execute(select(approval_request.c.id).where(where, approval_request.c.status != PENDING))
        return [row[0] for row in result]

    @staticmethod
    async def _rows(conn: AsyncConnection, ids: list[int]) -> list[ApprovalRequest]:
        found: list[ApprovalRequest] = []
        for chunk in _chunks(ids):
            result = await conn.execute(select(approval_request).where(approval_request.c.id.in_(chunk)))
            found.extend(ApprovalRequest.from_row(r) for r in result)
        return found

    async def _pause(self) -> None:
        """Wait until a newcomer, a NOTIFY, a change of the SQLite file, or the next (safety) interval."""
        loop = asyncio.get_running_loop()
        quiet = self.signalled and not self.failures
        deadline = loop.time() + (self.safety_interval if quiet else self.poll_interval)
        while (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(left, STAT_TICK) if self._sqlite_files else left)
            if self._wake.is_set():
                return
            if self._sqlite_files and self._file_stamp() != self._stamp:
                return

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
                await self._pause()
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
        from hitl.settings import number

        safety = number("safety_poll_interval")
        per_loop[url] = DecisionWatcher(url, poll_interval, safety_interval=safety)
    return per_loop[url]
