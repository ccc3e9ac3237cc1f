"""The gate inside Airflow's own screens: the "Review" button on the gate task, and the gate on Required Actions.

**Review link.** ``ReviewLink`` is the gate task's operator extra link (Airflow's standard button on the task
page). Airflow 3.3 resolves an operator's own extra links from XCom: the worker calls ``get_link`` when the task
ends a try (also when it defers) and stores the URL under the link's ``xcom_key``; the api-server only reads
it back. So the link names the request the gate parked on, read from the decision store in the worker.

**Required Actions.** While a gate waits, the sensor writes an Airflow HITL record for its task instance
through the task SDK (``upsert_hitl_detail``, the supervisor's Execution API call that Airflow's own
``HITLOperator`` makes). Airflow's Required Actions page and the task's Required Action tab list the gate,
with a link to the review page in its body.

**An answer given there is refused, never counted** (see the README, "Required Actions in Airflow"): Airflow's
``PATCH .../hitlDetails`` writes the response and resumes the task itself, before any of this plugin's code
runs, with Airflow's DAG-level HITL permission as the only check. The one place the plugin sees that answer is
the worker, where Airflow's database and auth manager may not be used: roles and admin/viewer status (how the
review page applies the approver rules) cannot be resolved there, and Airflow's form has no edits, no quorum
progress and no output hash. So the worker logs the answer with a pointer to the review page, audits it as
``refused`` (channel ``airflow_required_actions``), reopens the HITL record (the same upsert clears a
response) and parks the gate again. Only the decision service ends a gate.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseOperatorLink

from hitl.markdown import md_text

log = logging.getLogger(__name__)

REVIEW_LINK_NAME = "Review"
NATIVE_CHANNEL = "airflow_required_actions"
# The one option Airflow's form offers, named for what pressing it does: nothing is decided, the gate refuses the
# answer and asks again. The body's first line is the link where the decision is made.
NATIVE_OPTION = "Not a decision: refused, asks again"


def review_page_url(request_id: int) -> str:
    """The review page of a request (no signed token: opening it needs a login, deciding needs the rules)."""
    from hitl.notify.links import page_url

    return page_url(request_id)


def gate_request_id(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> int | None:
    """The request the gate task instance waits on (or last waited on), from the decision store."""
    from hitl.store import get_store

    req = get_store().current_for_gate(dag_id, run_id, task_id, map_index if map_index is not None else -1)
    return req.id if req is not None else None


class ReviewLink(BaseOperatorLink):
    """The gate task's "Review" button: the review page of the request it parked on."""

    name = REVIEW_LINK_NAME

    @property
    def operators(self) -> list[type[Any]]:  # type: ignore[override]
        from hitl.sensor import ApprovalSensor

        return [ApprovalSensor]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        try:
            request_id = gate_request_id(ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index)
        except Exception as exc:  # the store is down: no link this time, never a failed task
            log.warning("no review link for %s: %s", ti_key, exc)
            return ""
        return review_page_url(request_id) if request_id is not None else ""


def _body(req: Any, url: str) -> str:
    """Markdown for Airflow's Required Actions page: what waits, and where to decide."""
    from hitl.identity import describe_approvers

    deadline = req.deadline()
    due = f"\n\n**Deadline:** {deadline[0]:%Y-%m-%d %H:%M} UTC ({deadline[1]})" if deadline else ""
    return (
        f"### [Review and decide on the review page \u2192]({url})\n\n"
        f"Approve, edit or reject there. The button below (\u201c{NATIVE_OPTION}\u201d) decides nothing: the gate"
        " refuses it, this item comes back, and nothing is approved or sent.\n\n"
        f"**Step:** {md_text(req.step_id)} of {md_text(req.dag_id)}\n\n"
        f"**Output:** {md_text(req.summary)}\n\n"
        f"**Approvers:** {md_text(describe_approvers(req.approvers))}"
        + (f" ({req.min_approvals} approvals needed)" if req.min_approvals > 1 else "")
        + due
        + "\n\nThe review page applies the approver list, quorum, self-approval and deadline rules; this form"
        " cannot, so it is never counted."
    )


# The assignee of a record whose approvers Airflow cannot name (emails, roles, admins): no user has this id, so
# Airflow answers every PATCH with 403 itself. Without an assignee any user with the DAG's HITL-edit permission
# could answer, and each answer would resume the gate on a worker only to be refused: an audit and re-run storm.
NOBODY = {"id": "hitl:decide-on-the-review-page", "name": "Decide on the review page"}


def _assigned_users(req: Any) -> list[dict[str, str]]:
    """Approvers listed by user name, shown as the assignees (Airflow then lets only them answer, which is
    refused all the same); when approvers are given by email or role, nobody (``NOBODY``)."""
    users = [a["userId"] for a in req.approvers if "userId" in a]
    if not users or len(users) != len(req.approvers):
        return [dict(NOBODY)]
    return [{"id": u, "name": u} for u in users]


def publish(context: Any, req: Any) -> bool:
    """Write (or reopen) the gate's Airflow HITL record, so Required Actions lists it. Never fails the gate."""
    try:
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS  # noqa: F401 - only under a supervisor

        ti = context["ti"]
        upsert_hitl_detail(
            ti_id=ti.id,
            options=[NATIVE_OPTION],
            # Airflow's list shows the DAG in a column of its own: the subject says what waits, in few words.
            subject=" ".join(f"Review {req.step_id}: {req.summary}".split())[:250],
            body=_body(req, review_page_url(req.id)),
            params={},  # no form fields: Airflow refuses a record without a params mapping
            assigned_users=_assigned_users(req),  # type: ignore[arg-type]
        )
        return True
    except Exception as exc:
        log.warning("could not list request %s on Airflow's Required Actions: %s", getattr(req, "id", "?"), exc)
        return False


def native_answer(event: Any) -> dict[str, Any] | None:
    """The response Airflow's HITL endpoint resumed the gate with (its ``chosen_options`` event), else None."""
    if isinstance(event, dict) and "chosen_options" in event and "request_id" not in event:
        return event
    return None


def refuse(answer: dict[str, Any], req: Any, task_log: Any) -> None:
    """An answer from Required Actions: log and audit the refusal with a pointer to the review page.

    The caller parks the gate again, and ``publish`` there reopens the HITL record (the upsert clears a response)."""
    who = answer.get("responded_by_user") or {}
    name = (who.get("name") or who.get("id") or "someone") if isinstance(who, dict) else str(who)
    chosen = ", ".join(str(o) for o in answer.get("chosen_options") or []) or "nothing"
    url = review_page_url(req.id)
    task_log.warning(
        "%s answered %r in Airflow's Required Actions: that is not a decision and was refused. "
        "Decide on the review page: %s",
        name,
        chosen,
        url,
    )
    try:
        from hitl.store import get_store

        get_store().audit(
            req.id,
            "refused",
            str(name)[:200],
            action="native_answer",
            reason=f"answers in Airflow's Required Actions are not decisions: decide at {url}",
            channel=NATIVE_CHANNEL,
        )
    except Exception as exc:  # the refusal stands; only its audit line is missing
        task_log.warning("could not audit the refused answer on request %s: %s", req.id, exc)
