"""DAG factory: one Airflow DAG per valid workflow spec, and a visible stand-in for each broken one.

A broken spec never hides the good ones (the DAG file never raises), and never vanishes
silently either: it becomes a DAG named ``hitl_invalid__<file>``, tagged ``invalid-spec``,
whose description and docs list every error with file, line and key path, and whose one
task fails with the same text if someone runs it. A spec whose id a hand-written DAG file in
the DAGs folder already defines is such a spec (``hitl.spec.dag_ids``): two files with one DAG
id would make Airflow flip between them.
"""

from __future__ import annotations

import gc
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hitl.settings import setting
from hitl.spec.loader import LoadedSpec, StepSpec, load_specs
from hitl.spec.step_graph import step_ancestors
from hitl.steps.operator import GATE_SUFFIX

log = logging.getLogger(__name__)

INVALID_PREFIX = "hitl_invalid__"
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)


def gate_task_id(step_id: str) -> str:
    return f"{step_id}{GATE_SUFFIX}"


def output_task_id(step: StepSpec) -> str:
    """The task whose XCom later steps read: the gate (approved output) when the step is gated."""
    return gate_task_id(step.id) if step.gate else step.id


def gate_options(step: StepSpec, owner: str | None, notify: dict[str, Any]) -> Any:
    """The spec's ``next.conditions`` of a gated step as the one object the sensor and the store carry."""
    from hitl.gate import GateOptions
    from hitl.steps import output_kind

    assert step.gate is not None
    g = step.gate
    return GateOptions(
        approve_label=g.approve_label,
        approvers=g.approvers,
        min_approvals=g.min_approvals,
        allow_self_approval=g.allow_self_approval,
        output_kind=output_kind(step.type, step.config),
        timeout=g.timeout_seconds,
        expire_after=g.expire_after,
        remind_after=g.remind_after,
        escalate_after=g.escalate_after,
        escalate_to=g.escalate_to,
        notify=notify,
        owner=owner,
        max_revisions=g.max_revisions,
        policy=g.policy,
    )


def upstream_gates(steps: list[StepSpec]) -> dict[str, set[str]]:
    """Step id -> the gate task ids of every gated step upstream of it (transitively)."""
    by_id = {s.id: s for s in steps}
    parents: dict[str, set[str]] = {s.id: set(s.refs) for s in steps}
    for step in steps:
        if step.next_step:
            parents.setdefault(step.next_step, set()).add(step.id)
    found: dict[str, set[str]] = {}

    def gates_of(step_id: str, seen: frozenset[str]) -> set[str]:
        if step_id in found:
            return found[step_id]
        gates: set[str] = set()
        for parent in parents.get(step_id, ()):
            if parent in seen or parent not in by_id:  # the loader refuses cycles; never loop anyway
                continue
            if by_id[parent].gate:
                gates.add(gate_task_id(parent))
            gates |= gates_of(parent, seen | {parent})
        found[step_id] = gates
        return gates

    return {s.id: gates_of(s.id, frozenset({s.id})) for s in steps}


def gate_binds(steps: list[StepSpec], gates_before: dict[str, set[str]]) -> dict[str, list[str]]:
    """Gate task id -> the ungated steps upstream of its gated step whose outputs a step after the gate reads.

    Those outputs exist when the gate records its request: the request binds them (the reviewer sees them)
    and each step after the gate checks they are unchanged before it acts (``hitl.guard``).
    """
    by_id = {s.id: s for s in steps}
    before = step_ancestors(steps)
    binds: dict[str, set[str]] = {gate_task_id(s.id): set() for s in steps if s.gate}
    for step in steps:
        for gate in gates_before.get(step.id, ()):
            gated = gate.removesuffix(GATE_SUFFIX)
            for ref in step.refs:
                if ref in by_id and not by_id[ref].gate and ref in before.get(gated, set()):
                    binds.setdefault(gate, set()).add(ref)
    return {gate: sorted(refs) for gate, refs in binds.items()}


def build_dag(loaded: LoadedSpec) -> Any:
    from airflow.sdk import DAG

    from hitl.sensor import ApprovalSensor
    from hitl.steps.operator import StepOperator

    spec = loaded.spec
    assert spec is not None
    by_id = {s.id: s for s in loaded.steps}
    start = datetime.fromisoformat(spec.start_date) if spec.start_date else DEFAULT_START
    dag = DAG(
        dag_id=spec.id,
        description=(spec.description or "")[:1000] or None,
        schedule=spec.schedule,
        start_date=start,
        catchup=False,
        tags=["hitl", *spec.tags],
        params={k: _param(v) for k, v in spec.params.items()},
        default_args={"owner": spec.owner},
        doc_md=f"Built from workflow spec `{loaded.path.name}` by the hitl DAG factory.",
    )
    tasks: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    # Every gate upstream of a step (by ``next`` or by using an output, however many steps away): it checks each
    # has a recorded approval before it acts (hitl.guard), so forcing the steps between does not get around one.
    gates_before = upstream_gates(loaded.steps)
    binds = gate_binds(loaded.steps, gates_before)
    # Steps after a gate that are not reviewed: what one returns is recorded when a later step reads it, and checked
    # there (the loader refuses a post-gate read that neither an approval, a binding nor this chain covers).
    after_gate = {s.id for s in loaded.steps if gates_before.get(s.id) and not s.gate}
    chained = {s.id: [r for r in s.refs if r in after_gate] for s in loaded.steps if gates_before.get(s.id)}
    recorded = {r for refs in chained.values() for r in refs}
    with dag:
        for step in loaded.steps:
            task = StepOperator(
                task_id=step.id,
                step_type=step.type,
                config=step.config,
                sources={ref: output_task_id(by_id[ref]) for ref in step.refs},
                gates=sorted(gates_before.get(step.id, set())),
                binds={g: [r for r in binds.get(g, []) if r in step.refs] for g in gates_before.get(step.id, set())},
                chained=chained.get(step.id, []),
                records_output=step.id in recorded,
                review_gate=gate_task_id(step.id) if step.gate else None,
                retries=step.retries,
                doc_md=step.description,
            )
            tasks[step.id] = outputs[step.id] = task
            if step.gate:
                gate = ApprovalSensor(
                    task_id=gate_task_id(step.id),
                    step_id=step.id,
                    options=replace(
                        gate_options(step, spec.owner, spec.notify.model_dump(exclude_none=True)),
                        binds=binds.get(gate_task_id(step.id), []),
                    ),
                )
                task >> gate
                outputs[step.id] = gate
        for step in loaded.steps:
            if step.next_step:
                outputs[step.id] >> tasks[step.next_step]
            for ref in step.refs:
                outputs[ref] >> tasks[step.id]
    return dag


def invalid_dag_id(path: Path, *, unique: bool = False) -> str:
    """The stand-in's DAG id: readable, at most 250 characters; ``unique`` adds a digest of the whole path."""
    import hashlib

    stem = re.sub(r"[^A-Za-z0-9_]+", "_", path.stem)
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    if len(stem) > 200:
        stem, unique = stem[:200], True
    return INVALID_PREFIX + stem + (f"__{digest}" if unique else "")


def shown_name(name: str) -> str:
    """A file name as Markdown text: the characters Markdown acts on are escaped."""
    return "".join(f"\\{c}" if c in "\\`*_{}[]()#+-.!<>|~" else c for c in name)


def build_invalid_dag(loaded: LoadedSpec, dag_id: str | None = None) -> Any:
    from airflow.sdk import DAG

    from hitl.steps.invalid import InvalidSpecOperator

    errors = [str(e) for e in loaded.errors]
    # An indented code block, one error a line, clipped: a spec's own text (a hostile key with backticks or
    # brackets) is shown as text and can never end the block and become Markdown (links) in Airflow's UI.
    shown = [" ".join(e.split())[:500] for e in errors]
    doc = "\n".join(
        [f"## Workflow spec {shown_name(loaded.path.name)} is invalid", "", "Fix these, then the real DAG appears:", ""]
        + [f"    {e}" for e in shown]
    )
    dag = DAG(
        dag_id=dag_id or invalid_dag_id(loaded.path),
        description=f"INVALID SPEC {loaded.path.name}: {errors[0] if errors else 'unknown error'}"[:1000],
        schedule=None,
        start_date=DEFAULT_START,
        catchup=False,
        tags=["hitl", "invalid-spec"],
        doc_md=doc,
        is_paused_upon_creation=True,
    )
    with dag:
        InvalidSpecOperator(task_id="spec_is_invalid", errors=errors)
    return dag


MONITOR_DAG_ID = "hitl_monitor"


def build_monitor_dag() -> Any:
    """Reminds, escalates and expires pending requests whose spec asks for it (see hitl.monitor)."""
    from airflow.sdk import DAG

    from hitl.monitor import SweepOperator

    with DAG(
        dag_id=MONITOR_DAG_ID,
        description="Approval gates: reminders, escalation, expiry, and retrying failed notifications"
        " (one run a day; it sweeps every [hitl] monitor_interval_seconds, deferred in between)",
        schedule="@daily",
        start_date=DEFAULT_START,
        catchup=False,
        # The day's scheduled run is active all day (deferred between sweeps): a run started by hand (Trigger) must
        # run beside it, not queue until tomorrow. Two sweeps at once are harmless: each action is a conditional
        # update, audited once.
        max_active_runs=2,
        tags=["hitl"],
    ) as dag:
        SweepOperator(task_id="sweep", retries=2, retry_delay=timedelta(seconds=20))  # a sweep is safe to repeat
    return dag


def _build_one(loaded: LoadedSpec, *, taken: dict[str, Any]) -> Any:
    """The spec's DAG, or its visible stand-in listing every error."""
    if loaded.ok:
        try:
            return build_dag(loaded)
        except Exception as exc:  # a bug or an Airflow refusal: show it like a spec error
            log.exception("hitl: building %s failed", loaded.path)
            from hitl.spec.loader import SpecError

            loaded.errors.append(
                SpecError(str(loaded.path), 1, "", f"cannot build the DAG: {type(exc).__name__}: {exc}")
            )
            loaded.spec = None
    for error in loaded.errors:
        log.error("hitl: %s", error)
    dag_id = invalid_dag_id(loaded.path)
    if dag_id in taken:  # a broken spec of the same name in another folder: both stay visible
        dag_id = invalid_dag_id(loaded.path, unique=True)
    return build_invalid_dag(loaded, dag_id)


def build_dags(specs_dir: Path | str, target: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build every spec under ``specs_dir``; put the DAGs in ``target`` (the DAG file's globals).

    The garbage collector is paused while building: building makes many long-lived objects and little
    garbage, and the collector's passes over everything alive (Airflow's modules, the DAGs built so far)
    took about a quarter of the build's CPU time at 2,000 specs (benchmarks/parse_time.py). It is restored after; its
    next pass frees whatever cycles building left behind.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        dags: dict[str, Any] = {}
        dag_file = (target or {}).get("__file__")
        if not (dag_file and monitor_file_beside(dag_file)):  # else that file has it: one DAG id, one file
            monitor = build_monitor_dag()
            dags[monitor.dag_id] = monitor
        specs = Path(specs_dir)
        if not specs.exists():  # a DAG file copied without specs: the monitor alone, no broken stand-in DAG
            log.warning("hitl: no specs folder at %s ([hitl] specs_folder): only the monitor DAG is built", specs)
        dags_folder, skip = _dags_folder(dag_file)
        for loaded in load_specs([specs], dags_folder=dags_folder, skip=skip) if specs.exists() else []:
            try:
                dag = _build_one(loaded, taken=dags)
            except Exception:  # the last line of defence: one file never hides the others
                log.exception("hitl: %s could not even become a stand-in DAG", loaded.path)
                continue
            dags[dag.dag_id] = dag
    finally:
        if collecting:
            gc.enable()
    if target is not None:
        target.update(dags)
    return dags


def _dags_folder(dag_file: str | None) -> tuple[Path | None, tuple[Path, ...]]:
    """Where hand-written DAGs may take a spec's id: Airflow's DAGs folder (else the DAG file's own), and the
    hitl DAG file itself to leave out; nothing for a build without a DAG file (a test, a benchmark)."""
    if not dag_file:
        return None, ()
    from hitl.config import conf_get

    configured = conf_get("core", "dags_folder", "")
    folder = Path(configured).expanduser() if configured else Path(dag_file).resolve().parent
    return folder, (Path(dag_file),)


def _param(value: Any) -> Any:
    """A spec param as Airflow's ``Param``: its description, type and bounds reach the Trigger form."""
    from airflow.sdk import Param

    from hitl.spec.params import param_kwargs

    default, kwargs = param_kwargs(value)
    return Param(default, **kwargs)


def monitor_file_beside(dag_file: str) -> bool:
    """Whether ``python -m hitl monitor install`` put the monitor's own DAG file next to ``dag_file``."""
    from hitl.monitor_install import MONITOR_FILE, is_monitor_file

    return is_monitor_file(Path(dag_file).resolve().parent / MONITOR_FILE)


def default_specs_dir(dag_file: str) -> Path:
    """``[hitl] specs_folder`` (airflow.cfg or its env var), else ``workflow_specs`` beside the DAGs folder."""

    configured = setting("specs_folder")
    return Path(configured) if configured else Path(dag_file).resolve().parent.parent / "workflow_specs"
