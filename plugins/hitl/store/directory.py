"""The user directory in the store: who the auth manager's users are, for code that may not ask it.

Task code (the gate's notifications) may not read Airflow's database, so FAB's users are invisible there: an
approver named by ``userId`` or ``role`` had no address unless an operator filled ``[hitl] user_emails``. A
process that may ask the auth manager (the api-server, every few minutes; ``python -m hitl users sync``) writes
each user's email, roles and readable DAGs here (``hitl.airflow_users.sync_directory``); notifications read it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, func, insert, select

from hitl.store.model import _aware, utcnow
from hitl.store.schema import user_directory


@dataclass(frozen=True)
class DirectoryUser:
    username: str
    email: str | None
    roles: frozenset[str]
    all_dags: bool  # may read every DAG (also DAGs made after the sync)
    dags: frozenset[str]
    synced_at: datetime | None = None

    def may_read(self, dag_id: str) -> bool:
        return self.all_dags or dag_id in self.dags


def replace_all(engine: Engine, users: Iterable[DirectoryUser]) -> int:
    """The directory becomes ``users`` (one transaction: a reader sees the old list or the new, never half)."""
    now = utcnow()
    rows = [
        {
            "username": u.username,
            "email": u.email,
            "roles": json.dumps(sorted(u.roles)),
            "all_dags": u.all_dags,
            "dags": json.dumps(sorted(u.dags)),
            "synced_at": now,
        }
        for u in users
    ]
    with engine.begin() as conn:
        conn.execute(delete(user_directory))
        if rows:
            conn.execute(insert(user_directory), rows)
    return len(rows)


def _user(row: object) -> DirectoryUser:
    m = row._mapping  # type: ignore[attr-defined]
    return DirectoryUser(
        username=m["username"],
        email=m["email"],
        roles=frozenset(json.loads(m["roles"] or "[]")),
        all_dags=bool(m["all_dags"]),
        dags=frozenset(json.loads(m["dags"] or "[]")),
        synced_at=_aware(m["synced_at"]),
    )


def users(
    engine: Engine, *, names: Sequence[str] = (), roles: Sequence[str] = (), emails: Sequence[str] = ()
) -> list[DirectoryUser]:
    """The users called ``names``, with ``emails`` (ignoring case), and the members of ``roles`` (lower case)."""
    found: dict[str, DirectoryUser] = {}
    t = user_directory.c
    with engine.connect() as conn:
        if names:
            for row in conn.execute(select(user_directory).where(t.username.in_(list(names)))):
                found[row.username] = _user(row)
        if emails:
            wanted_emails = sorted({e.strip().lower() for e in emails})
            for row in conn.execute(select(user_directory).where(func.lower(t.email).in_(wanted_emails))):
                found[row.username] = _user(row)
        if roles:
            wanted = {r.lower() for r in roles}
            for row in conn.execute(select(user_directory)):  # roles are a JSON list: the directory is small
                user = _user(row)
                if user.roles & wanted:
                    found[user.username] = user
    return list(found.values())


def last_synced(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        return _aware(conn.execute(select(func.max(user_directory.c.synced_at))).scalar())
