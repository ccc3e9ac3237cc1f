"""Email addresses of the people a request should reach.

Approvers listed by ``email`` are used as given. Approvers listed by ``userId`` or ``role`` are found in
``[hitl] user_emails`` (``alice:alice@example.com,bob:bob@example.com``, an override), then in the store's user
directory (the auth manager's users, synced by the api-server: ``hitl.store.directory``), then in FAB's users
where this process may read Airflow's database (not inside a task). A user the directory knows who may not read
the request's DAG is never sent it. With nobody resolvable, the workflow's ``owner`` is used when it is an
address, then ``[hitl] fallback_email``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hitl.identity import user_directory
from hitl.settings import setting

if TYPE_CHECKING:
    from hitl.store.directory import DirectoryUser

log = logging.getLogger(__name__)


def _fab_emails(user_ids: Sequence[str], roles: Sequence[str]) -> dict[str, str]:
    try:
        from airflow.providers.fab.auth_manager.models import Role, User
        from airflow.utils.session import create_session

        found: dict[str, str] = {}
        with create_session() as session:
            for user in session.query(User).filter(User.username.in_(list(user_ids))):
                if user.email:
                    found[user.username] = user.email
            if roles:
                for role in session.query(Role).filter(Role.name.in_(list(roles))):
                    for user in role.user:
                        if user.email:
                            found[f"role:{role.name}:{user.username}"] = user.email
        return found
    except Exception:  # no FAB, or no database access here (task code)
        return {}


def _directory(users: Sequence[str], roles: Sequence[str], emails: Sequence[str], store: Any) -> list[DirectoryUser]:
    if store is None or not (users or roles or emails):
        return []
    try:
        from hitl.store.directory import users as directory_users

        return directory_users(store.engine, names=users, roles=roles, emails=emails)
    except Exception as exc:  # the store is down or older than the directory: the other sources still count
        log.info("hitl: the user directory is not readable: %s", type(exc).__name__)
        return []


def emails_for(
    approvers: Sequence[dict[str, str]], owner: str | None, *, dag_id: str | None = None, store: Any = None
) -> list[str]:
    direct = [a["email"] for a in approvers if "email" in a]
    users = [a["userId"] for a in approvers if "userId" in a]
    roles = [a["role"] for a in approvers if "role" in a]
    overrides = user_directory()
    known = _directory(users, roles, direct, store)
    by_name = {u.username: u for u in known}
    hidden = {u.username for u in known if dag_id is not None and not u.may_read(dag_id)}
    hidden_emails = {(u.email or "").lower() for u in known if u.username in hidden}
    wanted_roles = {r.lower() for r in roles}
    missing = [u for u in users if u not in by_name]
    roles_known = any(u.roles & wanted_roles for u in known)
    live_roles = [] if roles_known else list(roles)
    fab = _fab_emails(missing, live_roles) if missing or live_roles else {}
    resolved = (
        [e for e in direct if e.lower() not in hidden_emails]
        + [
            overrides.get(u) or (by_name[u].email if u in by_name else None) or fab.get(u, "")
            for u in users
            if u not in hidden
        ]
        + [u.email or "" for u in known if u.roles & wanted_roles and u.username not in hidden]  # role members
        + [e for k, e in fab.items() if k.startswith("role:")]
    )
    emails = list(dict.fromkeys(e for e in resolved if e))
    if emails:
        return emails
    if owner and "@" in owner:
        return [owner]
    fallback = setting("fallback_email")
    return [fallback] if fallback else []
