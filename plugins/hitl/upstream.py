"""What a task sees of an earlier task's output: its own item in a mapped task group, as Airflow resolves it.

``ti.xcom_pull(task_ids=...)`` without ``map_indexes`` returns every item's value of a task in a mapped
task group: a gate inside an expanded group recorded the whole list of drafts for every item, and the
approved item's next task received all of them. Airflow's own resolution of an ``XComArg`` (what
``task(upstream.output)`` gets) pulls the relevant item instead: the same map index inside the same
expanded group, the whole value of an unmapped task. ``output_of`` asks it the same way, so the gate
records, the policy reads, the guard checks and the next step renders the output of its own item.
"""

from __future__ import annotations

from typing import Any


def output_of(context: Any, task_id: str) -> Any:
    """The return value of task ``task_id`` in this run, as the running task instance relates to it.

    Falls back to a plain ``xcom_pull`` when the running task has no DAG that knows ``task_id`` (a
    task run outside a DAG). A mapped upstream task (not a group) gives the list of its items.
    """
    ti = context["ti"]
    task = context.get("task") if hasattr(context, "get") else None
    dag = getattr(task, "dag", None) if task is not None and getattr(task, "has_dag", lambda: False)() else None
    if dag is None or not dag.has_task(task_id):
        return ti.xcom_pull(task_ids=task_id)
    from airflow.sdk.definitions.xcom_arg import PlainXComArg
    from airflow.sdk.execution_time.lazy_sequence import LazyXComSequence

    value = PlainXComArg(operator=dag.get_task(task_id)).resolve(context)
    return list(value) if isinstance(value, LazyXComSequence) else value
