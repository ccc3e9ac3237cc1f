"""The one operator every spec step runs as: render its config, run its type, return its output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class StepOperator(BaseOperator):
    """Runs one spec step.

    ``sources`` maps each earlier step the config refers to (``{{ steps.X.output }}``) to the
    task holding its output: the step itself, or its approval gate, whose XCom is the
    approved (possibly edited) version.
    """

    template_fields: Sequence[str] = ()  # rendered in execute(), with ``steps`` in the context

    def __init__(self, *, step_type: str, config: dict[str, Any], sources: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step_type = step_type
        self.config = config
        self.sources = dict(sources or {})

    def execute(self, context: Any) -> Any:
        from hitl.steps import step_module

        ti = context["ti"]
        steps = {step_id: {"output": ti.xcom_pull(task_ids=task_id)} for step_id, task_id in self.sources.items()}
        rendered = self.render_template(self.config, {**context, "steps": steps})
        self.log.info("Running %s step %s", self.step_type, self.task_id)
        return step_module(self.step_type).run(rendered, context)
