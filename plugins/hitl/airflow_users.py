"""Who a user is, asked of Airflow's auth manager: the one place a ``Reviewer`` is built from an Airflow user.

Every inbound channel gets its reviewer here: the pages and the JSON API from the login token, Slack from the
Slack account's email, the CLI from ``--user``, an @mention from the name. The same questions are asked of
whichever auth manager runs (FAB, SimpleAuthManager, any other), so no channel grants more than another:

- the roles (what a spec's ``approvers: [{role: ...}]`` match);
- may they decide at all: under FAB "can edit on Approvals" (``RESOURCE``); other auth managers leave it to the
  approver rules;
- which DAGs they may read: of the DAGs the caller asks about (the store's workflows, or one request's), those
  ``filter_authorized_dag_ids`` allows (with each DAG's team in Airflow's multi-team mode). A request of any
  other DAG does not exist for them (``hitl.access``).

Only processes that may use Airflow's database call this (the api-server, the CLI); task code never does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Literal

from sqlalchemy import select

from hitl.identity import Reviewer, reviewer_from_user, same_address, user_directory
from hitl.store.directory import DirectoryUser

log = logging.getLogger(__name__)
RESOURCE = "Approvals"  # FAB permission resource: "can read on Approvals", "can edit on Approvals"


def auth_manager() -> Any:
    """The running auth manager: the api-server's own, or (in the CLI) one made from ``[core] auth_manager``."""
    from airflow.api_fastapi.app import create_auth_manager

    return create_auth_manager()  # the api-server's instance when it exists (a cached singleton of that class)


def _initialized_auth_manager(wait: float) -> Any | None:
    """The process's own auth manager once it has made and initialized it (never made here), or None."""
    from airflow.api_fastapi.app import get_auth_manager

    deadline = time.monotonic() + wait
    while True:
        try:
            return get_auth_manager()
        except RuntimeError:
            if time.monotonic() >= deadline:
                return None
            time.sleep(1)


def uses_fab() -> bool:
    """``[core] auth_manager`` is FAB's (read from the configuration: no auth manager is made to ask)."""
    from hitl.config import conf_get

    return "fab" in conf_get("core", "auth_manager", "").lower()


class UnknownUser(LookupError):
    """The CLI's ``--user`` names nobody the auth manager knows."""


def authorized(user: Any, method: Literal["GET", "PUT"]) -> bool:
    """FAB roles: reading approvals needs "can read on Approvals", deciding "can edit on Approvals".

    SimpleAuthManager ignores the method for custom views: there any logged-in user reads, and who
    decides is left to the approver rules alone.
    """
    manager = auth_manager()
    if type(manager).__name__ != "FabAuthManager":
        return True
    try:
        return bool(manager.is_authorized_custom_view(method=method, resource_name=RESOURCE, user=user))
    except Exception:  # pragma: no cover - an auth manager without custom views
        return False


def _teams(dag_ids: set[str]) -> dict[str, str | None]:
    """Each DAG's team in Airflow's multi-team mode (``[core] multi_team``), as Airflow's API asks with it."""
    from hitl.config import conf_get

    if conf_get("core", "multi_team", "False").strip().lower() not in ("true", "1"):
        return {}
    from airflow.models.dag import DagModel

    return DagModel.get_dag_id_to_team_name_mapping(sorted(dag_ids))


def readable_dags(user: Any, among: Iterable[str], *, manager: Any = None) -> frozenset[str]:
    """Which of the DAGs ``among`` (the store's workflows, or one request's) Airflow lets ``user`` read.

    Asked per DAG of the auth manager (``filter_authorized_dag_ids``, with the DAG's team), so a DAG that is no
    longer in Airflow's database is still readable by whoever may read every DAG, and by nobody else.
    An auth manager that cannot say: none."""
    wanted = set(among)
    if not wanted:
        return frozenset()
    try:
        teams = _teams(wanted)
        by_team: dict[str | None, set[str]] = defaultdict(set)
        for dag_id in wanted:
            by_team[teams.get(dag_id)].add(dag_id)
        manager = manager or auth_manager()
        found: set[str] = set()
        for team, ids in by_team.items():
            found |= manager.filter_authorized_dag_ids(dag_ids=ids, user=user, method="GET", team_name=team)
        return frozenset(found)
    except Exception as exc:
        log.warning("hitl: could not ask which DAGs %s may read (%s): none", _name(user), type(exc).__name__)
        return frozenset()


def reviewer_of(user: Any, among: Iterable[str]) -> Reviewer:
    """The reviewer an auth manager's user is: name, email, roles, decide permission, and which of the DAGs
    ``among`` they may read (every other DAG's requests do not exist for them)."""
    return replace(reviewer_from_user(user), dags=readable_dags(user, among), decide_permission=authorized(user, "PUT"))


def _name(user: Any) -> str:
    return user.get_name() if hasattr(user, "get_name") else str(user)


def _fab_reviewer(*, among: Iterable[str], username: str | None = None, email: str | None = None) -> Reviewer | None:
    """A FAB user by exact name or exact ASCII email (case ignored), asked of the auth manager inside the session."""
    from airflow.providers.fab.auth_manager.models import User
    from airflow.utils.session import create_session

    from hitl.identity import fab_user_filter

    with create_session() as session:
        users = session.query(User).filter(fab_user_filter(User, username=username, email=email)).limit(2).all()
        if len(users) != 1:  # none, or two accounts whose emails differ only in case: nobody
            return None
        if not users[0].is_active:  # Airflow refuses a deactivated user its login: so do Slack and the CLI
            return None
        if email is not None and not same_address(users[0].email or "", email):
            return None  # the database folded a stored non-ASCII address (PostgreSQL's lower()): not this user
        return reviewer_of(users[0], among)  # roles and permissions load while the session is open


def _simple_reviewer(name: str, among: Iterable[str]) -> Reviewer | None:
    """A SimpleAuthManager user (``[core] simple_auth_manager_users``, ``name:role``) asked of the auth manager."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from hitl.config import conf_get

    directory = user_directory()
    for entry in conf_get("core", "simple_auth_manager_users", "").split(","):
        user, _, role = entry.strip().partition(":")
        if user == name and role.strip():
            reviewer = reviewer_of(SimpleAuthManagerUser(username=name, role=role.strip()), among)
            return replace(reviewer, email=directory.get(name) or reviewer.email)
    if name in directory:  # known by ``[hitl] user_emails`` alone: read as a viewer would, never more
        return replace(reviewer_of(SimpleAuthManagerUser(username=name, role="viewer"), among), roles=frozenset())
    return None


def reviewer_named(name: str, among: Iterable[str]) -> Reviewer | None:
    """The Airflow user called ``name`` (which of ``among`` may they read?), or ``None`` when there is nobody."""
    if not name:
        return None
    if uses_fab():
        return _fab_reviewer(username=name, among=among)
    return _simple_reviewer(name, among)


def reviewer_with_email(email: str, among: Iterable[str]) -> Reviewer | None:
    """The one Airflow user with exactly this address (how Slack accounts are mapped), else ``None``.

    Only plain ASCII addresses match: an address with any other character (a KELVIN SIGN folding to ``k``) is
    nobody, so a look-alike Slack account never becomes an Airflow user.
    """
    wanted = (email or "").strip()
    if not wanted or not wanted.isascii():
        return None
    if uses_fab():
        return _fab_reviewer(email=wanted, among=among)
    matches = [name for name, known in user_directory().items() if same_address(known, wanted)]
    return _simple_reviewer(matches[0], among) if len(matches) == 1 else None


def asserted_reviewer(name: str, among: Iterable[str]) -> Reviewer:
    """The CLI's ``--user``: asserted by whoever holds the store's credentials (the CLI has no login).

    Under FAB the name must be a FAB user, and is then asked of the auth manager as a page's user is: its roles
    must let it decide ("can edit on Approvals"), and it sees only the DAGs it may read. Under other auth
    managers the name is taken as given (SimpleAuthManager lets every user read every DAG), with the roles
    of ``[core] simple_auth_manager_users``. Either way the audit records the decision as the CLI's.
    """
    from hitl.identity import lookup_reviewer

    if uses_fab():
        found = _fab_reviewer(username=name, among=among)
        if found is None:
            raise UnknownUser(f"no Airflow user named {name!r} (FabAuthManager): --user must be a FAB user name")
        return found
    return lookup_reviewer(name)


# -- the directory: these answers, written to the store for task code (hitl.store.directory) ----------------------
EVERY_DAG = "~hitl: a DAG nobody is granted by name~"  # readable only by a user who may read every DAG


def _directory_user(user: Any, among: Iterable[str]) -> DirectoryUser:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    reviewer = reviewer_of(user, among)
    try:
        every = bool(auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=EVERY_DAG), user=user))
    except Exception:
        every = False
    return DirectoryUser(reviewer.name, reviewer.email, reviewer.roles, every, reviewer.dags or frozenset())


def directory_users(among: Iterable[str]) -> list[DirectoryUser]:
    """Every user the auth manager knows, as the directory holds them: FAB's active users, or SimpleAuthManager's
    ``simple_auth_manager_users`` (emails from ``[hitl] user_emails``)."""
    among = sorted(set(among))
    if uses_fab():
        from airflow.providers.fab.auth_manager.models import User
        from airflow.utils.session import create_session

        with create_session() as session:
            return [_directory_user(u, among) for u in session.query(User).filter(User.active.is_(True)).all()]
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from hitl.config import conf_get

    directory = user_directory()
    found = []
    for entry in conf_get("core", "simple_auth_manager_users", "").split(","):
        name, _, role = entry.strip().partition(":")
        if name and role.strip():
            user = _directory_user(SimpleAuthManagerUser(username=name, role=role.strip()), among)
            found.append(replace(user, email=directory.get(name) or user.email))
    return found


def known_dags(store: Any) -> set[str]:
    """The DAGs a directory entry is asked about: the store's workflows, Airflow's DAGs, and under FAB every DAG a
    role is granted by name (``DAG:<id>``, also before the DAG is parsed: ``roles sync --dag`` grants it early)."""
    dags = set(store.dag_ids())
    try:
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session

        with create_session() as session:
            dags |= set(session.scalars(select(DagModel.dag_id)))
            if uses_fab():
                from airflow.providers.fab.auth_manager.models import Resource

                prefix = "DAG:"
                names = session.scalars(select(Resource.name).where(Resource.name.startswith(prefix)))
                dags |= {n[len(prefix) :] for n in names}
    except Exception as exc:  # the store's workflows still count
        log.debug("hitl: Airflow's DAG list is not readable here: %s", exc)
    return dags


def sync_directory(store: Any) -> int:
    """Write every user's email, roles and readable DAGs to the store (for task code); the count written."""
    from hitl.store.directory import replace_all

    return replace_all(store.write_engine, directory_users(known_dags(store)))


_refreshing = threading.Lock()
_last_refresh = [float("-inf")]


def refresh_directory_soon(store: Any) -> None:
    """Under FAB, at most every ``[hitl] directory_refresh`` seconds (default 300; 0: never), sync the directory in
    a thread.

    Called by the api-server when the plugin loads and on its pages, so the directory follows FAB's users without
    a cron job; ``python -m hitl users sync`` does it at once. Other auth managers need none: their users and
    ``[hitl] user_emails`` are in the configuration, which task code reads. The thread never makes an auth
    manager: it waits for the api-server's own to be initialized (making one beside it at start-up hangs it)."""
    from hitl.settings import number

    every = number("directory_refresh")
    now = time.monotonic()
    if every <= 0 or not uses_fab() or now - _last_refresh[0] < every or not _refreshing.acquire(blocking=False):
        return
    _last_refresh[0] = now

    def run() -> None:
        try:
            if _initialized_auth_manager(wait=120) is None:
                log.warning("hitl: the auth manager was not ready within 120 s; the user directory was not synced")
                return
            count = sync_directory(store)
            log.info("hitl: user directory synced (%d users)", count)
        except Exception as exc:
            log.warning("hitl: could not sync the user directory: %s", str(exc).splitlines()[0] if str(exc) else exc)
        finally:
            _refreshing.release()

    threading.Thread(target=run, name="hitl-user-directory", daemon=True).start()
