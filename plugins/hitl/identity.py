"""Who a reviewer is (name, email, roles) and whether they may decide a request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hitl.settings import setting

ADMIN_ROLES = frozenset({"admin"})
VIEWER_ROLES = frozenset({"viewer"})


@dataclass(frozen=True)
class Reviewer:
    """A person as Airflow's auth manager describes them, asked once per call (``hitl.airflow_users``).

    ``dags``: the DAGs this person may read (``None``: not narrowed, for the store's own callers such as
    tests and the policy); a request of any other DAG does not exist for them. ``decide_permission``: what
    the auth manager says of deciding at all (FAB's "can edit on Approvals"); ``False`` reads only.
    """

    name: str
    email: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    dags: frozenset[str] | None = None
    decide_permission: bool = True

    @property
    def is_admin(self) -> bool:
        return bool(self.roles & ADMIN_ROLES)

    @property
    def can_decide_anything(self) -> bool:
        """Viewers read; they never decide, whatever a spec lists; nor does a user the auth manager refuses."""
        return self.decide_permission and not (self.roles and self.roles <= VIEWER_ROLES)

    def may_read(self, dag_id: str) -> bool:
        """Whether requests of ``dag_id`` exist for this reviewer (Airflow lets them read the DAG)."""
        return self.dags is None or dag_id in self.dags


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

    pairs = (p.partition(":") for p in setting("user_emails").split(",") if ":" in p)
    return {user.strip(): email.strip() for user, _, email in pairs}


def fab_user_filter(user_model: Any, *, username: str | None = None, email: str | None = None) -> Any:
    """The WHERE clause for one FAB user: the exact name, or the exact email ignoring case.

    Never LIKE/ILIKE: ``_`` and ``%`` in an address from Slack would be wildcards (``a_ice@...``
    would find ``alice@...``)."""
    from sqlalchemy import func

    if username:
        return user_model.username == username
    return func.lower(user_model.email) == (email or "").strip().lower()


def lookup_reviewer(name: str) -> Reviewer:
    """A reviewer by user name without asking an auth manager: SimpleAuthManager's user list and ``user_emails``.

    The CLI's ``--user`` under auth managers other than FAB (``hitl.airflow_users.asserted_reviewer``)."""
    from hitl.config import conf_get

    email = user_directory().get(name)
    for entry in conf_get("core", "simple_auth_manager_users", "").split(","):
        user, _, role = entry.strip().partition(":")
        if user == name and role:
            return Reviewer(name, email, frozenset({role.strip().lower()}))
    return Reviewer(name, email)


def same_address(a: str, b: str) -> bool:
    """Two email addresses are one: plain ASCII both, equal ignoring ASCII case. Unicode case folding never counts
    (``"\u212aate@x".lower()`` is ``"kate@x"``: a look-alike account must not become kate)."""
    a, b = a.strip(), b.strip()
    return a.isascii() and b.isascii() and a.lower() == b.lower()


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
        if "email" in entry and reviewer.email and same_address(entry["email"], reviewer.email):
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
