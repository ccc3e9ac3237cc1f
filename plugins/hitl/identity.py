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


def _fab_reviewer(*, username: str | None = None, email: str | None = None) -> Reviewer | None:
    """A FAB user by name or email, where this process may read Airflow's database (not in task code)."""
    try:
        from airflow.providers.fab.auth_manager.models import User
        from airflow.utils.session import create_session

        with create_session() as session:
            query = session.query(User)
            query = query.filter(User.username == username) if username else query.filter(User.email.ilike(email or ""))
            user = query.one_or_none()
            if user is None:
                return None
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
    """The Airflow user with this email (how Slack users are mapped): FAB's users, else ``user_emails``."""
    if _uses_fab():
        fab = _fab_reviewer(email=email)
        if fab is not None:
            return fab
    for name, known in user_directory().items():
        if known.lower() == email.lower():
            return lookup_reviewer(name)
    return None


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
