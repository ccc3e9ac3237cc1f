"""Who a reviewer is (name, email, roles) and whether they may decide a request."""

from __future__ import annotations

import os
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


def lookup_reviewer(name: str) -> Reviewer:
    """A reviewer by user name, for the CLI: roles from SimpleAuthManager's user list or FAB's users."""
    users = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS")
    auth_manager = os.environ.get("AIRFLOW__CORE__AUTH_MANAGER", "")
    if users is None or "fab" in auth_manager.lower():
        try:
            from airflow.configuration import conf

            auth_manager = conf.get("core", "auth_manager", fallback="") or ""
            users = conf.get("core", "simple_auth_manager_users", fallback="") if users is None else users
        except Exception:
            users = users or ""
    if "fab" in auth_manager.lower():
        fab = _fab_reviewer(name)
        if fab is not None:
            return fab
    for entry in (users or "").split(","):
        user, _, role = entry.strip().partition(":")
        if user == name:
            return Reviewer(name=name, roles=frozenset({role.strip().lower()}) if role else frozenset())
    return Reviewer(name=name)


def _fab_reviewer(name: str) -> Reviewer | None:
    try:
        from airflow.providers.fab.auth_manager.models import User
        from airflow.utils.session import create_session

        with create_session() as session:
            user = session.query(User).filter(User.username == name).one_or_none()
            if user is None:
                return None
            return Reviewer(name=name, email=user.email, roles=frozenset(r.name.lower() for r in user.roles))
    except Exception:
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
