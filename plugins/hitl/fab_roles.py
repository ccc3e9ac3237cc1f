"""``python -m hitl roles sync``: the reviewer roles under FabAuthManager, with exactly what reviewing needs.

Under FabAuthManager a reviewer needs more than the plugin's own permissions: Airflow 3's UI shows the
"Approvals" entry only with "can read on Plugins" (without it ``/plugin/approvals`` is a 404 although both
Approvals permissions are granted), and every page of Airflow's shell asks for "can read on Website". This
module writes two roles through FAB's own security manager (the one ``airflow roles`` uses), so an operator
runs one command instead of assembling permissions by hand:

- ``ApprovalReader``: reads the inbox and requests, and comments (commenting is reading: it never decides);
- ``ApprovalDecider``: the same, and may decide ("can edit on Approvals"). The specs' approver lists still
  say *which* requests a decider may decide.

With ``--dag DAG_ID`` (repeatable) both roles may also read those DAGs' runs, task instances and XComs, so
the review page shows the outputs that fed the gated step (``hitl.views.run_facts.dag_access`` asks Airflow
exactly that); ``--all-dags`` grants it for every DAG. Without either, reviewers see the request and its
output but not the DAG's other outputs.

Sync makes each role hold *exactly* these permissions: it creates a missing role, adds what is missing and
removes what is extra (and says so), so running it again after an upgrade is the way to update the roles.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hitl.views.auth import RESOURCE

READER_ROLE = "ApprovalReader"
DECIDER_ROLE = "ApprovalDecider"
CAN_READ, CAN_EDIT = "can_read", "can_edit"
# FAB's resource names (airflow.providers.fab.www.security.permissions), spelled here so that building the
# plan (and the CLI's --help) does not import FAB.
PLUGINS, WEBSITE = "Plugins", "Website"
DAGS, DAG_PREFIX, DAG_RUNS, TASK_INSTANCES, XCOMS = "DAGs", "DAG:", "DAG Runs", "Task Instances", "XComs"

Permission = tuple[str, str]  # (action, resource), as FAB stores it


def reader_permissions(dag_ids: Iterable[str] = (), all_dags: bool = False) -> set[Permission]:
    """What reading (and commenting on) approvals needs, plus read access to the given DAGs' runs and outputs."""
    wanted = {(CAN_READ, RESOURCE), (CAN_READ, PLUGINS), (CAN_READ, WEBSITE)}
    dags = [DAGS] if all_dags else [f"{DAG_PREFIX}{dag_id}" for dag_id in dag_ids]
    if dags:  # FAB asks for both: the sub-entity (runs, XComs) and the DAG itself
        wanted |= {(CAN_READ, DAG_RUNS), (CAN_READ, TASK_INSTANCES), (CAN_READ, XCOMS)}
        wanted |= {(CAN_READ, dag) for dag in dags}
    return wanted


def decider_permissions(dag_ids: Iterable[str] = (), all_dags: bool = False) -> set[Permission]:
    return reader_permissions(dag_ids, all_dags) | {(CAN_EDIT, RESOURCE)}


@dataclass
class RoleChange:
    role: str
    created: bool = False
    added: list[Permission] = field(default_factory=list)
    removed: list[Permission] = field(default_factory=list)
    kept: int = 0

    def line(self) -> str:
        what = "created" if self.created else ("updated" if self.added or self.removed else "unchanged")
        parts = [f"{self.role}: {what}, {self.kept + len(self.added)} permissions"]
        if self.added:
            parts.append("added " + ", ".join(_shown(p) for p in self.added))
        if self.removed:
            parts.append("removed " + ", ".join(_shown(p) for p in self.removed))
        return "; ".join(parts)


def _shown(permission: Permission) -> str:
    action, resource = permission
    return f"{action.replace('_', ' ')} on {resource}"


def sync_role(sm: Any, name: str, wanted: set[Permission]) -> RoleChange:
    """Make FAB role ``name`` hold exactly ``wanted``, through the security manager ``sm``."""
    change = RoleChange(role=name)
    role = sm.find_role(name)
    if role is None:
        role = sm.add_role(name)
        change.created = True
    have = {(p.action.name, p.resource.name): p for p in role.permissions}
    for permission in sorted(wanted - have.keys()):
        sm.add_permission_to_role(role, sm.create_permission(*permission))
        change.added.append(permission)
    for permission in sorted(have.keys() - wanted):
        sm.remove_permission_from_role(role, have[permission])
        change.removed.append(permission)
    change.kept = len(wanted & have.keys())
    return change


def sync_roles(
    sm: Any,
    *,
    dag_ids: Iterable[str] = (),
    all_dags: bool = False,
    reader: str = READER_ROLE,
    decider: str = DECIDER_ROLE,
) -> list[RoleChange]:
    dag_ids = list(dag_ids)
    return [
        sync_role(sm, reader, reader_permissions(dag_ids, all_dags)),
        sync_role(sm, decider, decider_permissions(dag_ids, all_dags)),
    ]


class NotFab(Exception):
    """The deployment does not use FabAuthManager: there are no FAB roles to write."""


def _check_fab() -> None:
    from hitl.config import conf_get

    manager = conf_get("core", "auth_manager", "")
    if not manager.endswith("FabAuthManager"):
        raise NotFab(
            f"[core] auth_manager is {manager or '(not set)'}: reviewer roles are FabAuthManager's; with"
            " SimpleAuthManager every logged-in user reads Approvals and the specs' approver lists say who decides"
        )


def run(*, dag_ids: list[str], all_dags: bool, reader: str, decider: str) -> list[RoleChange]:
    """Sync the roles in Airflow's metadata database, with FAB's security manager in Airflow's own app context."""
    _check_fab()
    import logging
    import warnings

    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    logging.disable(logging.WARNING)  # FAB logs every permission it touches; the command prints a summary
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with get_application_builder() as appbuilder:
                missing = [d for d in dag_ids if not _dag_known(d)]
                changes = sync_roles(appbuilder.sm, dag_ids=dag_ids, all_dags=all_dags, reader=reader, decider=decider)
    finally:
        logging.disable(logging.NOTSET)
    if missing:
        print(
            f"note: no DAG {', '.join(missing)} in Airflow's database yet; its permission is granted anyway",
            file=sys.stderr,
        )
    return changes


def _dag_known(dag_id: str) -> bool:
    try:
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session

        with create_session() as session:
            return session.get(DagModel, dag_id) is not None
    except Exception:  # cannot tell: say nothing
        return True
