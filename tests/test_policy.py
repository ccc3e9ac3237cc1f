"""The gate policy language: every operator, every validation error with its line, hostile rules and drafts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hitl.gate import GateOptions
from hitl.policy import MAX_DEPTH, MAX_LIST, MAX_NODES, GatePolicy, PolicyError, _sampled
from hitl.spec.loader import load_spec

EMAIL = {"from": "sam@acme.example", "to": "owner@shop.example", "subject": "Hello", "body": "Hi"}


def verdict_of(rules: dict[str, Any], output: Any = None, steps: dict[str, Any] | None = None, **kw: Any) -> Any:
    policy = GatePolicy.parse(rules)
    values = {"output": EMAIL if output is None else output, "steps": steps or {}, "params": kw.get("params", {})}
    return policy.verdict(values, sample_key="d|r|g|-1")


def matches(rule: dict[str, Any], output: Any = None, **steps: Any) -> str:
    """approve when ``rule`` holds: the verdict's decision ("approve" or "none")."""
    found = verdict_of({"approveWhen": rule}, output, {k: {"output": v} for k, v in steps.items()})
    return found.decision if found.decision == "approve" else found.reason


SCORE = {"confidence": 0.93, "label": "bakery", "tags": ["warm", "local"], "ok": True, "nothing": None}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"path": "steps.score.output.confidence", "gte": 0.93}, "approve"),
        ({"path": "steps.score.output.confidence", "gt": 0.93}, "no rule matched"),
        ({"path": "steps.score.output.confidence", "lt": 0.95}, "approve"),
        ({"path": "steps.score.output.confidence", "lte": 0.92}, "no rule matched"),
        ({"path": "steps.score.output.label", "equals": "bakery"}, "approve"),
        ({"path": "steps.score.output.label", "notEquals": "bakery"}, "no rule matched"),
        ({"path": "steps.score.output.ok", "equals": True}, "approve"),
        ({"path": "steps.score.output.ok", "equals": 1}, "no rule matched"),  # no Python 1 == True
        ({"path": "steps.score.output.nothing", "equals": None}, "approve"),
        ({"path": "steps.score.output.label", "in": ["cafe", "bakery"]}, "approve"),
        ({"path": "steps.score.output.label", "notIn": ["cafe", "bakery"]}, "no rule matched"),
        ({"path": "steps.score.output.tags.1", "equals": "local"}, "approve"),
        ({"path": "output.to", "matches": r"@shop\.example$"}, "approve"),
        ({"path": "output.subject", "matches": "(?i)^hello$"}, "approve"),
        ({"path": "output.subject", "matches": "unsubscribe"}, "no rule matched"),
        ({"path": "output.cc", "exists": False}, "approve"),
        ({"path": "output.cc", "exists": True}, "no rule matched"),
        (
            {"all": [{"path": "output.to", "matches": "shop"}, {"path": "steps.score.output.ok", "equals": True}]},
            "approve",
        ),
        (
            {"all": [{"path": "output.to", "matches": "shop"}, {"path": "steps.score.output.ok", "equals": False}]},
            "no rule matched",
        ),
        (
            {"any": [{"path": "output.to", "matches": "nope"}, {"path": "steps.score.output.ok", "equals": True}]},
            "approve",
        ),
        (
            {"any": [{"path": "output.to", "matches": "nope"}, {"path": "steps.score.output.ok", "equals": False}]},
            "no rule matched",
        ),
        ({"not": {"path": "output.subject", "matches": "unsubscribe"}}, "approve"),
        ({"not": {"path": "output.subject", "matches": "Hello"}}, "no rule matched"),
    ],
)
def test_every_operator(rule: dict[str, Any], expected: str) -> None:
    assert matches(rule, score=SCORE) == expected


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        (
            {"path": "steps.score.output.missing", "gte": 0.5},
            "undecided: steps.score.output.missing is not in the output",
        ),
        ({"path": "steps.gone.output.x", "equals": 1}, "undecided: steps.gone.output.x is not in the output"),
        ({"path": "steps.score.output.label", "gte": 0.5}, "undecided: steps.score.output.label is text, not a number"),
        (
            {"path": "steps.score.output.tags", "in": ["a"]},
            "undecided: steps.score.output.tags is a list, not one value",
        ),
        ({"path": "steps.score.output.confidence", "matches": "9"}, "not text"),
        # A missing path is never silently "true", not even under not:
        ({"not": {"path": "steps.score.output.missing", "gte": 0.5}}, "undecided"),
        ({"path": "steps.score.output.tags.7", "equals": "x"}, "undecided"),
    ],
)
def test_a_path_that_does_not_resolve_or_fit_leaves_it_to_a_human(rule: dict[str, Any], why: str) -> None:
    found = verdict_of({"approveWhen": rule}, steps={"score": {"output": SCORE}})
    assert found.decision == "none" and why in found.reason


def test_reject_wins_over_approve_and_names_its_rule() -> None:
    rules = {
        "approveWhen": {"path": "output.to", "matches": "shop"},
        "rejectWhen": {"path": "output.subject", "equals": "Hello"},
    }
    found = verdict_of(rules)
    assert (found.decision, found.rule, found.reason) == ("reject", "rejectWhen", "rejectWhen matched")
    assert found.rule_hash == GatePolicy.parse(rules).rule_hash and len(found.rule_hash) == 12


def test_the_rule_hash_names_the_rules_not_the_mode() -> None:
    rule = {"approveWhen": {"path": "output.to", "matches": "shop"}}
    shadow = GatePolicy.parse({**rule, "mode": "shadow"})
    enforce = GatePolicy.parse({**rule, "mode": "enforce", "sample": 0.2})
    other = GatePolicy.parse({"approveWhen": {"path": "output.to", "matches": "shops"}})
    assert shadow.rule_hash == enforce.rule_hash != other.rule_hash


def test_mode_defaults_to_shadow_and_only_enforce_acts() -> None:
    rule = {"approveWhen": {"path": "output.to", "matches": "shop"}}
    shadow = verdict_of(rule)
    assert shadow.mode == "shadow" and shadow.decision == "approve" and shadow.would_act and not shadow.acts
    enforce = verdict_of({**rule, "mode": "enforce"})
    assert enforce.acts and "policy (enforce" in enforce.describe()
    assert not enforce.holding("the gate needs 2 approvals").acts


def test_sample_sends_its_share_of_approvals_to_a_human_the_same_way_every_time() -> None:
    keys = [f"dag|manual__{i}|gate|-1" for i in range(2000)]
    share = sum(_sampled(k, 0.1) for k in keys) / len(keys)
    assert 0.07 < share < 0.13
    assert [_sampled(k, 0.1) for k in keys] == [_sampled(k, 0.1) for k in keys]  # a retried gate samples alike
    assert not any(_sampled(k, 0) for k in keys[:50]) and all(_sampled(k, 1) for k in keys[:50])
    rule = {"approveWhen": {"path": "output.to", "matches": "shop"}, "mode": "enforce", "sample": 1}
    sampled = verdict_of(rule)
    assert sampled.decision == "approve" and sampled.sampled and not sampled.acts and not sampled.would_act
    # A rejection is never sampled: rejecting sends nothing.
    assert not verdict_of({"rejectWhen": {"path": "output.to", "matches": "shop"}, "sample": 1}).sampled


@pytest.mark.parametrize(
    ("raw", "where", "fragment"),
    [
        ({}, "policy", "needs approveWhen, rejectWhen or both"),
        ({"approveWhen": {"path": "output.to", "matches": "x"}, "mode": "on"}, "mode", "must be shadow or enforce"),
        ({"approveWhen": {"path": "output.to", "matches": "x"}, "sample": 2}, "sample", "share from 0 to 1"),
        ({"approveWhen": {"path": "output.to", "matches": "x"}, "sample": True}, "sample", "share from 0 to 1"),
        ({"approveWen": {}}, "approveWen", "did you mean 'approveWhen'"),
        ({"approveWhen": {"path": "output.to", "match": "x"}}, "approveWhen.match", "did you mean 'matches'"),
        ({"approveWhen": {"path": "output.to"}}, "approveWhen", "found no comparison"),
        ({"approveWhen": {"path": "output.to", "equals": "a", "in": ["a"]}}, "approveWhen", "2 comparisons"),
        ({"approveWhen": {"equals": "a"}}, "approveWhen", "needs a path"),
        ({"approveWhen": {"path": "to", "equals": "a"}}, "approveWhen.path", "must start with output"),
        ({"approveWhen": {"path": "output..to", "equals": "a"}}, "approveWhen.path", "not a dotted path"),
        ({"approveWhen": {"path": 5, "equals": "a"}}, "approveWhen.path", "must be a dotted path"),
        ({"approveWhen": {"path": "output.x", "gt": "9"}}, "approveWhen.gt", "gt compares numbers; got text"),
        ({"approveWhen": {"path": "output.x", "gt": True}}, "approveWhen.gt", "compares numbers; got a boolean"),
        ({"approveWhen": {"path": "output.x", "in": "abc"}}, "approveWhen.in", "non-empty list"),
        ({"approveWhen": {"path": "output.x", "in": [{"a": 1}]}}, "approveWhen.in.0", "compares one value"),
        ({"approveWhen": {"path": "output.x", "matches": "(unclosed"}}, "approveWhen.matches", "not a valid pattern"),
        ({"approveWhen": {"path": "output.x", "exists": "yes"}}, "approveWhen.exists", "true or false"),
        ({"approveWhen": {"all": []}}, "approveWhen.all", "non-empty list"),
        ({"approveWhen": {"all": [{"path": "output.x", "equals": 1}], "any": []}}, "approveWhen", "stands alone"),
        ({"approveWhen": {"not": [1]}}, "approveWhen.not", "must be a predicate"),
        ({"approveWhen": "output.x > 1"}, "approveWhen", "must be a predicate"),
        ({"approveWhen": {"path": "output.x", "equals": "{{ 7 * 7 }}"}, "x": 1}, "x", "unknown key 'x'"),
    ],
)
def test_every_validation_error_says_where(raw: dict[str, Any], where: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as err:
        GatePolicy.parse(raw)
    located = {".".join(map(str, path)) or "policy": message for path, message in err.value.errors}
    assert where in located and fragment in located[where], located


def test_jinja_in_a_value_is_only_text() -> None:
    rule = {"approveWhen": {"path": "output.subject", "equals": "{{ 7 * 7 }}"}}
    assert verdict_of(rule, {**EMAIL, "subject": "49"}).decision == "none"
    assert verdict_of(rule, {**EMAIL, "subject": "{{ 7 * 7 }}"}).decision == "approve"


def test_hostile_rules_are_refused_when_loaded() -> None:
    deep: dict[str, Any] = {"path": "output.x", "equals": 1}
    for _ in range(MAX_DEPTH + 5):
        deep = {"not": deep}
    with pytest.raises(PolicyError, match="nest at most"):
        GatePolicy.parse({"approveWhen": deep})
    wide = {"any": [{"path": "output.x", "equals": i} for i in range(MAX_NODES + 50)]}
    with pytest.raises(PolicyError, match=f"at most {MAX_NODES} predicates") as err:
        GatePolicy.parse({"approveWhen": wide})
    assert len(err.value.errors) == 1  # one line, not 250
    with pytest.raises(PolicyError, match=f"at most {MAX_LIST} values"):
        GatePolicy.parse({"approveWhen": {"path": "output.x", "in": list(range(MAX_LIST + 1))}})
    with pytest.raises(PolicyError, match="at most 500 characters"):
        GatePolicy.parse({"approveWhen": {"path": "output.x", "matches": "a" * 501}})
    # 100,000 levels of nesting (a YAML bomb's shape) are refused quickly, without recursion errors.
    bomb: dict[str, Any] = {"path": "output.x", "equals": 1}
    for _ in range(100_000):
        bomb = {"not": bomb}
    with pytest.raises(PolicyError, match="nest at most"):
        GatePolicy.parse({"approveWhen": bomb})


def test_a_catastrophic_pattern_on_a_hostile_draft_is_undecided_not_a_hang() -> None:
    rule = {"approveWhen": {"path": "output.body", "matches": "^(a|aa)+$"}}
    found = verdict_of(rule, {**EMAIL, "body": "a" * 5000 + "!"})  # backtracks for ever without the time limit
    assert found.decision == "none" and "took longer than" in found.reason


def test_a_huge_draft_is_matched_on_a_bounded_prefix() -> None:
    rule = {"rejectWhen": {"path": "output.body", "matches": "needle"}}
    assert verdict_of(rule, {**EMAIL, "body": "x" * 200_000 + "needle"}).decision == "none"
    assert verdict_of(rule, {**EMAIL, "body": "needle" + "x" * 200_000}).decision == "reject"


def test_gate_options_take_the_spec_mapping_and_refuse_a_bad_one() -> None:
    options = GateOptions(policy={"approveWhen": {"path": "output.to", "matches": "shop"}, "mode": "enforce"})  # type: ignore[arg-type]
    assert isinstance(options.policy, GatePolicy) and options.policy.mode == "enforce"
    assert options.as_dict()["policy"]["mode"] == "enforce"
    with pytest.raises(PolicyError, match="must be shadow or enforce"):
        GateOptions(policy={"approveWhen": {"path": "output.to", "matches": "x"}, "mode": "always"})  # type: ignore[arg-type]


# -- in a spec: checked against the steps before the gate, with the line of each error ---------------------------

SPEC = """\
id: scored_outreach
params:
  segment: bakeries
steps:
  - id: research
    type: webResearch
    config: {{url: "https://shop.example"}}
    next: score
  - id: score
    type: python
    config: {{callable: "os.getcwd"}}
    next: draft
  - id: draft
    type: aiAction
    config:
      output: email
      email: {{from: "a@b.example", to: "c@d.example", subject: "s", body: "b"}}
    next:
      step: send
      conditions:
        approvalRequired: true
        policy:
{policy}
  - id: send
    type: email
    config: {{from: "a@b.example", to: "c@d.example", subject: "s", body: "b"}}
"""


def load(tmp_path: Path, policy: str) -> Any:
    path = tmp_path / "scored.yaml"
    path.write_text(SPEC.format(policy=policy))
    return load_spec(path)


def errors(tmp_path: Path, policy: str) -> list[str]:
    found = load(tmp_path, policy)
    return [str(e).split(":", 1)[1] for e in found.errors]


def test_a_valid_policy_reaches_the_gate_options(tmp_path: Path) -> None:
    from hitl.factory import gate_options

    loaded = load(
        tmp_path,
        "          mode: enforce\n"
        "          approveWhen:\n"
        "            all:\n"
        "              - {path: steps.score.output.confidence, gte: 0.9}\n"
        "              - {path: output.to, matches: 'example$'}\n"
        "              - {path: params.segment, equals: bakeries}\n"
        "              - {path: steps.research.output.title, matches: '(?i)bakery'}\n",
    )
    assert loaded.ok, loaded.errors
    draft = next(s for s in loaded.steps if s.id == "draft")
    options = gate_options(draft, None, {})
    assert options.policy is not None and options.policy.mode == "enforce"
    assert options.policy.steps_read() == ["research", "score"]


@pytest.mark.parametrize(
    ("policy", "line", "fragment"),
    [
        (
            "          approveWhen: {path: steps.scroe.output.confidence, gte: 0.9}\n",
            23,
            "steps[2].next.conditions.policy.approveWhen.path: no step 'scroe' before this gate"
            " (did you mean 'score'?)",
        ),
        (
            "          approveWhen: {path: steps.send.output.x, equals: 1}\n",
            23,
            "step 'send' does not run before this gate: a policy reads only earlier steps",
        ),
        (
            "          approveWhen: {path: output.subjet, equals: hi}\n",
            23,
            "an email output has no field 'subjet' (did you mean 'subject'?)",
        ),
        ("          approveWhen: {path: output.subject, gt: 3}\n", 23, "output.subject is text; gt compares numbers"),
        (
            "          approveWhen: {path: steps.research.output.emails, matches: x}\n",
            23,
            "is a list; matches takes text",
        ),
        ("          approveWhen: {path: params.segmnt, equals: x}\n", 23, "no param 'segmnt' (params: segment)"),
        (
            "          approveWhen:\n            any:\n              - {path: output.to, matches: x}\n"
            "              - {path: output.to, lte: 'a'}\n",
            26,
            "steps[2].next.conditions.policy.approveWhen.any[1].lte: lte compares numbers; got text",
        ),
        (
            "          mode: enforced\n          approveWhen: {path: output.to, matches: x}\n",
            23,
            "policy.mode: must be",
        ),
    ],
)
def test_spec_errors_name_the_line_and_key_path(tmp_path: Path, policy: str, line: int, fragment: str) -> None:
    found = errors(tmp_path, policy)
    assert len(found) == 1, found
    number, _, message = found[0].partition(": ")
    assert int(number) == line, found
    for part in fragment.split("..."):
        assert part in message, found


def test_a_broken_policy_never_hides_the_good_specs(tmp_path: Path) -> None:
    from hitl.spec.loader import load_specs

    (tmp_path / "bad.yaml").write_text(SPEC.format(policy="          approveWhen: {path: nowhere, equals: 1}\n"))
    (tmp_path / "good.yaml").write_text(
        SPEC.replace("scored_outreach", "good_one").format(
            policy="          rejectWhen: {path: output.to, matches: x}\n"
        )
    )
    loaded = {spec.path.name: spec for spec in load_specs([tmp_path])}
    assert loaded["good.yaml"].ok and not loaded["bad.yaml"].ok
