"""Checks over the steps of one spec as a graph: links, cycles, what an approval covers, policies, task ids.

Each takes the loader's checker (``error(key_path, message)``) and the steps already checked one by one, so a
mistake comes out as ``FILE:LINE: steps[i]...: message`` like every other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hitl.spec.messages import KeyPath, at
from hitl.spec.schema import STEP_CONFIGS
from hitl.spec.suggest import suggest
from hitl.steps import output_kind

if TYPE_CHECKING:
    from hitl.spec.loader import StepSpec, _Checker

GATE_SUFFIX = "__approval"  # = hitl.steps.operator.GATE_SUFFIX (not imported here: it pulls in Airflow)


def check_links(check: _Checker, steps: list[StepSpec], ids: dict[str, int], declared: set[str]) -> None:
    for step in steps:
        i = ids[step.id]
        others = sorted(declared - {step.id})  # a step never links to itself: no use suggesting it
        if step.next_step is not None and step.next_step not in declared:
            close = suggest(step.next_step, others)
            hint = f" (did you mean {close!r}?)" if close else ""
            where: KeyPath = ("steps", i, "next")
            if isinstance(at(check.parsed.data, where), dict):
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


def check_coverage(check: _Checker, steps: list[StepSpec], ids: dict[str, int]) -> None:
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


def check_policies(check: _Checker, steps: list[StepSpec], ids: dict[str, int], params: set[str]) -> None:
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


def check_task_ids(check: _Checker, steps: list[StepSpec], raw_steps: list[Any]) -> None:
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
