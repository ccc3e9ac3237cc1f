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
from hitl.spec.schema import (
    MAX_PARAMS,
    MAX_STEPS,
    STEP_CONFIGS,
    AiActionConfig,
    Approver,
    Conditions,
    EmailTemplate,
    Next,
    Notify,
    SlackNotify,
    Step,
    WorkflowSpec,
    duration_seconds,
    parse_start_date,
)
from hitl.spec.suggest import normal as _normal
from hitl.spec.suggest import suggest
from hitl.steps import output_kind

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
GATE_SUFFIX = "__approval"  # = hitl.steps.operator.GATE_SUFFIX (not imported here: it pulls in Airflow)
# DAG ids the factory makes itself (= hitl.factory.MONITOR_DAG_ID and INVALID_PREFIX): a spec
# using one would replace the monitor, or be confused with a broken spec's stand-in.
RESERVED_DAG_IDS = ("hitl_monitor",)
RESERVED_PREFIXES = ("hitl_invalid__",)
MAX_ERRORS = 100  # per file; the rest are counted in one last line
MAX_PARAM_CHECKS = 1000  # params x steps: Airflow validates each param once per task when storing the DAG

KeyPath = tuple[str | int, ...]


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
    raw_policy: Any = None  # checked and parsed after every step is known (_check_policies)
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


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(value: Any) -> str:
    if isinstance(value, dict | list) and len(value) > 20:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _keys(model: type[BaseModel] | None) -> list[str]:
    fields = getattr(model, "model_fields", {})
    return sorted(info.alias or name for name, info in fields.items())


# Where a key that is unknown at one place belongs instead, per model it was found in.
_ELSEWHERE: dict[Any, list[tuple[str, Any]]] = {
    WorkflowSpec: [("in a step (under steps)", Step), ("under a step's next.conditions", Conditions)],
    Step: [
        ("under next.conditions", Conditions),
        ("under next", Next),
        ("under config", "config"),
        ("at the top level of the spec", WorkflowSpec),
    ],
    Next: [("under next.conditions", Conditions), ("on the step itself, not under next", Step)],
    Conditions: [("under next, one level up", Next), ("on the step itself", Step)],
    Notify: [("under notify.slack", SlackNotify)],
    SlackNotify: [("under notify, one level up", Notify)],
    EmailTemplate: [("under config, one level up", AiActionConfig)],
    Approver: [("under next.conditions", Conditions)],
    "config": [("on the step itself, not in its config", Step), ("under next.conditions", Conditions)],
}


def _unknown_key_message(key: str, model: type[BaseModel] | None, present: set[str], step_type: str | None) -> str:
    known = [k for k in _keys(model) if k not in present]
    close = suggest(key, known)
    if close is not None and _normal(close) == _normal(key):
        return f"unknown key {key!r} (did you mean {close!r}?)"
    table = _ELSEWHERE.get("config" if model in STEP_CONFIGS.values() else model, [])
    for where, other in table:
        other_model = STEP_CONFIGS.get(step_type or "") if other == "config" else other
        if key in _keys(other_model):
            return f"unknown key {key!r} here: it belongs {where}"
    if close is not None:
        return f"unknown key {key!r} (did you mean {close!r}?)"
    given = suggest(key, sorted(present & set(_keys(model))))
    if given is not None:
        return f"unknown key {key!r} (a second {given!r}? that key is already given)"
    return f"unknown key {key!r} (known keys: {', '.join(_keys(model))})"


def _model_at(model: type[BaseModel], loc: KeyPath) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            info = next((i for i in getattr(current, "model_fields", {}).values() if i.alias == part), None)
        if info is None:
            return None
        annotation = info.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return None
        current = candidates[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _at(data: Any, loc: KeyPath) -> Any:
    for part in loc:
        if isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


_EXPECTED = {
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _message(err: Any, model: type[BaseModel], data: Any, step_type: str | None) -> tuple[KeyPath, str]:
    loc: KeyPath = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    if kind == "missing":
        return loc, "is required"
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = _at(data, loc[:-1])
        where = _model_at(model, loc[:-1])
        present = {k for k in _keys(where) if k in parent} if isinstance(parent, dict) else set()
        return loc, _unknown_key_message(key, where, present, step_type)
    expected = _EXPECTED.get(kind)
    if expected:
        return loc, f"{expected}, got {_describe(value)}"
    if kind == "literal_error":
        return loc, f"must be one of {err['ctx']['expected']}, got {_describe(value)}"
    if kind == "string_pattern_mismatch":
        what = "an email address" if loc and loc[-1] == "email" else f"text matching {err['ctx']['pattern']}"
        return loc, f"must be {what}, got {_describe(value)}"
    if kind == "value_error":
        return loc, str(err["ctx"]["error"])
    if kind == "too_long":
        count = len(value) if isinstance(value, dict | list) else err["ctx"].get("actual_length")
        return loc, f"has {count:,} items; at most {err['ctx']['max_length']} are allowed"
    if kind == "string_too_long":
        return loc, f"must be at most {err['ctx']['max_length']} characters, got {len(value):,}"
    return loc, f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_describe(value)}"


_MEANT = re.compile(r"\(did you mean '([^']+)'\?")


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
            found = [_message(err, model, data, step_type) for err in errors]
            # A misspelt required key is one mistake, not two: "unknown key 'too' (did you mean 'to'?)" says it,
            # and the "to: is required" it causes is folded into that line.
            missing = {loc for (loc, _), err in zip(found, errors, strict=True) if err["type"] == "missing"}
            folded: set[KeyPath] = set()
            for i, (loc, msg) in enumerate(found):
                meant = _MEANT.search(msg)
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
        got = "nothing (the file is empty)" if data is None else _describe(data)
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
            check.error(("steps", i), f"a step must be a mapping with id and type, got {_describe(raw)}")
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

    _check_links(check, steps, ids, declared)
    _check_coverage(check, steps, ids)
    _check_policies(check, steps, ids, set(params) if isinstance(params, dict) else set())
    _check_task_ids(check, steps, raw_steps)
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
            check.error(("schedule",), f"unknown schedule preset {_describe(schedule)}{hint}")
        return
    from croniter import croniter

    if len(schedule) > 200 or not croniter.is_valid(schedule):
        check.error(("schedule",), f"not a valid cron expression or preset: {_describe(schedule)}")
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
            ("steps", i, "next"), f"must be a step id or a mapping with step and conditions, got {_describe(raw_next)}"
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


def _check_links(check: _Checker, steps: list[StepSpec], ids: dict[str, int], declared: set[str]) -> None:
    for step in steps:
        i = ids[step.id]
        others = sorted(declared - {step.id})  # a step never links to itself: no use suggesting it
        if step.next_step is not None and step.next_step not in declared:
            close = suggest(step.next_step, others)
            hint = f" (did you mean {close!r}?)" if close else ""
            where: KeyPath = ("steps", i, "next")
            if isinstance(_at(check.parsed.data, where), dict):
                where = (*where, "step")
            check.error(where, f"next step {step.next_step!r} does not exist{hint}")
        for ref in step.refs:
            if ref not in declared:
                close = suggest(ref, others)
                hint = f" (did you mean {close!r}?)" if close else ""
                check.error(("steps", i, "config"), f"refers to the output of unknown step {ref!r}{hint}")
            elif ref == step.id:
                check.error(("steps", i, "config"), "a step cannot use its own output")
    # Cycles over next links and output references together (both become task dependencies).
    edges: dict[str, set[str]] = {s.id: set() for s in steps}
    for step in steps:
        if step.next_step in edges:
            edges[step.id].add(step.next_step)
        for ref in step.refs:
            if ref in edges and ref != step.id:
                edges[ref].add(step.id)
    # Iterative depth-first search: a spec may have thousands of steps, more than Python's stack.
    state: dict[str, int] = {}
    for root in steps:
        if root.id in state:
            continue
        state[root.id] = 1
        trail = [root.id]
        stack = [iter(sorted(edges[root.id]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[trail.pop()] = 2
                stack.pop()
                continue
            if state.get(nxt) == 1:
                node = trail[-1]
                cycle = [*trail[trail.index(nxt) :], nxt]
                check.error(("steps", ids[node], "next"), f"cycle: {' -> '.join(cycle)}")
            elif nxt not in state:
                state[nxt] = 1
                trail.append(nxt)
                stack.append(iter(sorted(edges[nxt])))


def step_ancestors(steps: list[StepSpec]) -> dict[str, set[str]]:
    """Step id -> every step upstream of it (by ``next`` or by using its output), transitively; cycle-safe."""
    by_id = {s.id: s for s in steps}
    parents: dict[str, set[str]] = {s.id: {r for r in s.refs if r in by_id} for s in steps}
    for step in steps:
        if step.next_step in by_id:
            parents[step.next_step].add(step.id)
    found: dict[str, set[str]] = {}
    for step in steps:
        seen: set[str] = set()
        todo = list(parents[step.id])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(parents.get(node, ()))
        found[step.id] = seen - {step.id}
    return found


def _check_coverage(check: _Checker, steps: list[StepSpec], ids: dict[str, int]) -> None:
    """Every value a step after a gate reads is covered by an approval (``hitl.guard`` checks it at run time).

    A step after a gate may read: a reviewed step's output (the approved one, from the store); an ungated step
    upstream of a reviewed step (the gate's request binds its output, shown to the reviewer); or a step that itself
    runs after a gate (its output is recorded when it finishes and checked when read). Anything else (an ungated
    step on a parallel branch) no approval could cover: a changed value would be acted on unseen, so it is refused.
    """
    gated = {s.id for s in steps if s.gate is not None}
    if not gated:
        return
    above = step_ancestors(steps)
    for step in steps:
        gates = sorted(g for g in above[step.id] if g in gated)
        if not gates:
            continue
        for ref in step.refs:
            if ref not in above or ref in gated or ref == step.id:
                continue
            if any(ref in above[g] for g in gates) or any(g in above[ref] for g in gates):
                continue
            check.error(
                ("steps", ids[step.id], "config"),
                f"step {step.id!r} acts after the approval of step {gates[0]!r} but reads the output of step {ref!r},"
                " which no approval covers (it is neither reviewed, nor upstream of a reviewed step, nor after one):"
                f" gate {ref!r}, or make {gates[0]!r} use it or follow it",
            )


def _check_policies(check: _Checker, steps: list[StepSpec], ids: dict[str, int], params: set[str]) -> None:
    """Parse each gate's policy against what it may read: the gated output, the steps before it, the params."""
    from hitl.policy import GatePolicy, PolicyError, Shapes

    gated = [s for s in steps if s.gate is not None and s.gate.raw_policy is not None]
    if not gated:
        return
    parents: dict[str, set[str]] = {s.id: set(s.refs) for s in steps}
    for step in steps:
        if step.next_step:
            parents.setdefault(step.next_step, set()).add(step.id)
    kinds = {s.id: output_kind(s.type, s.config) if s.type in STEP_CONFIGS else None for s in steps}
    for step in gated:
        assert step.gate is not None
        earlier: set[str] = {step.id}
        todo = [step.id]
        while todo:
            for parent in parents.get(todo.pop(), ()):
                if parent not in earlier and parent in kinds:
                    earlier.add(parent)
                    todo.append(parent)
        shapes = Shapes(
            gated_kind=kinds[step.id],
            earlier={s: kinds[s] for s in earlier},
            params=frozenset(str(p) for p in params),
            later=frozenset(kinds) - earlier,
        )
        prefix: KeyPath = ("steps", ids[step.id], "next", "conditions", "policy")
        try:
            step.gate.policy = GatePolicy.parse(step.gate.raw_policy, shapes)
        except PolicyError as exc:
            for path, message in exc.errors:
                check.error((*prefix, *path), message)


def _check_task_ids(check: _Checker, steps: list[StepSpec], raw_steps: list[Any]) -> None:
    """A gated step adds a task ``<id>__approval``: no other step may have that id (Airflow refuses duplicates)."""
    taken = {
        raw["id"]: i for i, raw in enumerate(raw_steps) if isinstance(raw, dict) and isinstance(raw.get("id"), str)
    }
    for step in steps:
        if step.gate is None:
            continue
        gate_id = step.id + GATE_SUFFIX
        if gate_id in taken:
            check.error(
                ("steps", taken[gate_id], "id"),
                f"step id {gate_id!r} is taken by the approval gate of step {step.id!r}: choose another id",
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
