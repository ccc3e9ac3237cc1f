"""The one operator every spec step runs as: render its config, run its type, return its output."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

GATE_SUFFIX = "__approval"  # hitl.factory.gate_task_id


def pull_output(ti: Any, task_id: str) -> Any:
    """A step's output from XCom, as the step produced it.

    Airflow 3.3.2 stores XComs that a trigger pushes through ``TaskSuccessEvent`` JSON-encoded
    twice (``XComModel.set`` serializes a value its JSON column encodes again), so a gate's
    approved output reads back as a JSON string. Decode it here, in one place.
    """
    value = ti.xcom_pull(task_ids=task_id)
    if isinstance(value, str) and task_id.endswith(GATE_SUFFIX) and value[:1] in ("{", "[", '"'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class StepOperator(BaseOperator):
    """Runs one spec step.

    ``sources`` maps each earlier step the config refers to (``{{ steps.X.output }}``) to the
    task holding its output: the step itself, or its approval gate, whose XCom is the
    approved (possibly edited) version.
    """

    template_fields: Sequence[str] = ()  # rendered in execute(), with ``steps`` in the context

    def __init__(
        self, *, step_type: str, config: dict[str, Any], sources: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.step_type = step_type
        self.config = config
        self.sources = dict(sources or {})

    def execute(self, context: Any) -> Any:
        from hitl.steps import step_module

        ti = context["ti"]
        steps = {step_id: {"output": pull_output(ti, task_id)} for step_id, task_id in self.sources.items()}
        rendered = self.render_template(self.config, {**context, "steps": steps})  # type: ignore[typeddict-unknown-key]
        self.log.info("Running %s step %s", self.step_type, self.task_id)
        return step_module(self.step_type).run(rendered, context)
