"""Who a reviewer is (name, email, roles) and whether they may decide a request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ADMIN_ROLES = frozenset({"admin"})
VIEWER_ROLES = frozenset({"viewer"})


@dataclass(frozen=True)
class Reviewer:
    name: str
    email: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return bool(self.roles & ADMIN_ROLES)

    @property
    def can_decide_anything(self) -> bool:
        """Viewers read; they never decide, whatever a spec lists."""
        return not (self.roles and self.roles <= VIEWER_ROLES)


def reviewer_from_user(user: Any) -> Reviewer:
    """Map an auth manager's user (SimpleAuthManager or FAB) to a Reviewer."""
    name = user.get_name() if hasattr(user, "get_name") else str(user)
    roles: set[str] = set()
    if getattr(user, "role", None):  # SimpleAuthManagerUser
        roles.add(str(user.role).lower())
    for role in getattr(user, "roles", None) or []:  # FAB User
        roles.add(str(getattr(role, "name", role)).lower())
    return Reviewer(name=name, email=getattr(user, "email", None) or None, roles=frozenset(roles))


def user_directory() -> dict[str, str]:
    """``[hitl] user_emails`` (``alice:alice@example.com,...``): emails of users the auth manager has none for."""
    from hitl.config import conf_get

    pairs = (p.partition(":") for p in conf_get("hitl", "user_emails", "").split(",") if ":" in p)
    return {user.strip(): email.strip() for user, _, email in pairs}


def _uses_fab() -> bool:
    from hitl.config import conf_get

    return "fab" in conf_get("core", "auth_manager", "").lower()


def fab_user_filter(user_model: Any, *, username: str | None = None, email: str | None = None) -> Any:
    """The WHERE clause for one FAB user: the exact name, or the exact email ignoring case.

    Never LIKE/ILIKE: ``_`` and ``%`` in an address from Slack would be wildcards (``a_ice@...``
    would find ``alice@...``)."""
    from sqlalchemy import func

    if username:
        return user_model.username == username
    return func.lower(user_model.email) == (email or "").strip().lower()


def _fab_reviewer(*, username: str | None = None, email: str | None = None) -> Reviewer | None:
    """A FAB user by name or email, where this process may read Airflow's database (not in task code)."""
    if not username and not (email or "").strip():
        return None
    try:
        from airflow.providers.fab.auth_manager.models import User
        from airflow.utils.session import create_session

        with create_session() as session:
            users = session.query(User).filter(fab_user_filter(User, username=username, email=email)).limit(2).all()
            if len(users) != 1:  # none, or two accounts whose emails differ only in case: nobody
                return None
            user = users[0]
            return Reviewer(user.username, user.email, frozenset(r.name.lower() for r in user.roles))
    except Exception:
        return None


def lookup_reviewer(name: str) -> Reviewer:
    """A reviewer by user name (for the CLI): FAB's users, else SimpleAuthManager's user list and ``user_emails``."""
    from hitl.config import conf_get

    if _uses_fab():
        fab = _fab_reviewer(username=name)
        if fab is not None:
            return fab
    email = user_directory().get(name)
    for entry in conf_get("core", "simple_auth_manager_users", "").split(","):
        user, _, role = entry.strip().partition(":")
        if user == name and role:
            return Reviewer(name, email, frozenset({role.strip().lower()}))
    return Reviewer(name, email)


def reviewer_by_email(email: str) -> Reviewer | None:
    """The Airflow user with exactly this email, ignoring case (how Slack users are mapped): FAB's users,
    else ``user_emails``."""
    wanted = (email or "").strip().lower()
    if not wanted:
        return None
    if _uses_fab():
        fab = _fab_reviewer(email=wanted)
        if fab is not None:
            return fab
    matches = [name for name, known in user_directory().items() if known.lower() == wanted]
    return lookup_reviewer(matches[0]) if len(matches) == 1 else None


def may_decide(reviewer: Reviewer, approvers: Sequence[dict[str, str]], extra: Sequence[dict[str, str]] = ()) -> bool:
    """Listed approvers decide; with none listed, admins do; viewers never do."""
    if not reviewer.can_decide_anything:
        return False
    listed = list(approvers) + list(extra)
    if not listed:
        return reviewer.is_admin
    for entry in listed:
        if "userId" in entry and entry["userId"] == reviewer.name:
            return True
        if "email" in entry and reviewer.email and entry["email"].lower() == reviewer.email.lower():
            return True
        if "role" in entry and entry["role"].lower() in reviewer.roles:
            return True
    return False


def describe_approvers(approvers: Sequence[dict[str, str]]) -> str:
    if not approvers:
        return "admins"
    parts = []
    for a in approvers:
        if "userId" in a:
            parts.append(a["userId"])
        elif "email" in a:
            parts.append(a["email"])
        elif "role" in a:
            parts.append(f"role:{a['role']}")
    return ", ".join(parts)
