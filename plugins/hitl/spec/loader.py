"""Load workflow specs and collect every mistake with its file, line and key path.

``load_spec`` never raises for what is in a file: it returns the errors, so one broken file
never hides the others (the DAG factory and ``python -m hitl validate`` both rely on that).

Hostile input: files are read through ``hitl.spec.safe_yaml``, which bounds file size (1 MiB),
nesting depth (50), value count after alias expansion (50,000), expanded text (2 MiB) and
number length, refuses recursive aliases, non-UTF-8 text, control characters, non-text keys
and every non-data tag, all before the file becomes Python objects. What a valid spec makes the
DAG file build is bounded too: at most 100 steps (MAX_STEPS), 50 params (MAX_PARAMS) and 1,000
params x steps (MAX_PARAM_CHECKS; Airflow validates every param once per task when it stores the
DAG), so one spec cannot push the whole DAG file past Airflow's parse timeouts. A file's errors
are capped at MAX_ERRORS (100) plus a count of the rest. A bug that still raises becomes an error
of that one file ("internal error"), never an exception.

Agreement with the factory: a spec with no errors is one ``hitl.factory.build_dag`` builds.
The loader runs the checks the factory and Airflow would otherwise fail on later:
``start_date`` parses with ``datetime.fromisoformat`` (``LoadedSpec.start_date`` holds the
result), the schedule is a preset Airflow accepts or a cron expression that fires, ids fit
Airflow's key rules, tags fit Airflow's 100 characters, durations fit a ``timedelta`` and the
store, no step id takes the name of another step's gate task, and workflow ids stay clear of
the factory's own DAG ids (``hitl_monitor``, ``hitl_invalid__*``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from hitl.spec import safe_yaml
from hitl.spec.messages import MEANT, KeyPath, describe, format_path, pydantic_message
from hitl.spec.schema import (
    MAX_PARAMS,
    MAX_STEPS,
    STEP_CONFIGS,
    Conditions,
    Next,
    Step,
    WorkflowSpec,
    duration_seconds,
    parse_start_date,
)
from hitl.spec.step_graph import GATE_SUFFIX, check_coverage, check_links, check_policies, check_task_ids
from hitl.spec.suggest import suggest

if TYPE_CHECKING:
    from hitl.policy import GatePolicy

__all__ = [
    "GATE_SUFFIX",
    "MAX_ERRORS",
    "MAX_PARAM_CHECKS",
    "RESERVED_DAG_IDS",
    "RESERVED_PREFIXES",
    "SPEC_SUFFIXES",
    "GateSpec",
    "LoadedSpec",
    "SpecError",
    "StepSpec",
    "duration_seconds",
    "format_path",
    "load_spec",
    "load_specs",
    "spec_files",
]

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
# What Airflow 3.3 accepts as a schedule preset (croniter's names plus @once). "@continuous" is
# left out: Airflow refuses it unless max_active_runs is 1, which the factory does not set.
SCHEDULE_PRESETS = (
    "@once",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
    "@annually",
)
UNSUPPORTED_PRESETS = {"@continuous": "the DAG factory does not support @continuous (Airflow needs max_active_runs 1)"}
STEP_REF = re.compile(r"\bsteps\.([A-Za-z0-9_][A-Za-z0-9_-]*)\b")
# DAG ids the factory makes itself (= hitl.factory.MONITOR_DAG_ID and INVALID_PREFIX): a spec
# using one would replace the monitor, or be confused with a broken spec's stand-in.
RESERVED_DAG_IDS = ("hitl_monitor",)
RESERVED_PREFIXES = ("hitl_invalid__",)
MAX_ERRORS = 100  # per file; the rest are counted in one last line
MAX_PARAM_CHECKS = 1000  # params x steps: Airflow validates each param once per task when storing the DAG


@dataclass(frozen=True)
class SpecError:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


@dataclass
class GateSpec:
    approve_label: str
    approvers: list[dict[str, str]]
    min_approvals: int
    allow_self_approval: bool
    timeout_seconds: int | None
    remind_after: int | None = None
    escalate_after: int | None = None
    escalate_to: list[dict[str, str]] = field(default_factory=list)
    expire_after: int | None = None
    max_revisions: int = 3
    raw_policy: Any = None  # checked and parsed after every step is known (check_policies)
    policy: GatePolicy | None = None


@dataclass
class StepSpec:
    id: str
    type: str
    config: dict[str, Any]
    next_step: str | None
    gate: GateSpec | None
    retries: int
    description: str | None
    refs: list[str] = field(default_factory=list)  # earlier steps whose output the config uses


@dataclass
class LoadedSpec:
    path: Path
    spec: WorkflowSpec | None = None
    steps: list[StepSpec] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    start_date: datetime | None = None  # spec.start_date parsed as the factory does; None when not given
    id_line: int = field(default=1, repr=False)  # where the workflow id is, for errors found across files
    # the lines of this file's key paths, for checks made after loading (hitl.spec.connections)
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)

    def line(self, path: KeyPath) -> int:
        """The line of ``path`` in this file, or of its nearest ancestor the file has (1 when unknown)."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return 1

    @property
    def ok(self) -> bool:
        return not self.errors and self.spec is not None


class _Checker:
    """Collects a file's errors: the first MAX_ERRORS in full, the rest only counted (a file of
    50,000 mistakes must not cost 50,000 suggestions)."""

    def __init__(self, path: Path, parsed: safe_yaml.Parsed) -> None:
        self.file = str(path)
        self.parsed = parsed
        self.errors: list[SpecError] = []
        self.more = 0

    @property
    def full(self) -> bool:
        return len(self.errors) >= MAX_ERRORS

    def error(self, path: KeyPath, message: str, line: int | None = None) -> None:
        if line is None and self.parsed.bad_values and any(path[: len(b)] == b for b in self.parsed.bad_values):
            return  # the YAML reader already reported this value; what stands in for it is no news
        if self.full:
            self.more += 1
            return
        self.errors.append(
            SpecError(self.file, line if line is not None else self.parsed.line(path), format_path(path), message)
        )

    def model(self, model: type[BaseModel], data: Any, prefix: KeyPath, step_type: str | None = None) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
            budget = max(MAX_ERRORS - len(self.errors), 0)  # no suggestions computed past the cap: only counted
            self.more += max(len(errors) - budget, 0)
            errors = errors[:budget]
            found = [pydantic_message(err, model, data, step_type) for err in errors]
            # A misspelt required key is one mistake, not two: "unknown key 'too' (did you mean 'to'?)" says it,
            # and the "to: is required" it causes is folded into that line.
            missing = {loc for (loc, _), err in zip(found, errors, strict=True) if err["type"] == "missing"}
            folded: set[KeyPath] = set()
            for i, (loc, msg) in enumerate(found):
                meant = MEANT.search(msg)
                if meant and (*loc[:-1], meant.group(1)) in missing:
                    folded.add((*loc[:-1], meant.group(1)))
                    found[i] = (loc, msg[: meant.end()] + " it is required)" + msg[meant.end() + 1 :])
            for loc, msg in found:
                if loc in folded:
                    continue
                if self.full:
                    self.more += 1
                    continue
                self.error((*prefix, *loc), msg)
            return None

    def finish(self) -> list[SpecError]:
        """The errors by line, and one last line counting those left out."""
        errors = sorted(self.errors, key=lambda e: e.line)
        if self.more:
            errors.append(SpecError(self.file, errors[-1].line, "", f"... and {self.more} more errors"))
        return errors


def load_spec(path: Path) -> LoadedSpec:
    """Parse and validate one spec file; never raises for what is in the file."""
    result = LoadedSpec(path=path)
    try:
        _load(path, result)
    except Exception as exc:  # a bug must cost one spec, not the DAG file: report it like a spec error
        result.spec, result.steps, result.start_date = None, [], None
        result.errors.append(
            SpecError(str(path), 1, "", f"internal error while checking this spec: {type(exc).__name__}: {exc}")
        )
    return result


def _load(path: Path, result: LoadedSpec) -> None:
    text, problem = safe_yaml.read_spec_text(path)
    if text is None:
        assert problem is not None
        result.errors.append(SpecError(str(path), problem.line, format_path(problem.path), problem.message))
        return
    parsed = safe_yaml.parse(text)
    check = _Checker(path, parsed)
    for p in parsed.problems:
        check.error(p.path, p.message, p.line)
    if parsed.fatal:
        result.errors = check.finish()
        return
    data = parsed.data
    if not isinstance(data, dict):
        got = "nothing (the file is empty)" if data is None else describe(data)
        check.error((), f"a spec must be a mapping with id and steps, got {got}")
        result.errors = check.finish()
        return

    spec = check.model(WorkflowSpec, data, ())
    result.id_line = parsed.line(("id",))
    result.lines = parsed.lines
    if isinstance(data.get("id"), str):
        _check_reserved_id(check, data["id"])
    start = None
    if spec is not None and spec.start_date is not None:
        start = parse_start_date(spec.start_date)
    _check_schedule(check, data.get("schedule"), start)

    raw_steps: list[Any] = data["steps"] if isinstance(data.get("steps"), list) else []
    params = data.get("params")
    if isinstance(params, dict):
        _check_params(check, params)
    n_params = len(params) if isinstance(params, dict) else 0
    if n_params <= MAX_PARAMS and len(raw_steps) <= MAX_STEPS and n_params * len(raw_steps) > MAX_PARAM_CHECKS:
        check.error(
            ("params",),
            f"{n_params} params x {len(raw_steps)} steps is more than {MAX_PARAM_CHECKS:,}: Airflow checks every"
            " param once per task when it stores the DAG, which gets slow; use fewer params or fewer steps",
        )
    if len(raw_steps) > MAX_STEPS:
        raw_steps = []  # reported by the schema; checking thousands of steps would only be slow
    steps: list[StepSpec] = []
    ids: dict[str, int] = {}
    declared: set[str] = set()
    first_use: dict[str, int] = {}
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            check.error(("steps", i), f"a step must be a mapping with id and type, got {describe(raw)}")
            continue
        raw_type = raw.get("type") if isinstance(raw.get("type"), str) else None
        step = check.model(Step, raw, ("steps", i), step_type=raw_type)
        raw_id: str | None = raw["id"] if isinstance(raw.get("id"), str) else None
        duplicate = False
        if raw_id is not None:
            if raw_id in first_use:
                duplicate = True
                check.error(
                    ("steps", i, "id"), f"duplicate step id {raw_id!r} (first used by steps[{first_use[raw_id]}])"
                )
            else:
                first_use[raw_id] = i
            declared.add(raw_id)  # a valid target even when broken: report its own errors, not its absence
        # Check the config and next of every step, even one whose own keys are wrong: all errors at once.
        checked = _check_step(check, raw, step, i, raw_type)
        if step is None or duplicate or checked is None:
            continue
        ids[step.id] = i
        steps.append(checked)

    check_links(check, steps, ids, declared)
    check_coverage(check, steps, ids)
    check_policies(check, steps, ids, set(params) if isinstance(params, dict) else set())
    check_task_ids(check, steps, raw_steps)
    if check.errors:  # keys a quote left open swallowed are missing: say where that quote opens
        for late in parsed.late_quotes:
            check.error(late.path, late.message(), late.opened)
    result.errors = check.finish()
    if not check.errors:
        result.spec = spec
        result.steps = steps
        result.start_date = start


def _check_params(check: _Checker, params: dict[str, Any]) -> None:
    """Declared params (``default`` + description, type, bounds): what Airflow's Trigger form would refuse."""
    from hitl.spec.params import is_declared, problems

    for name, value in params.items():
        if isinstance(name, str) and is_declared(value):
            for key, message in problems(value):
                check.error(("params", name, key) if key else ("params", name), message)


def _check_reserved_id(check: _Checker, dag_id: str) -> None:
    if dag_id in RESERVED_DAG_IDS or dag_id.startswith(RESERVED_PREFIXES):
        check.error(("id",), f"workflow id {dag_id!r} is reserved for the DAGs the hitl factory makes itself")


def _check_schedule(check: _Checker, schedule: Any, start: datetime | None) -> None:
    if schedule is None or not isinstance(schedule, str):
        return
    if schedule in UNSUPPORTED_PRESETS:
        check.error(("schedule",), UNSUPPORTED_PRESETS[schedule])
        return
    if schedule.startswith("@"):
        if schedule not in SCHEDULE_PRESETS:
            close = difflib.get_close_matches(schedule, SCHEDULE_PRESETS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            check.error(("schedule",), f"unknown schedule preset {describe(schedule)}{hint}")
        return
    from croniter import croniter

    if len(schedule) > 200 or not croniter.is_valid(schedule):
        check.error(("schedule",), f"not a valid cron expression or preset: {describe(schedule)}")
        return
    try:  # valid but never firing ("0 0 30 2 *"): Airflow would fail computing the next run
        croniter(schedule, start or datetime(2024, 1, 1, tzinfo=UTC)).get_next(datetime)
    except Exception:
        check.error(("schedule",), f"cron expression {schedule!r} never fires (no such date)")


def _check_step(
    check: _Checker, raw: dict[str, Any], step: Step | None, i: int, step_type: str | None
) -> StepSpec | None:
    config = raw.get("config", {})
    if step_type is not None:
        config_model = STEP_CONFIGS.get(step_type)
        if config_model is None:
            close = suggest(step_type, list(STEP_CONFIGS))
            hint = f" (did you mean {close!r}?)" if close else f" (known: {', '.join(STEP_CONFIGS)})"
            check.error(("steps", i, "type"), f"unknown step type {step_type!r}{hint}")
        elif isinstance(config, dict):
            check.model(config_model, config, ("steps", i, "config"))

    raw_next = raw.get("next")
    next_step: str | None = None
    gate: GateSpec | None = None
    if isinstance(raw_next, str):
        next_step = raw_next
    elif isinstance(raw_next, dict):
        parsed = check.model(Next, raw_next, ("steps", i, "next"))
        if parsed is not None:
            next_step = parsed.step
            gate = _gate(check, parsed.conditions, i)
    elif raw_next is not None:
        check.error(
            ("steps", i, "next"), f"must be a step id or a mapping with step and conditions, got {describe(raw_next)}"
        )
    if step is None:
        return None
    refs = sorted(set(STEP_REF.findall(repr(step.config))))
    return StepSpec(step.id, step.type, step.config, next_step, gate, step.retries, step.description, refs)


def _gate(check: _Checker, cond: Conditions, i: int) -> GateSpec | None:
    if not cond.approvalRequired:
        return None
    durations = {
        key: duration_seconds(getattr(cond, key)) if getattr(cond, key) is not None else None
        for key in ("timeout", "remindAfter", "escalateAfter", "expireAfter")
    }
    if cond.escalateAfter is not None and not cond.escalateTo:
        check.error(
            ("steps", i, "next", "conditions", "escalateTo"), "escalateAfter needs escalateTo: who to escalate to"
        )
    if cond.escalateTo and cond.escalateAfter is None:
        check.error(
            ("steps", i, "next", "conditions", "escalateAfter"), "escalateTo needs escalateAfter: when to escalate"
        )
    seen: set[tuple[str, str]] = set()
    for j, approver in enumerate(cond.approvers):
        entry = next(iter(approver.as_dict().items()))
        if entry in seen:
            check.error(("steps", i, "next", "conditions", "approvers", j), f"approver {entry[1]!r} is listed twice")
        seen.add(entry)
    only_people = cond.approvers and all("role" not in a.as_dict() for a in cond.approvers)
    if only_people and cond.minApprovals > len(cond.approvers):
        check.error(
            ("steps", i, "next", "conditions", "minApprovals"),
            f"needs {cond.minApprovals} approvals but only {len(cond.approvers)} approvers are listed",
        )
    return GateSpec(
        approve_label=cond.approveLabel,
        approvers=[a.as_dict() for a in cond.approvers],
        min_approvals=cond.minApprovals,
        allow_self_approval=cond.allowSelfApproval,
        timeout_seconds=durations["timeout"],
        remind_after=durations["remindAfter"],
        escalate_after=durations["escalateAfter"],
        escalate_to=[a.as_dict() for a in cond.escalateTo],
        expire_after=durations["expireAfter"],
        max_revisions=cond.maxRevisions,
        raw_policy=cond.policy,
    )


def spec_files(paths: list[Path]) -> list[Path]:
    """Spec files under the given files or folders, sorted; hidden files and folders are skipped."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(
                f
                for f in sorted(p.rglob("*"))
                if f.suffix in SPEC_SUFFIXES
                and f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        else:
            found.append(p)
    return found


def load_specs(paths: list[Path], *, dags_folder: Path | None = None, skip: tuple[Path, ...] = ()) -> list[LoadedSpec]:
    """Every spec under ``paths``; a workflow id used twice is an error of the later file.

    ``dags_folder``: also refuse a workflow id that a hand-written DAG file there defines (other than the files
    in ``skip``, the hitl DAG file itself): two files with one DAG id make Airflow flip between them
    (``hitl.spec.dag_ids``). The factory passes Airflow's DAGs folder; ``validate`` passes it when it can see it.
    """
    loaded = [load_spec(p) for p in spec_files(paths)]
    seen: dict[str, Path] = {}
    for item in loaded:
        if item.spec is None:
            continue
        if item.spec.id in seen:
            item.errors.append(
                SpecError(
                    str(item.path),
                    item.id_line,
                    "id",
                    f"workflow id {item.spec.id!r} is already used by {seen[item.spec.id]}",
                )
            )
            item.spec = None
        else:
            seen[item.spec.id] = item.path
    if dags_folder is not None and seen:
        from hitl.spec.dag_ids import hand_written_dag_ids

        taken = hand_written_dag_ids(dags_folder, seen, skip=skip)
        for item in loaded:
            if item.spec is not None and item.spec.id in taken:
                path, line = taken[item.spec.id]
                item.errors.append(
                    SpecError(
                        str(item.path),
                        item.id_line,
                        "id",
                        f"workflow id {item.spec.id!r} is the DAG id of {path}:{line}, a DAG file in the DAGs folder:"
                        " two files with one DAG id make Airflow switch between them; rename the workflow",
                    )
                )
                item.spec = None
    return loaded
