"""ApprovalSensor: turns the step before it into an approval gate.

It snapshots the gated step's output into the decision store, then defers to
``ApprovalTrigger`` and holds no worker slot until someone decides. The trigger ends the
task itself: approved -> success with the approved (maybe edited) output as its XCom;
rejected -> skipped, so downstream steps do not run and the run is not failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from hitl.outputs import detect_kind, summarize


class ApprovalSensor(BaseOperator):
    ui_color = "#fde68a"
    template_fields: Sequence[str] = ()

    def __init__(
        self,
        *,
        step_id: str,
        approve_label: str = "Approve",
        approvers: list[dict[str, str]] | None = None,
        output_kind: str | None = None,
        min_approvals: int = 1,
        allow_self_approval: bool = True,
        gate_timeout: timedelta | None = None,
        poll_interval: float | None = None,
        workflow_owner: str | None = None,
        notify: dict[str, Any] | None = None,
        remind_after: int | None = None,
        escalate_after: int | None = None,
        escalate_to: list[dict[str, str]] | None = None,
        expire_after: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step_id = step_id
        self.approve_label = approve_label
        self.approvers = list(approvers or [])
        self.output_kind = output_kind
        self.min_approvals = min_approvals
        self.allow_self_approval = allow_self_approval
        self.gate_timeout = gate_timeout
        self.poll_interval = poll_interval
        self.workflow_owner = workflow_owner
        self.notify = dict(notify or {})
        self.remind_after = remind_after
        self.escalate_after = escalate_after
        self.escalate_to = list(escalate_to or [])
        self.expire_after = expire_after

    def execute(self, context: Any) -> Any:
        from hitl.store import APPROVED, PENDING, REJECTED, GateRequest, get_store

        ti = context["ti"]
        output = ti.xcom_pull(task_ids=self.step_id)
        kind = self.output_kind or detect_kind(output)
        dag_run = context["dag_run"]
        store = get_store()
        req, created = store.record_request(
            GateRequest(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                step_id=self.step_id,
                gate_task_id=ti.task_id,
                map_index=ti.map_index if ti.map_index is not None else -1,
                try_number=ti.try_number,
                output=output,
                output_kind=kind,
                summary=summarize(output, kind),
                approve_label=self.approve_label,
                approvers=self.approvers,
                min_approvals=self.min_approvals,
                allow_self_approval=self.allow_self_approval,
                triggered_by=getattr(dag_run, "triggering_user_name", None),
                owner=self.workflow_owner,
                notify=self.notify,
                remind_after=self.remind_after,
                escalate_after=self.escalate_after,
                escalate_to=self.escalate_to,
                expire_after=self.expire_after,
            )
        )
        if created:
            self.log.info("Approval request %s recorded for %s (%s): %s", req.id, self.step_id, kind, req.summary)
            self._notify(req)
        else:
            self.log.info("Approval request %s already exists for this output (status %s)", req.id, req.status)
        if req.status == APPROVED:
            self.log.info("Already approved by %s at %s", req.decided_by, req.decided_at)
            return req.final_output
        if req.status == REJECTED:
            return self._rejected(req.decided_by, req.decided_at, req.comment)
        assert req.status == PENDING
        self._defer(req.id)

    def _defer(self, request_id: int) -> None:
        from hitl.trigger import ApprovalTrigger

        self.defer(
            trigger=ApprovalTrigger(request_id=request_id, poll_interval=self.poll_interval),
            method_name="execute_complete",
            kwargs={"request_id": request_id},
            timeout=self.gate_timeout,
        )

    def _notify(self, req: Any) -> None:
        """Tell the approvers; a channel that is down never fails the gate."""
        try:
            from hitl.notify import notify_requested

            notify_requested(req)
        except Exception as exc:
            self.log.warning("Notifying approvers of request %s failed: %s", req.id, exc)

    def _rejected(self, by: Any, at: Any, reason: Any) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        self.log.info("Rejected by %s at %s. Reason: %s", by, at, reason)
        raise AirflowSkipException(f"Rejected by {by} at {at}: {reason}")

    def execute_complete(self, context: Any, event: Any = None, request_id: int | None = None) -> Any:
        """Back on a worker: the request was superseded, or the trigger ran inline (``dag.test()``).

        Reads the decision from the store rather than trusting the event, so both cases end the same way.
        """
        from hitl.store import APPROVED, REJECTED, get_store

        if isinstance(event, dict) and event.get("request_id"):
            request_id = int(event["request_id"])
        store = get_store()
        ti = context["ti"]
        map_index = ti.map_index if ti.map_index is not None else -1
        current = store.current_for_gate(ti.dag_id, ti.run_id, ti.task_id, map_index)
        if current is None:
            raise RuntimeError(f"no approval request for {ti.dag_id}/{ti.run_id}/{ti.task_id} in the decision store")
        if request_id is not None and current.id != request_id:
            self.log.info("Approval request %s was superseded by %s", request_id, current.id)
        if current.status == APPROVED:
            self.log.info("Approved by %s at %s", current.decided_by, current.decided_at)
            return current.final_output
        if current.status == REJECTED:
            return self._rejected(current.decided_by, current.decided_at, current.comment)
        self._defer(current.id)
