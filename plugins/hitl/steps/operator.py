"""The one operator every spec step runs as: render its config, run its type, return its output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

GATE_SUFFIX = "__approval"  # hitl.factory.gate_task_id


class StepOperator(BaseOperator):
    """Runs one spec step.

    ``sources`` maps each earlier step the config refers to (``{{ steps.X.output }}``) to the
    task holding its output: the step itself, or its approval gate. A gated step's output is
    read from the decision store (the approved, possibly edited version), never from the gate's
    XCom; ``gates`` lists the gates this step comes right after, each of which must have a
    recorded approval for the output it reviewed, or the step fails without acting (hitl.guard).
    ``binds``: per gate, the ungated steps this step reads whose outputs that gate's request recorded; each must
    be unchanged when this step runs (what the reviewer saw is what it acts on).
    ``chained``: earlier steps this one reads that run after a gate themselves (not reviewed): each recorded what it
    returned (``records_output``), and the value read must be that (``hitl.guard.check_recorded_output``).
    ``review_gate``: the gate that reviews this step's own output; its config is rendered with
    ``review`` (the feedback of earlier rounds, ``hitl.rounds``), so a draft sent back is redone with it.
    """

    template_fields: Sequence[str] = ()  # rendered in execute(), with ``steps`` in the context

    def __init__(
        self,
        *,
        step_type: str,
        config: dict[str, Any],
        sources: dict[str, str] | None = None,
        gates: list[str] | None = None,
        binds: dict[str, list[str]] | None = None,
        chained: list[str] | None = None,
        records_output: bool = False,
        review_gate: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.chained = list(chained or [])
        self.records_output = records_output
        self.review_gate = review_gate
        self.step_type = step_type
        self.config = config
        self.sources = dict(sources or {})
        self.gates = list(gates or [])
        self.binds = {gate: list(steps) for gate, steps in (binds or {}).items()}

    def execute(self, context: Any) -> Any:
        from hitl.steps import step_module
        from hitl.upstream import output_of

        ti = context["ti"]
        approved = self._approved_outputs(context)
        steps = {
            step_id: {"output": approved[task_id] if task_id in approved else output_of(context, task_id)}
            for step_id, task_id in self.sources.items()
        }
        self._check_chained(ti, steps)
        review = self._review(ti)
        if review["rounds"]:
            self.log.info("Draft %s of %s, after this feedback: %s", review["round"], self.task_id, review["feedback"])
        rendered = self.render_template(self.config, {**context, "steps": steps, "review": review})  # type: ignore[typeddict-unknown-key]
        self.log.info("Running %s step %s", self.step_type, self.task_id)
        output = step_module(self.step_type).run(rendered, {**context, "review": review})
        if self.records_output:
            from hitl.guard import record_output

            record_output(dag_id=ti.dag_id, run_id=ti.run_id, task_id=self.task_id, value=output, map_index=_index(ti))
        return output

    def _check_chained(self, ti: Any, steps: dict[str, dict[str, Any]]) -> None:
        """Each chained step's output, as read now, is what that step returned after its approval."""
        from airflow.sdk.exceptions import AirflowFailException

        from hitl.guard import GateNotApproved, check_recorded_output

        for step_id in self.chained:
            try:
                check_recorded_output(
                    dag_id=ti.dag_id,
                    run_id=ti.run_id,
                    step_task_id=step_id,
                    value=steps[step_id]["output"],
                    map_index=_index(ti),
                    acting_task=ti.task_id,
                    gate_task_id=self.gates[0] if self.gates else None,
                )
            except GateNotApproved as exc:
                raise AirflowFailException(str(exc)) from None

    def _review(self, ti: Any) -> dict[str, Any]:
        """``review`` for the config: the feedback of earlier rounds of this step's gate (none when ungated)."""
        from hitl.rounds import FIRST_ROUND, review_of

        if not self.review_gate:
            return {**FIRST_ROUND, "rounds": []}
        map_index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else -1
        return review_of(ti.dag_id, ti.run_id, self.review_gate, map_index)

    def _approved_outputs(self, context: Any) -> dict[str, Any]:
        """Gate task id -> approved output, for every gate this step comes after or reads from."""
        from airflow.sdk.exceptions import AirflowFailException

        from hitl.guard import GateNotApproved, check_approval
        from hitl.upstream import output_of

        ti = context["ti"]
        gate_ids = sorted({*self.gates, *(t for t in self.sources.values() if t.endswith(GATE_SUFFIX))})
        map_index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else -1
        approved = {}
        for gate_id in gate_ids:
            step_id = gate_id.removesuffix(GATE_SUFFIX)
            try:
                approved[gate_id] = check_approval(
                    dag_id=ti.dag_id,
                    run_id=ti.run_id,
                    gate_task_id=gate_id,
                    map_index=map_index,
                    step_output=output_of(context, step_id),
                    acting_task=ti.task_id,
                    binds=self.binds.get(gate_id, []),
                    output_now=lambda step: output_of(context, step),
                )
            except GateNotApproved as exc:
                raise AirflowFailException(str(exc)) from None
        return approved


def _index(ti: Any) -> int:
    return ti.map_index if ti.map_index is not None and ti.map_index >= 0 else -1
