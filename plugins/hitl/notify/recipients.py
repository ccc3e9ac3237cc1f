"""Email addresses of the people a request should reach.

Approvers listed by ``email`` are used as given. Approvers listed by ``userId`` or ``role``
are looked up in FAB's users where this process may read Airflow's database (not inside a
task), then in ``[hitl] user_emails`` (``alice:alice@example.com,bob:bob@example.com``).
With nobody resolvable, the workflow's ``owner`` is used when it is an address, then
``[hitl] fallback_email``.
"""

from __future__ import annotations

from collections.abc import Sequence

from hitl.config import conf_get
from hitl.identity import user_directory


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


def emails_for(approvers: Sequence[dict[str, str]], owner: str | None) -> list[str]:
    direct = [a["email"] for a in approvers if "email" in a]
    users = [a["userId"] for a in approvers if "userId" in a]
    roles = [a["role"] for a in approvers if "role" in a]
    directory = user_directory()
    fab = _fab_emails(users, roles) if users or roles else {}
    resolved = (
        direct
        + [fab.get(u) or directory.get(u, "") for u in users]
        + [e for k, e in fab.items() if k.startswith("role:")]
    )
    emails = list(dict.fromkeys(e for e in resolved if e))
    if emails:
        return emails
    if owner and "@" in owner:
        return [owner]
    fallback = conf_get("hitl", "fallback_email", "")
    return [fallback] if fallback else []
