"""Load workflow specs and collect every mistake with its file, line and key path.

``load_spec`` never raises for a bad spec: it returns the errors, so one broken file never
hides the others (the DAG factory and ``python -m hitl validate`` both rely on that).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hitl.spec.schema import STEP_CONFIGS, Conditions, Next, Step, WorkflowSpec

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
SCHEDULE_PRESETS = (
    "@once",
    "@continuous",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
    "@annually",
)
STEP_REF = re.compile(r"\bsteps\.([A-Za-z0-9_][A-Za-z0-9_-]*)\b")
DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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


def duration_seconds(text: str) -> int | None:
    match = DURATION.match(text)
    if not match:
        return None
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]


class _Lines:
    """Line numbers (1-based) of every key path in a YAML document, plus duplicate keys."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[tuple[KeyPath, int]] = []
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: KeyPath) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    self.duplicates.append(((*path, key), key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._walk(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def line(self, path: KeyPath) -> int:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: Any, model: type[BaseModel]) -> tuple[KeyPath, str]:
    loc: KeyPath = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    if kind == "missing":
        return loc, "is required"
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"
        return loc, f"unknown key {key!r}{hint}"
    expected = {
        "bool_type": "must be true or false",
        "string_type": "must be a string",
        "int_type": "must be a whole number",
        "float_type": "must be a number",
        "list_type": "must be a list",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
    }.get(kind)
    if expected:
        return loc, f"{expected}, got {_describe(value)}"
    if kind == "literal_error":
        return loc, f"must be one of {err['ctx']['expected']}, got {_describe(value)}"
    if kind == "string_pattern_mismatch":
        what = "an email address" if loc and loc[-1] == "email" else f"text matching {err['ctx']['pattern']}"
        return loc, f"must be {what}, got {_describe(value)}"
    if kind == "value_error":
        return loc, str(err["ctx"]["error"])
    return loc, f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_describe(value)}"


def _known_keys(model: type[BaseModel], loc: KeyPath) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        annotation = info.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        current = candidates[0]
    fields = getattr(current, "model_fields", {})
    return sorted(info.alias or name for name, info in fields.items())


class _Checker:
    def __init__(self, path: Path, lines: _Lines) -> None:
        self.file = str(path)
        self.lines = lines
        self.errors: list[SpecError] = []

    def error(self, path: KeyPath, message: str) -> None:
        self.errors.append(SpecError(self.file, self.lines.line(path), format_path(path), message))

    def model(self, model: type[BaseModel], data: Any, prefix: KeyPath) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc, msg = _message(err, model)
                self.error((*prefix, *loc), msg)
            return None


def load_spec(path: Path) -> LoadedSpec:
    """Parse and validate one spec file; never raises for what is in the file."""
    result = LoadedSpec(path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.errors.append(SpecError(str(path), 1, "", f"cannot read file: {exc}"))
        return result
    try:
        loader = Loader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        result.errors.append(SpecError(str(path), (mark.line + 1) if mark else 1, "", f"YAML syntax error: {problem}"))
        return result
    lines = _Lines(root)
    check = _Checker(path, lines)
    for dup_path, line in lines.duplicates:
        check.errors.append(SpecError(str(path), line, format_path(dup_path), "duplicate key"))
    if not isinstance(data, dict):
        check.error((), f"a spec must be a mapping with id and steps, got {_describe(data)}")
        result.errors = check.errors
        return result

    spec = check.model(WorkflowSpec, data, ())
    raw_steps: list[Any] = data["steps"] if isinstance(data.get("steps"), list) else []
    _check_schedule(check, data.get("schedule"))

    steps: list[StepSpec] = []
    ids: dict[str, int] = {}
    declared: set[str] = set()
    for i, raw in enumerate(raw_steps):
        step = check.model(Step, raw, ("steps", i)) if isinstance(raw, dict) else None
        if not isinstance(raw, dict):
            check.error(("steps", i), f"a step must be a mapping with id and type, got {_describe(raw)}")
        if step is None:
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                declared.add(raw["id"])  # still a valid target: report its own errors, not its absence
            continue
        if step.id in ids:
            check.error(("steps", i, "id"), f"duplicate step id {step.id!r} (first used by steps[{ids[step.id]}])")
            continue
        ids[step.id] = i
        steps.append(_check_step(check, step, i))

    _check_links(check, steps, ids, declared | set(ids))
    result.errors = check.errors
    if not check.errors:
        result.spec = spec
        result.steps = steps
    return result


def _check_schedule(check: _Checker, schedule: Any) -> None:
    if schedule is None or not isinstance(schedule, str):
        return
    if schedule.startswith("@"):
        if schedule not in SCHEDULE_PRESETS:
            close = difflib.get_close_matches(schedule, SCHEDULE_PRESETS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            check.error(("schedule",), f"unknown schedule preset {schedule!r}{hint}")
        return
    from croniter import croniter

    if not croniter.is_valid(schedule):
        check.error(("schedule",), f"not a valid cron expression or preset: {schedule!r}")


def _check_step(check: _Checker, step: Step, i: int) -> StepSpec:
    config_model = STEP_CONFIGS.get(step.type)
    if config_model is None:
        close = difflib.get_close_matches(step.type, list(STEP_CONFIGS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(STEP_CONFIGS)})"
        check.error(("steps", i, "type"), f"unknown step type {step.type!r}{hint}")
    else:
        check.model(config_model, step.config, ("steps", i, "config"))

    next_step: str | None = None
    gate: GateSpec | None = None
    if isinstance(step.next, str):
        next_step = step.next
    elif isinstance(step.next, dict):
        parsed = check.model(Next, step.next, ("steps", i, "next"))
        if parsed is not None:
            next_step = parsed.step
            gate = _gate(check, parsed.conditions, i)
    elif step.next is not None:
        check.error(
            ("steps", i, "next"), f"must be a step id or a mapping with step and conditions, got {_describe(step.next)}"
        )
    refs = sorted(set(STEP_REF.findall(repr(step.config))))
    return StepSpec(step.id, step.type, step.config, next_step, gate, step.retries, step.description, refs)


def _gate(check: _Checker, cond: Conditions, i: int) -> GateSpec | None:
    if not cond.approvalRequired:
        return None
    durations: dict[str, int | None] = {}
    for key in ("timeout", "remindAfter", "escalateAfter", "expireAfter"):
        raw = getattr(cond, key)
        durations[key] = duration_seconds(raw) if raw is not None else None
        if raw is not None and durations[key] is None:
            check.error(
                ("steps", i, "next", "conditions", key),
                f"must be a duration like '30m', '48h' or '7d', got {raw!r}",
            )
    timeout = durations["timeout"]
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
        timeout_seconds=timeout,
        remind_after=durations["remindAfter"],
        escalate_after=durations["escalateAfter"],
        escalate_to=[a.as_dict() for a in cond.escalateTo],
        expire_after=durations["expireAfter"],
    )


def _check_links(check: _Checker, steps: list[StepSpec], ids: dict[str, int], declared: set[str]) -> None:
    for step in steps:
        i = ids[step.id]
        if step.next_step is not None and step.next_step not in declared:
            close = difflib.get_close_matches(step.next_step, list(ids), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = (
                ("steps", i, "next", "step")
                if step.gate or not isinstance(step.next_step, str)
                else ("steps", i, "next")
            )
            check.error(where, f"next step {step.next_step!r} does not exist{hint}")
        for ref in step.refs:
            if ref not in declared:
                close = difflib.get_close_matches(ref, list(ids), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
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
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt]
                check.error(("steps", ids[node], "next"), f"cycle: {' -> '.join(cycle)}")
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for step in steps:
        if step.id not in state:
            visit(step.id, [step.id])


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


def load_specs(paths: list[Path]) -> list[LoadedSpec]:
    loaded = [load_spec(p) for p in spec_files(paths)]
    seen: dict[str, Path] = {}
    for item in loaded:
        if item.spec is None:
            continue
        if item.spec.id in seen:
            item.errors.append(
                SpecError(
                    str(item.path), 1, "id", f"workflow id {item.spec.id!r} is already used by {seen[item.spec.id]}"
                )
            )
            item.spec = None
        else:
            seen[item.spec.id] = item.path
    return loaded
