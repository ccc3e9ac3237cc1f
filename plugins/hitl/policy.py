"""Gate policies: declarative rules that decide a draft, or say what they would have decided.

A spec's ``next.conditions.policy`` (or ``ApprovalSensor(policy=...)``)::

    policy:
      mode: shadow              # the default: only record what the policy would have decided
      sample: 0.1               # of what it would approve, this share still goes to a human
      approveWhen:
        all:
          - {path: steps.score.output.confidence, gte: 0.9}
          - {path: output.to, matches: '@(example\\.com|example\\.org)$'}
      rejectWhen:
        any:
          - {path: output.subject, matches: '(?i)unsubscribe'}

A predicate is ``all`` / ``any`` (a list), ``not`` (one predicate), or a comparison: ``path`` and exactly one
of ``equals``, ``notEquals``, ``lt``, ``lte``, ``gt``, ``gte``, ``in``, ``notIn``, ``matches``, ``exists``. A path
starts at ``output`` (the gated step's output), ``steps.<id>.output`` (an earlier step's) or ``params.<name>``.

Why so small a language: a rule that lets a draft past a human must be read and reviewed by a human, must never
run code (no Jinja, no Python) and must terminate quickly on hostile input. Every bound below is checked when
the spec loads; at run time a path that does not resolve, a value of the wrong type or a pattern that takes
too long makes the policy *undecided* (a human reviews), never a silent "true".

Precedence: ``rejectWhen`` is asked first, and wins when both match (rejecting sends nothing).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hitl.spec.suggest import suggest

MAX_DEPTH = 8  # nesting of all / any / not
MAX_NODES = 200  # predicates in one rule
MAX_LIST = 500  # values of one in / notIn
MAX_PATTERN = 500  # characters of one matches pattern
MAX_SCALAR_CHARS = 1000  # characters of one compared string
MAX_PATH_PARTS = 12
MATCH_TIMEOUT = 0.05  # seconds one pattern may take on one value; longer is "undecided"
MAX_MATCH_CHARS = 100_000  # characters of a value a pattern is matched against

MODES = ("shadow", "enforce")
COMPARISONS = ("equals", "notEquals", "lt", "lte", "gt", "gte", "in", "notIn", "matches", "exists")
ORDERING = ("lt", "lte", "gt", "gte")
COMBINATORS = ("all", "any", "not")
RULES = ("approveWhen", "rejectWhen")
POLICY_KEYS = ("mode", "sample", "notify", *RULES)

Decision = Literal["approve", "reject", "none"]
KeyPath = tuple[str | int, ...]


class PolicyError(ValueError):
    """A policy that cannot be used; ``errors`` are (key path below ``policy``, message) pairs."""

    def __init__(self, errors: list[tuple[KeyPath, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, p)) or 'policy'}: {m}" for p, m in errors))


class Undecided(Exception):
    """A rule could not be evaluated on this draft (a missing path, a wrong type, a slow pattern)."""


# -- the predicate tree ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    path: tuple[str, ...]
    op: str
    value: Any

    def test(self, values: Mapping[str, Any]) -> bool:
        found, present = _resolve(values, self.path)
        if self.op == "exists":
            return present is bool(self.value)
        if not present:
            raise Undecided(f"{'.'.join(self.path)} is not in the output")
        if self.op in ("equals", "notEquals"):
            return (_same(found, self.value)) is (self.op == "equals")
        if self.op in ("in", "notIn"):
            _scalar_at(found, self.path)
            inside = any(_same(found, v) for v in self.value)
            return inside is (self.op == "in")
        if self.op in ORDERING:
            if not _number(found):
                raise Undecided(f"{'.'.join(self.path)} is {_describe(found)}, not a number")
            return {"lt": found < self.value, "lte": found <= self.value, "gt": found > self.value}.get(
                self.op, found >= self.value
            )
        # matches
        if not isinstance(found, str):
            raise Undecided(f"{'.'.join(self.path)} is {_describe(found)}, not text")
        import regex

        try:
            return regex.search(self.value, found[:MAX_MATCH_CHARS], timeout=MATCH_TIMEOUT) is not None
        except TimeoutError:
            raise Undecided(f"the pattern on {'.'.join(self.path)} took longer than {MATCH_TIMEOUT:g}s") from None

    def paths(self) -> list[tuple[str, ...]]:
        return [self.path]


@dataclass(frozen=True)
class AllOf:
    items: tuple[Predicate, ...]

    def test(self, values: Mapping[str, Any]) -> bool:
        return all(p.test(values) for p in self.items)

    def paths(self) -> list[tuple[str, ...]]:
        return [path for p in self.items for path in p.paths()]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Predicate, ...]

    def test(self, values: Mapping[str, Any]) -> bool:
        return any(p.test(values) for p in self.items)

    def paths(self) -> list[tuple[str, ...]]:
        return [path for p in self.items for path in p.paths()]


@dataclass(frozen=True)
class Not:
    item: Predicate

    def test(self, values: Mapping[str, Any]) -> bool:
        return not self.item.test(values)

    def paths(self) -> list[tuple[str, ...]]:
        return self.item.paths()


Predicate = Compare | AllOf | AnyOf | Not


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(a: Any, b: Any) -> bool:
    """Equality without Python's 1 == True."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return bool(a == b)


def _scalar_at(value: Any, path: Sequence[str]) -> None:
    if isinstance(value, dict | list):
        raise Undecided(f"{'.'.join(path)} is {_describe(value)}, not one value")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _resolve(values: Mapping[str, Any], path: Sequence[str]) -> tuple[Any, bool]:
    current: Any = values
    for part in path:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None, False
    return current, True


# -- parsing (the spec's raw mapping -> a tree), with errors by key path ----------------------------------------


class _Parser:
    def __init__(self, shapes: Shapes | None) -> None:
        self.shapes = shapes
        self.errors: list[tuple[KeyPath, str]] = []
        self.nodes = 0

    def error(self, at: KeyPath, message: str) -> None:
        self.errors.append((at, message))

    def predicate(self, raw: Any, at: KeyPath, depth: int) -> Predicate | None:
        self.nodes += 1
        if self.nodes == MAX_NODES + 1:
            self.error(at, f"a rule has at most {MAX_NODES} predicates")
        if self.nodes > MAX_NODES:
            return None
        if depth > MAX_DEPTH:
            self.error(at, f"rules nest at most {MAX_DEPTH} levels of all / any / not")
            return None
        if not isinstance(raw, dict):
            self.error(at, f"must be a predicate (all, any, not, or path with a comparison), got {_describe(raw)}")
            return None
        combinators = [k for k in COMBINATORS if k in raw]
        if combinators:
            return self._combinator(raw, combinators, at, depth)
        return self._compare(raw, at)

    def _combinator(self, raw: dict[str, Any], found: list[str], at: KeyPath, depth: int) -> Predicate | None:
        if len(raw) != 1:
            extra = sorted(str(k) for k in raw if k != found[0])
            self.error(at, f"{found[0]} stands alone in its mapping; move {', '.join(extra)} into a predicate")
            return None
        key = found[0]
        body = raw[key]
        if key == "not":
            inner = self.predicate(body, (*at, "not"), depth + 1)
            return Not(inner) if inner is not None else None
        if not isinstance(body, list) or not body:
            self.error((*at, key), f"{key} takes a non-empty list of predicates, got {_describe(body)}")
            return None
        items = [self.predicate(p, (*at, key, j), depth + 1) for j, p in enumerate(body)]
        if any(p is None for p in items):
            return None
        kept = tuple(p for p in items if p is not None)
        return AllOf(kept) if key == "all" else AnyOf(kept)

    def _compare(self, raw: dict[str, Any], at: KeyPath) -> Predicate | None:
        unknown = [k for k in raw if k != "path" and k not in COMPARISONS]
        if unknown:
            key = str(unknown[0])
            close = suggest(key, [*COMPARISONS, *COMBINATORS, "path"])
            hint = f" (did you mean {close!r}?)" if close else f" (comparisons: {', '.join(COMPARISONS)})"
            self.error((*at, key), f"unknown key {key!r}{hint}")
            return None
        if "path" not in raw:
            self.error(at, "a comparison needs a path, e.g. path: steps.score.output.confidence")
            return None
        ops = [k for k in raw if k in COMPARISONS]
        if len(ops) != 1:
            what = "no comparison" if not ops else f"{len(ops)} comparisons ({', '.join(ops)})"
            self.error(at, f"a comparison has exactly one of {', '.join(COMPARISONS)}; found {what}")
            return None
        path = self._path(raw["path"], (*at, "path"))
        op = ops[0]
        value = self._value(op, raw[op], (*at, op))
        if path is None or value is _BAD:
            return None
        if self.shapes is not None:
            problem = self.shapes.check(path, op, value)
            if problem:
                self.error((*at, "path"), problem)
                return None
        return Compare(path, op, value)

    def _path(self, raw: Any, at: KeyPath) -> tuple[str, ...] | None:
        if not isinstance(raw, str) or not raw.strip():
            example = "output.subject or steps.score.output.confidence"
            self.error(at, f"must be a dotted path like {example}, got {_describe(raw)}")
            return None
        parts = tuple(raw.strip().split("."))
        if len(parts) > MAX_PATH_PARTS or any(not p for p in parts):
            self.error(at, f"{raw[:80]!r} is not a dotted path of at most {MAX_PATH_PARTS} parts")
            return None
        if parts[0] == "output":
            return parts
        if parts[0] == "steps" and len(parts) >= 3 and parts[2] == "output":
            return parts
        if parts[0] == "params" and len(parts) >= 2:
            return parts
        self.error(at, f"{raw[:80]!r} must start with output, steps.<step id>.output or params.<name>")
        return None

    def _value(self, op: str, raw: Any, at: KeyPath) -> Any:
        if op == "exists":
            if not isinstance(raw, bool):
                self.error(at, f"exists takes true or false, got {_describe(raw)}")
                return _BAD
            return raw
        if op in ORDERING:
            if not _number(raw):
                self.error(at, f"{op} compares numbers; got {_describe(raw)}")
                return _BAD
            return raw
        if op == "matches":
            if not isinstance(raw, str) or not raw:
                self.error(at, f"matches takes a pattern (text), got {_describe(raw)}")
                return _BAD
            if len(raw) > MAX_PATTERN:
                self.error(at, f"a pattern has at most {MAX_PATTERN} characters, this one {len(raw)}")
                return _BAD
            import regex

            try:
                regex.compile(raw)
            except regex.error as exc:
                self.error(at, f"not a valid pattern: {exc}")
                return _BAD
            return raw
        if op in ("in", "notIn"):
            if not isinstance(raw, list) or not raw:
                self.error(at, f"{op} takes a non-empty list of values, got {_describe(raw)}")
                return _BAD
            if len(raw) > MAX_LIST:
                self.error(at, f"{op} takes at most {MAX_LIST} values, this one {len(raw)}")
                return _BAD
            for j, item in enumerate(raw):
                if not self._scalar(item, (*at, j)):
                    return _BAD
            return tuple(raw)
        return raw if self._scalar(raw, at) else _BAD

    def _scalar(self, raw: Any, at: KeyPath) -> bool:
        if isinstance(raw, dict | list):
            self.error(at, f"compares one value (text, number, true/false or null), got {_describe(raw)}")
            return False
        if isinstance(raw, float) and not math.isfinite(raw):
            self.error(at, "a number must be finite")
            return False
        if isinstance(raw, str) and len(raw) > MAX_SCALAR_CHARS:
            self.error(at, f"a compared value has at most {MAX_SCALAR_CHARS} characters, this one {len(raw)}")
            return False
        return True


_BAD = object()


# -- what the paths may reach: known output shapes (checked at spec load) ----------------------------------------

TEXT, NUMBER, LIST, ANY = "text", "number", "list", "any"
# Fields of the outputs whose shape the plugin knows; other kinds (json, a python step) may hold anything.
KNOWN_FIELDS: dict[str, dict[str, str]] = {
    "email": {"from": TEXT, "to": ANY, "subject": TEXT, "body": TEXT, "cc": ANY, "bcc": ANY, "reply_to": ANY},
    "text": {"text": TEXT},
    "research": {"title": TEXT, "description": TEXT, "emails": LIST, "phones": LIST, "text": TEXT, "url": TEXT},
}


@dataclass(frozen=True)
class Shapes:
    """What a gate's policy may read: the gated step's output kind, earlier steps' kinds, the params."""

    gated_kind: str | None
    earlier: Mapping[str, str | None]  # step id -> output kind (None: unknown), only steps before the gate
    params: frozenset[str] | None = None  # None: not known (hand-written DAGs)
    later: frozenset[str] = frozenset()  # steps that exist but do not come before the gate

    def check(self, path: tuple[str, ...], op: str, value: Any) -> str | None:
        if path[0] == "params":
            if self.params is not None and path[1] not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                return f"no param {path[1]!r} (params: {known})"
            return None
        if path[0] == "steps":
            step = path[1]
            if step not in self.earlier:
                if step in self.later:
                    return f"step {step!r} does not run before this gate: a policy reads only earlier steps"
                close = suggest(step, list(self.earlier))
                hint = f" (did you mean {close!r}?)" if close else ""
                return f"no step {step!r} before this gate{hint}"
            kind, rest, where = self.earlier[step], path[3:], ".".join(path[:3])
        else:
            kind, rest, where = self.gated_kind, path[1:], "output"
        fields = KNOWN_FIELDS.get(kind or "")
        if fields is None or not rest:
            if not rest and fields is not None and op not in ("exists",):
                return f"{where} is {kind} output (a mapping of {', '.join(fields)}): compare one of its fields"
            return None
        name = rest[0]
        if name not in fields:
            close = suggest(name, list(fields))
            hint = f" (did you mean {close!r}?)" if close else f" (fields: {', '.join(fields)})"
            article = "an" if (kind or "x")[0] in "aeiou" else "a"
            return f"{article} {kind} output has no field {name!r}{hint}"
        kind_of = fields[name]
        if len(rest) > 1 and kind_of == TEXT:
            return f"{where}.{name} is text: it has no part {rest[1]!r}"
        if len(rest) == 1 and op in ORDERING and kind_of in (TEXT, LIST):
            return f"{where}.{name} is {kind_of}; {op} compares numbers"
        if len(rest) == 1 and op == "matches" and kind_of == LIST:
            return f"{where}.{name} is a list; matches takes text (match one item: {where}.{name}.0)"
        return None


# -- the policy and its verdict ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a policy decided (or, in shadow mode, would have decided) about one draft."""

    decision: Decision
    rule: str | None  # approveWhen | rejectWhen: the rule that matched
    rule_hash: str
    mode: str
    reason: str  # one line for the history and the review page
    sampled: bool = False  # a match sent to a human anyway (``sample``)
    held: str | None = None  # why the policy may not act on it (quorum, a change request), even when enforced

    @property
    def acts(self) -> bool:
        """True when the policy decides this draft itself."""
        return self.mode == "enforce" and self.decision != "none" and not self.sampled and self.held is None

    @property
    def would_act(self) -> bool:
        """True when the policy, enforced, would have decided this draft (what shadow mode counts as saved)."""
        return self.decision != "none" and not self.sampled and self.held is None

    def holding(self, why: str) -> Verdict:
        from dataclasses import replace

        return replace(self, held=self.held or why)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "rule": self.rule,
            "rule_hash": self.rule_hash,
            "mode": self.mode,
            "reason": self.reason,
            "sampled": self.sampled,
            "held": self.held,
        }

    def describe(self) -> str:
        """``policy (shadow) would approve: approveWhen matched``, for pages and logs."""
        verb = {"approve": "approve", "reject": "reject", "none": "leave it to a human"}[self.decision]
        tense = "would " if self.mode == "shadow" or not self.acts else ""
        extra = " (sampled for a human)" if self.sampled else (f" (held: {self.held})" if self.held else "")
        return f"policy ({self.mode}, rule {self.rule_hash}) {tense}{verb}: {self.reason}{extra}"


@dataclass(frozen=True)
class GatePolicy:
    """A gate's rules, validated; ``raw`` is the spec's mapping, kept for the hash and for serialization."""

    raw: Mapping[str, Any] = field(hash=False, compare=True)
    approve_when: Predicate | None = field(default=None, compare=False)
    reject_when: Predicate | None = field(default=None, compare=False)
    mode: str = "shadow"
    sample: float = 0.0
    notify: bool = False

    @classmethod
    def parse(cls, raw: Any, shapes: Shapes | None = None) -> GatePolicy:
        """The policy of a spec's (or a sensor's) mapping; raises ``PolicyError`` with every problem found."""
        errors: list[tuple[KeyPath, str]] = []
        if isinstance(raw, GatePolicy):
            raw = raw.raw
        if not isinstance(raw, dict):
            raise PolicyError([((), f"must be a mapping with approveWhen and/or rejectWhen, got {_describe(raw)}")])
        for key in raw:
            if key not in POLICY_KEYS:
                close = suggest(str(key), list(POLICY_KEYS))
                hint = f" (did you mean {close!r}?)" if close else f" (keys: {', '.join(POLICY_KEYS)})"
                errors.append(((str(key),), f"unknown key {str(key)!r}{hint}"))
        mode = raw.get("mode", "shadow")
        if mode not in MODES:
            errors.append((("mode",), f"must be shadow or enforce, got {mode!r}"[:200]))
        sample = raw.get("sample", 0.0)
        if not _number(sample) or not 0 <= sample <= 1:
            errors.append((("sample",), f"must be a share from 0 to 1 (0.1 = one in ten), got {sample!r}"[:200]))
        notify = raw.get("notify", False)
        if not isinstance(notify, bool):
            errors.append((("notify",), f"must be true or false, got {_describe(notify)}"))
        if not any(rule in raw for rule in RULES):
            errors.append(((), "a policy needs approveWhen, rejectWhen or both"))
        parser = _Parser(shapes)
        trees: dict[str, Predicate | None] = {}
        for rule in RULES:
            if rule in raw:
                trees[rule] = parser.predicate(raw[rule], (rule,), 1)
        errors.extend(parser.errors)
        if errors:
            raise PolicyError(errors)
        return cls(
            raw=dict(raw),
            approve_when=trees.get("approveWhen"),
            reject_when=trees.get("rejectWhen"),
            mode=str(mode),
            sample=float(sample),
            notify=bool(notify),
        )

    @property
    def rule_hash(self) -> str:
        """Twelve hex digits of SHA-256 over the rules (not the mode or sample): names exactly what decided."""
        rules = {k: self.raw[k] for k in RULES if k in self.raw}
        text = json.dumps(rules, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def steps_read(self) -> list[str]:
        """Earlier steps whose outputs the rules read (their XComs are pulled for the verdict)."""
        paths = [path for tree in (self.approve_when, self.reject_when) if tree is not None for path in tree.paths()]
        return sorted({p[1] for p in paths if p[0] == "steps"})

    def verdict(self, values: Mapping[str, Any], *, sample_key: str) -> Verdict:
        """Ask the rules about one draft; ``values`` is ``{"output", "steps": {id: {"output"}}, "params"}``.

        ``sample_key`` names the gate instance (dag, run, gate, map index), so a retried gate samples the same way.
        """
        base: dict[str, Any] = {"rule_hash": self.rule_hash, "mode": self.mode}
        for rule, tree in (("rejectWhen", self.reject_when), ("approveWhen", self.approve_when)):
            if tree is None:
                continue
            try:
                matched = tree.test(values)
            except Undecided as exc:
                return Verdict(decision="none", rule=None, reason=f"undecided: {exc}", **base)
            except RecursionError:  # bounded by MAX_DEPTH; never let a rule fail the gate
                return Verdict(decision="none", rule=None, reason="undecided: the rule nests too deeply", **base)
            if matched:
                decision: Decision = "reject" if rule == "rejectWhen" else "approve"
                sampled = decision == "approve" and _sampled(sample_key, self.sample)
                return Verdict(decision=decision, rule=rule, reason=f"{rule} matched", sampled=sampled, **base)
        return Verdict(decision="none", rule=None, reason="no rule matched", **base)


def _sampled(key: str, share: float) -> bool:
    """Deterministic per gate instance: the same draft of the same run is always sampled the same way."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    point = int(hashlib.sha256(key.encode()).hexdigest()[:13], 16) / float(16**13)
    return point < share


def coerce(value: Any) -> GatePolicy | None:
    """``GateOptions.policy`` from what a caller passed: a ``GatePolicy``, the spec's mapping, or None."""
    if value is None or isinstance(value, GatePolicy):
        return value
    return GatePolicy.parse(value)
