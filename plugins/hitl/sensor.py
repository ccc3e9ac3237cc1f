"""ApprovalSensor: turns the step before it into an approval gate.

It snapshots the gated step's output into the decision store, then defers to
``ApprovalTrigger`` and holds no worker slot until someone decides. The decision ends the
task (``hitl.gate_end``): approved -> success with the approved (maybe edited) output as its
XCom; rejected or expired -> skipped, so downstream steps do not run and the run is not failed;
the gate's ``timeout`` -> failed, and its request is closed so a late approval cannot count.

What a step after the gate acts on comes from the decision store, not from this task's state or
XCom (``hitl.guard``): ``gate.output`` resolves there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.definitions.xcom_arg import PlainXComArg

from hitl.gate import GateOptions
from hitl.native import ReviewLink
from hitl.outputs import detect_kind, summarize

# A gate that starts while the decision store is down retries instead of failing its run:
# after about 15 s, 30 s, 1 min, 2 min, 4 min (a closed request is never retried: see _end).
GATE_RETRIES = 5
GATE_RETRY_DELAY = timedelta(seconds=15)


class ApprovedOutput(PlainXComArg):
    """``gate.output``: the approved (maybe edited) output, read from the decision store when a task runs.

    Passed to a ``@task`` it gives the value the step produced (as edited), whichever route ended
    the gate; a gate forced to ``success`` without a recorded approval fails that task instead.
    """

    def resolve(self, context: Mapping[str, Any]) -> Any:
        from hitl.guard import approved_output

        operator: ApprovalSensor = self.operator  # type: ignore[assignment]
        return approved_output(operator.task_id, context, step_id=operator.step_id)


class ApprovalSensor(BaseOperator):
    """Parks the run until a person approves, rejects, or edits and approves the output of ``step_id``.

    Options: pass ``options=GateOptions(...)``, or its fields as keyword arguments
    (``approvers=[{"userId": "alice"}]``, ``approve_label="Send email"``, ``timeout=3600``, ...).
    """

    ui_color = "#fde68a"
    template_fields: Sequence[str] = ()
    # The "Review" button on the gate task's page: the review page of the request it parked on (hitl.native).
    operator_extra_links = (ReviewLink(),)

    def __init__(self, *, step_id: str, options: GateOptions | None = None, **kwargs: Any) -> None:
        gate_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in GateOptions.names()}
        if options is not None and gate_kwargs:
            raise TypeError(f"pass either options= or {', '.join(sorted(gate_kwargs))}, not both")
        kwargs.setdefault("retries", GATE_RETRIES)
        kwargs.setdefault("retry_delay", GATE_RETRY_DELAY)
        kwargs.setdefault("retry_exponential_backoff", 2.0)
        kwargs.setdefault("max_retry_delay", timedelta(minutes=5))
        super().__init__(**kwargs)
        self.step_id = step_id
        self.options = options or GateOptions(**gate_kwargs)

    @property
    def output(self) -> ApprovedOutput:  # type: ignore[override]
        """The approved output, resolved from the decision store when a downstream task runs."""
        return ApprovedOutput(operator=self)

    def execute(self, context: Any) -> Any:
        from hitl.metrics import metrics
        from hitl.store import PENDING, GateRequest, get_store, utcnow
        from hitl.upstream import output_of

        ti = context["ti"]
        output = output_of(context, self.step_id)  # a mapped gate: its own item's output only
        kind = self.options.output_kind or detect_kind(output)
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
                options=self.options,
                triggered_by=getattr(dag_run, "triggering_user_name", None),
                verdict=self._verdict(context, output) if self.options.policy is not None else None,
                # what the steps after this gate read besides the approved output, bound to the approval
                bound={step: output_of(context, step) for step in self.options.binds} or None,
            )
        )
        if created:
            self.log.info("Approval request %s recorded for %s (%s): %s", req.id, self.step_id, kind, req.summary)
        else:
            self.log.info("Approval request %s already exists for this output (status %s)", req.id, req.status)
        if self.options.policy is not None and req.status == PENDING:
            req = self._apply_policy(store, req, created)
        if created and req.status == PENDING:
            self._notify(req)
        self._log_review_url(req.id)
        if req.status == PENDING and req.overdue(utcnow()):
            with store.writing() as conn:
                closed = store.close_overdue(conn, req, utcnow())
            req = store.get(req.id) or req
            if closed:
                metrics.decided(req, "expiry")
        if req.status != PENDING:
            return self._end(req)
        self._warn_without_monitor(store, req)
        self._defer(req.id, req, context)

    def _verdict(self, context: Any, output: Any) -> Any:
        """The policy's verdict on this draft; a rule that cannot be evaluated leaves it to a human, never fails."""
        from hitl.policy import Verdict
        from hitl.upstream import output_of

        policy = self.options.policy
        assert policy is not None
        ti = context["ti"]
        try:
            values = {
                "output": output,
                "steps": {step: {"output": output_of(context, step)} for step in policy.steps_read()},
                "params": dict(context.get("params") or {}),
            }
            map_index = ti.map_index if ti.map_index is not None else -1
            return policy.verdict(values, sample_key=f"{ti.dag_id}|{ti.run_id}|{ti.task_id}|{map_index}")
        except Exception as exc:  # an XCom that cannot be read, say: a human reviews
            reason = f"undecided: {type(exc).__name__}: {exc}"[:300]
            return Verdict(decision="none", rule=None, rule_hash=policy.rule_hash, mode=policy.mode, reason=reason)

    def _apply_policy(self, store: Any, req: Any, created: bool) -> Any:
        """Log (and count) the verdict; an enforced one that may act decides the request here, as the policy."""
        from hitl.decisions import DecisionError, decide_by_policy
        from hitl.metrics import metrics

        verdict = store.verdict(req.id)
        if verdict is None:  # recorded before the gate had a policy
            return req
        if created:
            self.log.info("Gate policy on request %s: %s", req.id, verdict.describe())
            metrics.verdict(verdict, req.dag_id)
        if not verdict.acts:
            return req
        try:
            outcome = decide_by_policy(store, req, verdict)
        except DecisionError as exc:  # e.g. an output no one could act on: a human sees it, with the reason
            self.log.warning("The gate policy did not decide request %s: %s; a reviewer decides", req.id, exc)
            return store.get(req.id) or req
        self.log.info("%s", outcome.message)
        if self.options.policy is not None and self.options.policy.notify:
            try:
                from hitl.notify import notify

                notify(outcome.request, "policy_decided", list(outcome.request.approvers), store=store)
            except Exception as exc:
                self.log.warning("Notifying approvers of the policy decision on %s failed: %s", req.id, exc)
        return outcome.request

    def _defer(self, request_id: int, req: Any, context: Any = None) -> None:
        from hitl.native import publish
        from hitl.store import utcnow
        from hitl.trigger import ApprovalTrigger

        if context is not None:  # listed on Airflow's Required Actions while it waits (hitl.native)
            publish(context, req)

        timeout = None
        bound = req.deadline()
        if bound is not None and bound[1] == "timeout":
            timeout = max(bound[0] - utcnow(), timedelta(seconds=1))
        self.defer(
            trigger=ApprovalTrigger(request_id=request_id, poll_interval=self.options.poll_interval),
            method_name="execute_complete",
            kwargs={"request_id": request_id},
            timeout=timeout,
        )

    def _warn_without_monitor(self, store: Any, req: Any) -> None:
        """Time bounds without a running monitor do nothing: say so where the gate's owner looks first."""
        from hitl.monitor import monitor_warning

        warning = monitor_warning(store, req)
        if warning:
            self.log.warning("Approval request %s: %s", req.id, warning)

    def _log_review_url(self, request_id: int) -> None:
        try:
            from hitl.notify.links import page_url

            self.log.info("Review it at %s", page_url(request_id))
        except Exception:  # only a log line
            pass

    def _notify(self, req: Any) -> None:
        """Tell the approvers; a channel that is down never fails the gate."""
        try:
            from hitl.notify import notify_requested

            notify_requested(req)
        except Exception as exc:
            self.log.warning("Notifying approvers of request %s failed: %s", req.id, exc)

    def _end(self, req: Any) -> Any:
        """End this try as the stored request says (``hitl.gate_end.ENDINGS``, the table every route reads):
        the approved output; a skip (rejected: the steps after it do not run, the run is not failed); a failure
        without retries (timed out; or changes requested that this gate still sees, the re-run not done)."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from hitl.gate_end import Ending, ending_of

        how = ending_of(req.status)
        if how is Ending.SUCCEED:
            self.log.info("Approved by %s at %s", req.decided_by, req.decided_at)
            return req.final_output
        self.log.info(
            "%s by %s at %s. Reason: %s", req.status.capitalize(), req.decided_by, req.decided_at, req.comment
        )
        if how is Ending.FAIL:
            raise AirflowFailException(f"approval request {req.id} {req.comment}")
        if how is Ending.RERUN:  # the decider clears the step and this gate; reaching here means it did not
            raise AirflowFailException(
                f"changes were requested on approval request {req.id} by {req.decided_by}, but step {self.step_id} "
                f"was not re-run: clear task {self.step_id} (with downstream) to make the next draft"
            )
        if how is Ending.WAIT:  # never reached: the callers park a pending request themselves
            raise RuntimeError(f"approval request {req.id} is still pending")
        raise AirflowSkipException(f"{req.status.capitalize()} by {req.decided_by} at {req.decided_at}: {req.comment}")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """A trigger timeout is the gate's ``timeout``: close the request first, so a late approval cannot count."""
        from airflow.sdk.exceptions import TaskDeferralTimeout

        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout:
            return self._timed_out(context)

    def _timed_out(self, context: Any) -> Any:
        from hitl.metrics import metrics
        from hitl.store import PENDING, get_store, utcnow

        ti = context["ti"]
        store = get_store()
        req = store.current_for_gate(ti.dag_id, ti.run_id, ti.task_id, ti.map_index if ti.map_index is not None else -1)
        if req is None:
            raise RuntimeError(f"no approval request for {ti.dag_id}/{ti.run_id}/{ti.task_id} in the decision store")
        if req.status == PENDING:
            with store.writing() as conn:
                # The trigger's clock and ours may differ by a moment: close at the deadline or after it.
                bound = req.deadline()
                closed = store.close_overdue(conn, req, max(utcnow(), bound[0]) if bound else utcnow())
            req = store.get(req.id) or req
            if closed:
                metrics.decided(req, "expiry")
        return self._end(req)  # approved in the last moment before the timeout, or timed out now

    def execute_complete(self, context: Any, event: Any = None, request_id: int | None = None) -> Any:
        """Back on a worker: the request was superseded, or the trigger ran inline (``dag.test()``).

        Also when an answer on Airflow's Required Actions page resumed it (``hitl.native``): that answer is
        refused, never counted. Reads the decision from the store rather than trusting the event, so every
        case ends the same way.
        """
        from hitl.native import native_answer
        from hitl.store import PENDING, get_store

        answer = native_answer(event)  # an answer on Airflow's Required Actions page: refused below, never counted
        if isinstance(event, dict) and event.get("request_id"):
            request_id = int(event["request_id"])
        from hitl.store.outage import through_outage

        store = get_store()
        ti = context["ti"]
        map_index = ti.map_index if ti.map_index is not None else -1
        # The trigger saw the decision; a store gone down since is waited out here too (bounded, logged once),
        # rather than failing the try that would have returned the approved output.
        current = through_outage(
            f"reading the decision of {ti.task_id}",
            lambda: store.current_for_gate(ti.dag_id, ti.run_id, ti.task_id, map_index),
        )
        if current is None:
            raise RuntimeError(f"no approval request for {ti.dag_id}/{ti.run_id}/{ti.task_id} in the decision store")
        if request_id is not None and current.id != request_id:
            self.log.info("Approval request %s was superseded by %s", request_id, current.id)
        if current.status != PENDING:
            return self._end(current)
        if answer is not None:
            from hitl.native import refuse

            refuse(answer, current, self.log)  # logs the pointer and audits; _defer reopens the HITL record
        self._defer(current.id, current, context)
