"""Request changes: the third decision, its rules and bound, the next round's request, and the feedback a re-run sees.

Airflow's side (clearing the step in its run) is faked here: ``StepRerun`` is replaced by a recorder, except in
the test that proves a process without Airflow's database is refused before anything is written. The real
clearing runs end to end in ``tests/e2e/test_changes_e2e.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpers import gate, render_partial
from hitl.decisions import (
    AlreadyDecided,
    DecisionError,
    GateGone,
    NoRevisionsLeft,
    NotAllowed,
    RerunRefused,
    decide,
)
from hitl.gate import GateOptions
from hitl.guard import GateNotApproved, check_approval
from hitl.identity import Reviewer
from hitl.rerun import GateNotWaiting, RerunUnavailable
from hitl.rounds import feedback_prompt, review_of
from hitl.store import APPROVED, CHANGES_REQUESTED, PENDING, Store

ALICE = Reviewer("alice", email="alice@example.com", roles=frozenset({"user"}))
BOB = Reviewer("bob", roles=frozenset({"user"}))
VIC = Reviewer("vic", roles=frozenset({"viewer"}))
GATE = "draft_email__approval"


class FakeRerun:
    """Stands in for ``hitl.rerun.StepRerun``: records what would be cleared, and whether it was committed."""

    calls: list[tuple[int, str]] = []
    unavailable: Exception | str | None = None
    commit_fails: bool = False
    clear_fails: bool = False
    after_commit: Any = None  # called once Airflow's side committed

    def __init__(self, req: Any) -> None:
        self.req = req
        self.committed = False

    def __enter__(self) -> FakeRerun:
        if isinstance(FakeRerun.unavailable, Exception):
            raise FakeRerun.unavailable
        if FakeRerun.unavailable:
            raise RerunUnavailable(FakeRerun.unavailable)
        return self

    def clear(self) -> list[str]:
        if FakeRerun.clear_fails:
            raise RerunUnavailable("cannot re-run step draft_email: Airflow's database did not take the clearing")
        FakeRerun.calls.append((self.req.id, "cleared"))
        return [self.req.step_id, self.req.gate_task_id, "send_email"]

    def commit(self) -> None:
        if FakeRerun.commit_fails:  # as StepRerun.commit says it: Airflow's database did not take it
            raise RerunUnavailable("cannot re-run step draft_email: Airflow's database did not take the clearing")
        FakeRerun.calls.append((self.req.id, "committed"))
        self.committed = True
        if FakeRerun.after_commit is not None:
            FakeRerun.after_commit()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.committed:
            FakeRerun.calls.append((self.req.id, "rolled back"))


@pytest.fixture
def rerun(monkeypatch: pytest.MonkeyPatch) -> type[FakeRerun]:
    FakeRerun.calls = []
    FakeRerun.unavailable = None
    FakeRerun.commit_fails = False
    FakeRerun.clear_fails = False
    FakeRerun.after_commit = None
    monkeypatch.setattr("hitl.decisions.StepRerun", FakeRerun)
    return FakeRerun


def draft(n: int, **overrides: Any) -> Any:
    output = {"from": "Sam <sam@acme.example>", "to": "owner@shop.example", "subject": f"Hello {n}", "body": f"v{n}"}
    return gate(output=output, **overrides)


def test_request_changes_closes_the_request_reruns_the_step_and_the_next_draft_is_round_two(
    store: Store, rerun: type[FakeRerun]
) -> None:
    first, created = store.record_request(draft(1))
    assert created and first.revision == 1 and first.previous_request_id is None and first.max_revisions == 3

    outcome = decide(store, first.id, ALICE, "request_changes", comment="  Shorter, and mention the free trial ")
    assert outcome.final and outcome.request.status == CHANGES_REQUESTED
    assert outcome.request.comment == "Shorter, and mention the free trial" and outcome.request.decided_by == "alice"
    assert "runs again with the feedback" in outcome.message and "2 change requests left" in outcome.message
    assert rerun.calls == [(first.id, "cleared"), (first.id, "committed")]
    event = store.history(first.id)[-1]
    assert event.event == "changes_requested" and event.actor == "alice"
    assert event.detail["comment"] == "Shorter, and mention the free trial" and event.detail["used"] == 1

    # changes requested is never an approval: a step after the gate refuses to act on it
    with pytest.raises(GateNotApproved, match=r"is changes_requested"):
        check_approval(dag_id="outreach", run_id="manual__1", gate_task_id=GATE, store=store)

    # the re-run step's new draft is the gate's next request, linked to the one it answers
    second, created = store.record_request(draft(2))
    assert created and second.id != first.id
    assert (second.revision, second.previous_request_id, second.status) == (2, first.id, PENDING)
    assert store.history(second.id)[0].detail["previous_request_id"] == first.id

    # a retry of the gate (or of the step making the same draft) records nothing new
    again, created = store.record_request(draft(2))
    assert not created and again.id == second.id
    assert store.current_for_gate("outreach", "manual__1", GATE).id == second.id  # type: ignore[union-attr]

    assert decide(store, second.id, ALICE, "approve").request.status == APPROVED
    assert check_approval(dag_id="outreach", run_id="manual__1", gate_task_id=GATE, store=store)["body"] == "v2"


def test_the_same_draft_after_changes_is_still_a_new_round_and_its_retry_no_duplicate(
    store: Store, rerun: type[FakeRerun]
) -> None:
    first, _ = store.record_request(draft(1))
    decide(store, first.id, ALICE, "request_changes", comment="try again")
    second, created = store.record_request(draft(1))  # the step ignored the feedback
    assert created and second.revision == 2 and second.previous_request_id == first.id
    third, created = store.record_request(draft(1))  # a retry
    assert not created and third.id == second.id


def test_a_changed_output_within_a_round_supersedes_and_keeps_the_round(store: Store, rerun: type[FakeRerun]) -> None:
    first, _ = store.record_request(draft(1))
    decide(store, first.id, ALICE, "request_changes", comment="more")
    second, _ = store.record_request(draft(2))
    replaced, created = store.record_request(draft(3))  # the step ran again on its own (a retry with new output)
    assert created and (replaced.revision, replaced.previous_request_id) == (2, first.id)
    assert store.get(second.id).status == "superseded"  # type: ignore[union-attr]


def test_max_revisions_bounds_the_rounds(store: Store, rerun: type[FakeRerun]) -> None:
    req, _ = store.record_request(draft(1, max_revisions=2))
    for n in (2, 3):
        decide(store, req.id, ALICE, "request_changes", comment=f"round {n - 1}")
        req, _ = store.record_request(draft(n, max_revisions=2))
        assert req.revision == n
    assert req.revisions_left == 0
    with pytest.raises(NoRevisionsLeft, match=r"^no change requests left: 2 of 2 used; approve or reject$"):
        decide(store, req.id, ALICE, "request_changes", comment="once more")
    assert store.get(req.id).status == PENDING  # type: ignore[union-attr]
    assert store.history(req.id)[-1].event == "refused"
    assert len([c for c in rerun.calls if c[1] == "cleared"]) == 2  # nothing cleared for the refused one
    assert decide(store, req.id, ALICE, "reject", comment="enough").request.status == "rejected"


def test_max_revisions_zero_allows_no_change_request(store: Store, rerun: type[FakeRerun]) -> None:
    req, _ = store.record_request(draft(1, max_revisions=0))
    with pytest.raises(NoRevisionsLeft, match="no change requests left: 0 of 0 used"):
        decide(store, req.id, ALICE, "request_changes", comment="x")
    assert rerun.calls == []


@pytest.mark.parametrize("value", [-1, 21, "3", True, 2.5])
def test_max_revisions_option_is_a_whole_number_from_0_to_20(value: Any) -> None:
    with pytest.raises(ValueError, match="max_revisions must be a whole number from 0 to 20"):
        GateOptions(max_revisions=value)


def test_non_approvers_viewers_and_the_triggering_user_are_refused(store: Store, rerun: type[FakeRerun]) -> None:
    req, _ = store.record_request(draft(1, allow_self_approval=False, triggered_by="carol"))
    with pytest.raises(NotAllowed, match=r"bob is not an approver of request \d+"):
        decide(store, req.id, BOB, "request_changes", comment="shorter")
    with pytest.raises(NotAllowed):
        decide(store, req.id, VIC, "request_changes", comment="shorter")
    own, _ = store.record_request(
        draft(1, run_id="r2", allow_self_approval=False, triggered_by="alice", approvers=[{"userId": "alice"}])
    )
    with pytest.raises(NotAllowed, match="alice triggered this run and may not request changes on it"):
        decide(store, own.id, ALICE, "request_changes", comment="shorter")
    assert rerun.calls == []
    assert store.get(req.id).status == PENDING  # type: ignore[union-attr]
    assert [e.event for e in store.history(req.id)][-2:] == ["refused", "refused"]


@pytest.mark.parametrize(
    ("feedback", "message"),
    [(None, "feedback is required"), ("   ", "feedback is required"), ("x" * 2001, "feedback is too long")],
)
def test_feedback_is_required_and_bounded(
    store: Store, rerun: type[FakeRerun], feedback: str | None, message: str
) -> None:
    req, _ = store.record_request(draft(1))
    with pytest.raises(DecisionError, match=message):
        decide(store, req.id, ALICE, "request_changes", comment=feedback)
    assert rerun.calls == [] and store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_an_edit_cannot_be_sent_back(store: Store, rerun: type[FakeRerun]) -> None:
    req, _ = store.record_request(draft(1))
    with pytest.raises(DecisionError, match="an edit can only be approved"):
        decide(store, req.id, ALICE, "request_changes", comment="x", edited_output={**req.output, "subject": "E"})


def test_already_decided_either_way(store: Store, rerun: type[FakeRerun]) -> None:
    req, _ = store.record_request(draft(1))
    decide(store, req.id, ALICE, "approve")
    with pytest.raises(AlreadyDecided, match="already decided by alice"):
        decide(store, req.id, ALICE, "request_changes", comment="too late")
    other, _ = store.record_request(draft(1, run_id="r2"))
    decide(store, other.id, ALICE, "request_changes", comment="shorter")
    with pytest.raises(AlreadyDecided, match="changes already requested by alice"):
        decide(store, other.id, ALICE, "approve")


def test_a_lost_race_rolls_the_clearing_back(
    store: Store, rerun: type[FakeRerun], monkeypatch: pytest.MonkeyPatch
) -> None:
    req, _ = store.record_request(draft(1))
    real_lock = store.lock_status

    def decided_meanwhile(conn: Any, request_id: int) -> str | None:
        store.close_request(conn, request_id, status="rejected", user="carol", comment="no", edited_output=None)
        return real_lock(conn, request_id)

    monkeypatch.setattr(store, "lock_status", decided_meanwhile)
    with pytest.raises(AlreadyDecided, match="already decided by carol"):
        decide(store, req.id, ALICE, "request_changes", comment="shorter")
    assert rerun.calls == [(req.id, "cleared"), (req.id, "rolled back")]


def test_refused_before_writing_when_the_step_cannot_be_rerun(store: Store, rerun: type[FakeRerun]) -> None:
    rerun.unavailable = "cannot re-run step draft_email from here: Airflow's database is not reachable"
    req, _ = store.record_request(draft(1))
    with pytest.raises(RerunRefused, match="Airflow's database is not reachable"):
        decide(store, req.id, ALICE, "request_changes", comment="shorter")
    after = store.get(req.id)
    assert after is not None and after.status == PENDING and after.decided_by is None
    assert store.history(req.id)[-1].event == "refused"


def test_airflow_commit_failing_rolls_the_store_back_and_is_refused(store: Store, rerun: type[FakeRerun]) -> None:
    """Airflow's commit is made inside the store's transaction: when it fails, nothing is written (and it says so)."""
    rerun.commit_fails = True
    req, _ = store.record_request(draft(1))
    with pytest.raises(RerunRefused, match="Airflow's database did not take the clearing"):
        decide(store, req.id, ALICE, "request_changes", comment="shorter")
    after = store.get(req.id)
    assert after is not None and after.status == PENDING and after.decided_by is None and after.comment is None
    assert "changes_requested" not in [e.event for e in store.history(req.id)]
    assert store.history(req.id)[-1].event == "refused"
    assert rerun.calls == [(req.id, "cleared"), (req.id, "rolled back")]
    rerun.commit_fails = False  # Airflow is back: the same change request goes through
    assert decide(store, req.id, ALICE, "request_changes", comment="shorter").request.status == CHANGES_REQUESTED


def test_clearing_failing_in_airflow_is_refused_before_the_store_is_written(
    store: Store, rerun: type[FakeRerun]
) -> None:
    rerun.clear_fails = True
    req, _ = store.record_request(draft(1))
    with pytest.raises(RerunRefused, match="did not take the clearing"):
        decide(store, req.id, ALICE, "request_changes", comment="shorter")
    assert store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_step_rerun_reports_airflow_failures_as_rerun_unavailable() -> None:
    """``StepRerun.clear``/``commit``: Airflow's database failing is "cannot re-run", never "store unavailable"."""
    from sqlalchemy.exc import OperationalError

    from hitl.rerun import StepRerun

    class DeadSession:
        def flush(self) -> None:
            raise OperationalError("UPDATE task_instance", {}, Exception("server closed the connection"))

        commit = flush

    rerun = StepRerun(type("Req", (), {"step_id": "draft_email"})())  # type: ignore[arg-type]  # named only
    rerun._session = DeadSession()
    for step in (rerun.clear, rerun.commit):
        with pytest.raises(RerunUnavailable, match=r"draft_email: Airflow's database did not take the clearing"):
            step()


def test_the_store_failing_to_commit_after_airflow_did_leaves_a_pending_request_the_rerun_reuses(
    store: Store, rerun: type[FakeRerun], monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import contextmanager

    from sqlalchemy.exc import OperationalError

    from hitl.views.limits import store_unavailable

    req, _ = store.record_request(draft(1))
    real_writing = store.writing

    @contextmanager
    def commit_fails() -> Any:
        with real_writing() as conn:
            yield conn
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(store, "writing", commit_fails)
    with pytest.raises(OperationalError) as raised:
        decide(store, req.id, ALICE, "request_changes", comment="shorter")
    assert store_unavailable(raised.value)  # "the decision store is unavailable": true, nothing was decided
    monkeypatch.undo()
    assert rerun.calls == [(req.id, "cleared"), (req.id, "committed")]
    assert store.get(req.id).status == PENDING  # type: ignore[union-attr]
    again, created = store.record_request(draft(1))  # the re-run step's same draft: the same request
    assert not created and again.id == req.id
    _, created = store.record_request(draft(2))  # a different draft supersedes it
    assert created and store.get(req.id).status == "superseded"  # type: ignore[union-attr]


def test_once_both_committed_the_outcome_stands_even_if_reading_it_back_fails(
    store: Store, rerun: type[FakeRerun], monkeypatch: pytest.MonkeyPatch
) -> None:
    req, _ = store.record_request(draft(1))
    real_get = store.get

    def store_gone() -> None:
        def get(request_id: int) -> Any:
            raise ConnectionError("the store went away")

        monkeypatch.setattr(store, "get", get)

    rerun.after_commit = store_gone
    outcome = decide(store, req.id, ALICE, "request_changes", comment="shorter")
    assert outcome.final and outcome.request.status == CHANGES_REQUESTED and outcome.request.decided_by == "alice"
    assert "changes requested on request" in outcome.message
    assert real_get(req.id).status == CHANGES_REQUESTED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("not_waiting", "refusal", "status"),
    [
        (GateNotWaiting("gate draft_email__approval in run manual__1 is failed, not waiting"), GateGone, 409),
        (GateNotWaiting("gate is queued, not waiting for a review yet", transient=True), RerunRefused, 503),
    ],
)
def test_a_gate_not_deferred_on_the_request_refuses_the_change_request(
    store: Store, rerun: type[FakeRerun], not_waiting: Exception, refusal: type[Exception], status: int
) -> None:
    from hitl.views.common import decision_status

    rerun.unavailable = not_waiting
    req, _ = store.record_request(draft(1))
    with pytest.raises(refusal) as raised:
        decide(store, req.id, ALICE, "request_changes", comment="shorter")
    assert decision_status(raised.value) == status  # type: ignore[arg-type]
    assert store.get(req.id).status == PENDING and rerun.calls == []  # type: ignore[union-attr]


class _Dag:
    """What ``StepRerun._plan`` asks of the run's serialized DAG."""

    def __init__(self, tasks: list[str]) -> None:
        self.tasks = tasks

    def has_task(self, task_id: str) -> bool:
        return task_id in self.tasks

    def partial_subset(self, **kwargs: Any) -> Any:
        return type("Subset", (), {"task_dict": {t: None for t in self.tasks if t != "research"}})()


@pytest.fixture
def airflow_tables(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Airflow's real tables (in memory) and a DAG research -> draft_email -> gate -> send_email -> report."""
    from airflow.models import import_all_models
    from airflow.models.base import Base
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    import_all_models()
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    tasks = ["research", "draft_email", GATE, "send_email", "report"]
    monkeypatch.setattr("airflow.models.dagbag.DBDagBag.get_dag_for_run", lambda self, dag_run, session: _Dag(tasks))
    session = Session(engine)
    yield session
    session.close()
    engine.dispose()


def _add_run(session: Any, *, mapped: bool, gate_state: str = "deferred", parked_on: Any = None) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import insert

    session.execute(
        insert(DagRun.__table__).values(
            id=1,
            dag_id="outreach",
            run_id="manual__1",
            run_type="manual",
            state="running",
            data_interval_end=None,
            logical_date=None,
        )
    )
    items = range(5) if mapped else [-1]
    rows = [("research", -1, "success", None), ("report", -1, None, None)]
    for i in items:
        rows += [("draft_email", i, "success", None), ("send_email", i, None, None)]
        deferred = i == (3 if mapped else -1)
        rows.append((GATE, i, gate_state if deferred else "deferred", {"request_id": parked_on if deferred else 99}))  # type: ignore[arg-type]
    for task_id, map_index, state, kwargs in rows:
        session.execute(
            insert(TaskInstance.__table__).values(
                id=__import__("uuid").uuid4(),
                dag_id="outreach",
                run_id="manual__1",
                task_id=task_id,
                map_index=map_index,
                state=state,
                pool="default_pool",
                next_kwargs=kwargs,
            )
        )
    session.flush()


def _plan(session: Any, req: Any) -> list[tuple[str, int]]:
    from hitl.rerun import StepRerun

    rerun = StepRerun(req)
    rerun._session = session
    rerun._plan()
    return sorted((ti.task_id, ti.map_index) for ti in rerun._tis)


def test_a_mapped_gate_reruns_its_own_item_only(store: Store, airflow_tables: Any) -> None:
    req, _ = store.record_request(draft(1, map_index=3))
    _add_run(airflow_tables, mapped=True, parked_on=req.id)
    assert _plan(airflow_tables, req) == [
        ("draft_email", 3),
        (GATE, 3),
        ("report", -1),  # unmapped, after every item: waits for this one again
        ("send_email", 3),
    ]


def test_an_unmapped_gate_reruns_the_step_and_everything_after_it(store: Store, airflow_tables: Any) -> None:
    req, _ = store.record_request(draft(1))
    _add_run(airflow_tables, mapped=False, parked_on=req.id)
    assert _plan(airflow_tables, req) == [("draft_email", -1), (GATE, -1), ("report", -1), ("send_email", -1)]


@pytest.mark.parametrize(
    ("gate_state", "parked_on", "transient", "message"),
    [
        ("failed", "self", False, r"is failed, not waiting for a review \(the run was stopped"),
        ("deferred", 12345, False, "now waits on request 12345; review that one"),
        ("queued", "self", True, "is queued, not waiting for a review yet; try again"),
        (None, "self", False, "is without a state, not waiting"),
    ],
)
def test_the_plan_refuses_unless_the_gate_is_deferred_on_this_request(
    store: Store, airflow_tables: Any, gate_state: Any, parked_on: Any, transient: bool, message: str
) -> None:
    req, _ = store.record_request(draft(1, map_index=3))
    _add_run(airflow_tables, mapped=True, gate_state=gate_state, parked_on=req.id if parked_on == "self" else parked_on)
    with pytest.raises(GateNotWaiting, match=message) as raised:
        _plan(airflow_tables, req)
    assert raised.value.transient is transient


def test_the_real_rerun_refuses_without_the_run_in_airflow(sqlite_store: Store) -> None:
    """No fake: this process has no such DAG run (or no migrated Airflow DB at all): refused, nothing written."""
    req, _ = sqlite_store.record_request(draft(1))
    with pytest.raises(RerunRefused, match="cannot re-run step draft_email"):
        decide(sqlite_store, req.id, ALICE, "request_changes", comment="shorter")
    assert sqlite_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_review_variable_carries_every_round(store: Store, rerun: type[FakeRerun]) -> None:
    assert review_of("outreach", "manual__1", GATE, store=store) == {"round": 1, "feedback": "", "rounds": []}
    first, _ = store.record_request(draft(1))
    decide(store, first.id, ALICE, "request_changes", comment="shorter")
    second, _ = store.record_request(draft(2))
    decide(store, second.id, ALICE, "request_changes", comment="mention the trial")
    review = review_of("outreach", "manual__1", GATE, store=store)
    assert review["round"] == 3 and review["feedback"] == "mention the trial"
    assert [(r["feedback"], r["draft"]["body"], r["by"]) for r in review["rounds"]] == [
        ("shorter", "v1", "alice"),
        ("mention the trial", "v2", "alice"),
    ]
    assert review_of("outreach", "other-run", GATE, store=store)["rounds"] == []
    prompt = feedback_prompt(review)
    assert "mention the trial" in prompt and '"body": "v2"' in prompt and "draft 3" in prompt
    assert feedback_prompt(review_of("outreach", "other-run", GATE, store=store)) == ""


def test_gemini_backend_adds_the_feedback_to_its_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    from hitl.steps import ai_action

    prompts: list[str] = []

    class FakeHook:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def generate_content(self, **kwargs: Any) -> str:
            prompts.append(kwargs["contents"][0])
            return "a shorter text"

    monkeypatch.setattr("airflow.providers.google.cloud.hooks.gen_ai.GenAIGenerativeModelHook", FakeHook)
    review = {
        "round": 2,
        "feedback": "shorter please",
        "rounds": [{"feedback": "shorter please", "draft": {"text": "long"}}],
    }
    config = {"backend": "gemini", "output": "text", "prompt": "Write a pitch.", "model": "m"}
    assert ai_action.run(config, {"review": review}) == {"text": "a shorter text"}
    assert ai_action.run(config, {}) == {"text": "a shorter text"}
    assert prompts[0].startswith("Write a pitch.") and "shorter please" in prompts[0] and '"text": "long"' in prompts[0]
    assert prompts[1] == "Write a pitch."


def test_the_step_operator_renders_review_into_its_config(
    store: Store, rerun: type[FakeRerun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template backend sees ``review.feedback`` like any variable (a spec may; the example does not)."""
    from hitl.steps.operator import StepOperator
    from hitl.store import _store_for

    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", store.url)
    _store_for.cache_clear()
    first, _ = store.record_request(draft(1))
    decide(store, first.id, ALICE, "request_changes", comment="We offer a free 30-day trial.")

    class Ti:
        dag_id, run_id, map_index = "outreach", "manual__1", -1

        def xcom_pull(self, task_ids: str) -> Any:
            return None

    op = StepOperator(
        task_id="draft_email",
        step_type="aiAction",
        config={
            "backend": "template",
            "output": "text",
            "text": "Hello.{% if review.feedback %} {{ review.feedback }}{% endif %} (draft {{ review.round }})",
        },
        review_gate=GATE,
    )
    try:
        assert op.execute({"ti": Ti()}) == {"text": "Hello. We offer a free 30-day trial. (draft 2)"}
        op.review_gate = None
        assert op.execute({"ti": Ti()}) == {"text": "Hello. (draft 1)"}
    finally:
        _store_for.cache_clear()


def test_spec_max_revisions_is_validated_and_reaches_the_gate(tmp_path: Any) -> None:
    from hitl.factory import gate_options
    from hitl.spec.loader import load_specs

    spec = (
        "id: w\nsteps:\n  - id: a\n    type: python\n    config: {{callable: 'm.f'}}\n"
        "    next: {{step: b, conditions: {{approvalRequired: true, maxRevisions: {value}}}}}\n"
        "  - id: b\n    type: python\n    config: {{callable: 'm.g'}}\n"
    )
    (tmp_path / "ok.yaml").write_text(spec.format(value=5))
    [ok] = load_specs([tmp_path / "ok.yaml"])
    assert ok.ok and ok.steps[0].gate is not None and ok.steps[0].gate.max_revisions == 5
    assert gate_options(ok.steps[0], None, {}).max_revisions == 5
    for bad in ("21", "-1", "'3'", "true"):
        (tmp_path / "bad.yaml").write_text(spec.format(value=bad))
        [loaded] = load_specs([tmp_path / "bad.yaml"])
        assert not loaded.ok
        assert any("steps[0].next.conditions.maxRevisions" in str(e) or "maxRevisions" in str(e) for e in loaded.errors)
    (tmp_path / "default.yaml").write_text(spec.format(value=3).replace(", maxRevisions: 3", ""))
    [default] = load_specs([tmp_path / "default.yaml"])
    assert default.steps[0].gate is not None and default.steps[0].gate.max_revisions == 3


# -- the channels: JSON API, review page form and partial, Slack, CLI -----------------------------------
@pytest.fixture
def app(airflow_db: Any, monkeypatch: pytest.MonkeyPatch, configured: Store) -> Any:
    from views.client import flask_app

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,alice:user,bob:user,vic:viewer")
    return flask_app()


def test_api_request_changes(app: Any, configured: Store, rerun: type[FakeRerun]) -> None:
    from views.client import bearer

    req, _ = configured.record_request(draft(1))
    client = app.test_client()
    url = f"/hitl/api/requests/{req.id}/decision"
    bob = client.post(url, json={"action": "request_changes", "feedback": "x"}, headers=bearer("bob"))
    assert bob.status_code == 403 and bob.get_json()["code"] == "not_allowed"
    empty = client.post(url, json={"action": "request_changes"}, headers=bearer("alice"))
    assert empty.status_code == 400 and "feedback is required" in empty.get_json()["detail"]
    unknown = client.post(url, json={"action": "redo"}, headers=bearer("alice"))
    assert unknown.status_code == 400 and '"approve", "reject" or "request_changes"' in unknown.get_json()["detail"]
    ok = client.post(
        url,
        json={"action": "request_changes", "feedback": "shorter", "seen_hash": req.output_hash},
        headers=bearer("alice"),
    )
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["request"]["status"] == CHANGES_REQUESTED and ok.get_json()["final"] is True
    again = client.post(url, json={"action": "request_changes", "feedback": "more"}, headers=bearer("alice"))
    assert again.status_code == 409


def test_api_refuses_when_the_step_cannot_be_rerun(app: Any, configured: Store, rerun: type[FakeRerun]) -> None:
    from views.client import bearer

    rerun.unavailable = "cannot re-run step draft_email from here: Airflow's database is not reachable"
    req, _ = configured.record_request(draft(1))
    resp = app.test_client().post(
        f"/hitl/api/requests/{req.id}/decision",
        json={"action": "request_changes", "feedback": "shorter"},
        headers=bearer("alice"),
    )
    assert resp.status_code == 503 and resp.get_json()["code"] == "rerun_unavailable"
    assert resp.headers["Retry-After"] == "30"
    assert configured.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_page_and_cli_refuse_with_503_and_exit_3_when_the_step_cannot_be_rerun(
    app: Any, configured: Store, rerun: type[FakeRerun], capsys: pytest.CaptureFixture[str]
) -> None:
    """Airflow's database unavailable is "try again", like the store down: 503 + Retry-After, and the CLI's exit 3."""
    from views.client import Browser

    from hitl.cli import main

    rerun.unavailable = "cannot re-run step draft_email from here: Airflow's database is not reachable"
    req, _ = configured.record_request(draft(1))
    page = Browser(app, "alice").post(
        f"/request/{req.id}/request-changes", {"feedback": "shorter"}, csrf_from=f"/request/{req.id}"
    )
    assert page.status_code == 503 and page.headers["Retry-After"] == "30"
    assert "Airflow&#39;s database is not reachable" in page.get_data(as_text=True)
    assert main(["approvals", "request-changes", str(req.id), "--user", "alice", "--feedback", "shorter"]) == 3
    assert "Airflow's database is not reachable" in capsys.readouterr().err
    assert configured.get(req.id).status == PENDING  # type: ignore[union-attr]

    rerun.unavailable, rerun.commit_fails = None, True  # Airflow's commit fails: the page says so, not "store down"
    failed = Browser(app, "alice").post(
        f"/request/{req.id}/request-changes", {"feedback": "shorter"}, csrf_from=f"/request/{req.id}"
    )
    text = failed.get_data(as_text=True)
    assert failed.status_code == 503 and "did not take the clearing" in text
    assert "decision store is unavailable" not in text
    assert configured.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_review_page_form_and_the_rounds_history(app: Any, configured: Store, rerun: type[FakeRerun]) -> None:
    from views.client import Browser

    first, _ = configured.record_request(draft(1, max_revisions=1))
    alice = Browser(app, "alice")
    assert alice.post(f"/request/{first.id}/request-changes", {"feedback": "shorter"}).status_code == 400  # no CSRF
    missing = alice.post(f"/request/{first.id}/request-changes", {"feedback": ""}, csrf_from=f"/request/{first.id}")
    assert missing.status_code == 400 and "feedback is required" in missing.get_data(as_text=True)
    done = alice.post(
        f"/request/{first.id}/request-changes",
        {"feedback": "Mention <the> trial", "seen_hash": first.output_hash},
        csrf_from=f"/request/{first.id}",
    )
    assert done.status_code == 302, done.get_data(as_text=True)
    assert configured.get(first.id).status == CHANGES_REQUESTED  # type: ignore[union-attr]
    second, _ = configured.record_request(draft(2, max_revisions=1))

    page = render_partial(app, "hitl/_review_changes.html", configured, second.id, ALICE)
    assert 'id="request-changes"' not in page  # 1 of 1 used
    assert "No change requests left: 1 of 1 used" in page
    assert 'id="round-1"' in page and 'id="round-2"' in page
    assert "Mention &lt;the&gt; trial" in page and "Changes requested by <strong>alice</strong>" in page
    assert '<div class="del">-Hello 1</div>' in page and '<div class="add">+Hello 2</div>' in page

    third, _ = configured.record_request(draft(1, run_id="r2"))
    fresh = render_partial(app, "hitl/_review_changes.html", configured, third.id, ALICE)
    assert 'id="request-changes"' in fresh and 'name="csrf_token"' in fresh and "3 of 3 left" in fresh
    assert 'id="rounds"' not in fresh  # one draft: no history yet
    assert 'id="request-changes"' not in render_partial(app, "hitl/_review_changes.html", configured, third.id, BOB)


def test_slack_request_changes_opens_a_modal_and_its_submission_decides(
    app: Any, configured: Store, rerun: type[FakeRerun], fake_slack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from views.client import SLACK_SECRET, slack_click, slack_payload

    from hitl.notify.slack import blocks_for

    monkeypatch.setenv("AIRFLOW__HITL__SLACK_SIGNING_SECRET", SLACK_SECRET)
    monkeypatch.setenv("AIRFLOW__HITL__SLACK_CONN_ID", "slack_bot")
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:alice@example.com,bob:bob@example.com")
    fake_slack.emails.update({"U_ALICE": "alice@example.com"})
    req, _ = configured.record_request(draft(1))
    _, blocks = blocks_for(req, "requested", interactive=True)
    labels = [b["text"]["text"] for b in blocks[1]["elements"]]
    assert labels == ["Send email", "Reject", "Request changes", "Review"]

    opened = slack_click(app, "U_ALICE", "hitl_request_changes", req.id, f"{fake_slack.url}/response/{req.id}")
    assert opened.status_code == 200 and opened.get_data(as_text=True) == ""
    [call] = fake_slack.posted("/api/views.open")
    view = call["view"] if isinstance(call["view"], dict) else json.loads(call["view"])
    assert view["callback_id"] == "hitl_request_changes"

    def submit(feedback: str) -> Any:
        values = {"hitl_feedback": {"feedback": {"type": "plain_text_input", "value": feedback}}}
        payload = {"type": "view_submission", "user": {"id": "U_ALICE"}, "view": {**view, "state": {"values": values}}}
        return slack_payload(app, payload)

    empty = submit(" ").get_json()
    assert empty["response_action"] == "errors" and "feedback is required" in empty["errors"]["hitl_feedback"]
    assert submit("Shorter please").get_json() == {"response_action": "clear"}
    after = configured.get(req.id)
    assert after is not None and after.status == CHANGES_REQUESTED and after.comment == "Shorter please"
    assert after.decided_by == "alice" and configured.history(req.id)[-1].detail["channel"] == "slack"

    spent, _ = configured.record_request(draft(2, run_id="r9", max_revisions=0))
    _, blocks = blocks_for(spent, "requested", interactive=True)
    assert "Request changes" not in [b["text"]["text"] for b in blocks[1]["elements"]]


def test_cli_request_changes(configured: Store, rerun: type[FakeRerun], capsys: pytest.CaptureFixture[str]) -> None:
    from hitl.cli import main

    req, _ = configured.record_request(draft(1))
    assert main(["approvals", "request-changes", str(req.id), "--user", "bob", "--feedback", "x"]) == 1
    assert "bob is not an approver" in capsys.readouterr().err
    assert main(["approvals", "request-changes", str(req.id), "--user", "alice", "--feedback", "shorter"]) == 0
    assert f"changes requested on request {req.id} by alice" in capsys.readouterr().out
    assert main(["approvals", "list", "--status", "changes_requested", "--json"]) == 0
    assert [r["id"] for r in __import__("json").loads(capsys.readouterr().out)] == [req.id]


def test_the_review_page_shows_the_two_round_history_and_the_thread(
    app: Any, configured: Store, rerun: type[FakeRerun]
) -> None:
    from views.client import Browser

    from hitl.comments import add_comment

    first, _ = configured.record_request(draft(1))
    decide(configured, first.id, ALICE, "request_changes", comment="Mention the free trial")
    second, _ = configured.record_request(draft(2))
    add_comment(configured, second.id, BOB, "Looks better now")
    page = Browser(app, "alice").get(f"/request/{second.id}").get_data(as_text=True)
    assert 'id="rounds"' in page and 'id="round-2"' in page and "Mention the free trial" in page
    assert 'id="request-changes"' in page and "2 of 3 left" in page
    assert 'id="comments"' in page and "Looks better now" in page
    old = Browser(app, "alice").get(f"/request/{first.id}").get_data(as_text=True)
    assert "changes_requested" in old and 'id="request-changes"' not in old
    assert f"review draft 2 (request #{second.id})" in old  # the way to the next draft


def test_hand_written_dags_read_the_feedback(configured: Store, rerun: type[FakeRerun]) -> None:
    import hitl

    class Ti:
        dag_id, run_id, map_index = "outreach", "manual__1", None

    first, _ = configured.record_request(draft(1))
    assert hitl.review_feedback(GATE, {"ti": Ti()}) == {"round": 1, "feedback": "", "rounds": []}
    decide(configured, first.id, ALICE, "request_changes", comment="shorter")

    class Gate:
        task_id = GATE

    review = hitl.review_feedback(Gate(), {"ti": Ti()})
    assert review["feedback"] == "shorter" and review["round"] == 2 and review["rounds"][0]["draft"]["body"] == "v1"


def test_a_simultaneous_change_request_that_cleared_the_gate_first_is_already_decided(
    store: Store, rerun: type[FakeRerun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second click waits on the gate's row lock; by then the first cleared it: "already decided", not "stopped"."""
    from hitl.rerun import GateNotWaiting

    first, _ = store.record_request(draft(1, approvers=[{"userId": "alice"}, {"userId": "carol"}]))
    carol = Reviewer("carol")
    original = FakeRerun.__enter__
    waits: list[str] = []

    def enter(self: FakeRerun) -> FakeRerun:
        if waits:  # carol's own click: the gate is still parked for her
            return original(self)
        waits.append("alice")
        decide(store, first.id, carol, "request_changes", comment="first click")  # wins while alice waits
        raise GateNotWaiting("gate draft_email__approval is not deferred on this request", transient=False)

    monkeypatch.setattr(FakeRerun, "__enter__", enter)
    with pytest.raises(AlreadyDecided, match="changes already requested by carol"):
        decide(store, first.id, ALICE, "request_changes", comment="second click")
    assert store.get(first.id).comment == "first click"  # type: ignore[union-attr]


def test_a_refusal_stays_the_answer_when_its_audit_cannot_be_written(
    store: Store, rerun: type[FakeRerun], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    first, _ = store.record_request(draft(1))
    rerun.unavailable = "Airflow's database is not reachable"

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(store, "audit", down)
    with pytest.raises(RerunRefused, match="not reachable"):  # 503 "try again", not a raw database error
        decide(store, first.id, ALICE, "request_changes", comment="shorter")


def test_a_later_draft_shows_the_feedback_it_answers_beside_it_and_never_in_it(
    app: Any, configured: Store, rerun: type[FakeRerun]
) -> None:
    """The template backend writes the same draft again: the feedback is a note for the reviewer, not draft text."""
    from views.client import Browser

    first, _ = configured.record_request(draft(1))
    alice = Browser(app, "alice")
    assert 'id="asked"' not in alice.get(f"/request/{first.id}").get_data(as_text=True)  # draft 1 answers nothing
    decide(configured, first.id, ALICE, "request_changes", comment="Mention the <free> trial")
    same, created = configured.record_request(draft(1))  # the same content: still round 2
    assert created and same.revision == 2 and same.output == first.output

    page = alice.get(f"/request/{same.id}").get_data(as_text=True)
    asked = page[page.index('id="asked"') : page.index("</section>", page.index('id="asked"'))]
    assert "What was asked" in asked and "Mention the &lt;free&gt; trial" in asked and "alice" in asked
    assert 'id="asked-same"' in asked  # it says the step made the same draft
    assert page.index('id="asked"') < page.index('id="output"')  # beside the draft, above it
    assert "free" not in json.dumps(same.output)

    decide(configured, same.id, ALICE, "request_changes", comment="Shorter too")
    third, _ = configured.record_request(draft(3))
    latest = render_partial(app, "hitl/_review_asked.html", configured, third.id, ALICE)
    assert "Shorter too" in latest and "Mention the" not in latest  # the latest round's feedback only
    assert 'id="asked-same"' not in latest  # this draft differs from the one before


def test_a_change_request_that_deadlocks_with_a_simultaneous_one_is_already_decided(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real deadlock on PostgreSQL, Airflow's tables and the real ``StepRerun``: the winner (another process
    requesting changes on the same gate) holds a task instance row and then wants one this request's look for the
    rows to clear holds; PostgreSQL aborts this one (its shorter ``deadlock_timeout``). It looks again, waits for
    the winner, and answers "already decided", not 503 "try again"; it clears nothing itself."""
    import contextlib
    import logging
    import threading
    import time as clock

    from airflow.models import import_all_models
    from airflow.models.base import Base
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from hitl.decisions import AlreadyDecided
    from hitl.store.engine import sync_url

    store = Store(pg_url)
    store.upgrade()
    req, _ = store.record_request(draft(1))
    import_all_models()
    airflow_db = sync_url(pg_url)  # psycopg2, as Airflow connects
    setup = create_engine(airflow_db)
    Base.metadata.create_all(setup)
    tasks = ["research", "draft_email", GATE, "send_email", "report"]
    monkeypatch.setattr("airflow.models.dagbag.DBDagBag.get_dag_for_run", lambda self, dag_run, session: _Dag(tasks))
    with Session(setup) as session:
        _add_run(session, mapped=False, parked_on=req.id)
        session.commit()
    # this request's session gives up on a lock cycle first; the winner's waits far longer
    loser = create_engine(airflow_db, connect_args={"options": "-c deadlock_timeout=200ms"})
    winner_engine = create_engine(airflow_db, connect_args={"options": "-c deadlock_timeout=60s"})

    @contextlib.contextmanager
    def create_session(*args: Any, **kwargs: Any) -> Any:
        with Session(loser) as session:
            yield session

    monkeypatch.setattr("airflow.utils.session.create_session", create_session)
    holding, failed = threading.Event(), []

    def lock_waiters() -> int:
        with setup.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                ).scalar_one()
            )

    def winner() -> None:
        try:
            with winner_engine.connect() as conn:
                airflow_side = conn.begin()
                conn.execute(text("SELECT id FROM task_instance WHERE task_id = 'send_email' FOR UPDATE"))
                holding.set()
                deadline = clock.monotonic() + 30
                while lock_waiters() == 0:  # this request's look has locked draft_email and waits on send_email
                    assert clock.monotonic() < deadline, "the change request never waited on the winner's row"
                    clock.sleep(0.02)
                conn.execute(text("SELECT id FROM task_instance WHERE task_id = 'draft_email' FOR UPDATE"))  # cycle
                conn.execute(text("UPDATE task_instance SET state = 'skipped' WHERE task_id = :g"), {"g": GATE})
                with store.writing() as store_side:  # as decide() does: Airflow commits inside the store's txn
                    store.lock_status(store_side, req.id)
                    store.close_request(
                        store_side, req.id, status=CHANGES_REQUESTED, user="alice", comment="first", edited_output=None
                    )
                    airflow_side.commit()
        except BaseException as exc:  # reported by the test, not lost in the thread
            failed.append(exc)
            holding.set()

    class Heard(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    said, heard = logging.getLogger("hitl.rerun"), Heard()
    said.addHandler(heard)
    monkeypatch.setattr(said, "level", logging.INFO)
    thread = threading.Thread(target=winner)
    thread.start()
    try:
        assert holding.wait(30) and not failed, failed
        with pytest.raises(AlreadyDecided) as refused:
            decide(store, req.id, ALICE, "request_changes", comment="second")
    finally:
        thread.join(60)
        said.removeHandler(heard)
    assert not failed, failed
    assert "changes already requested by alice" in str(refused.value)
    assert any("refused a lock (OperationalError, try 1 of" in r.getMessage() for r in heard.records)  # deadlocked
    final = store.get(req.id)
    assert final is not None and final.status == CHANGES_REQUESTED and final.comment == "first"
    assert [e.event for e in store.history(req.id)].count("changes_requested") == 0  # the winner wrote no audit here
    with setup.connect() as conn:
        states = dict(conn.execute(text("SELECT task_id, state FROM task_instance")).all())  # type: ignore[arg-type, var-annotated]
    assert states["draft_email"] == "success" and states[GATE] == "skipped"  # the loser cleared nothing
    for engine in (loser, winner_engine, setup):
        engine.dispose()
    store.engine.dispose()


def test_a_clearing_refused_a_lock_after_another_decision_is_already_decided(
    store: Store, rerun: type[FakeRerun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``clear()`` refused a lock (RerunConflict) because a simultaneous change request won: "already decided"."""
    from hitl.rerun import RerunConflict

    req, _ = store.record_request(draft(1))

    def clear_after_the_winner(self: FakeRerun) -> list[str]:
        with store.writing() as conn:  # the winner's decision, committed while this one cleared
            store.lock_status(conn, req.id)
            store.close_request(
                conn, req.id, status=CHANGES_REQUESTED, user="alice", comment="first", edited_output=None
            )
        raise RerunConflict("cannot re-run step draft_email: Airflow's database did not take the clearing")

    own_clear = FakeRerun.clear
    monkeypatch.setattr(FakeRerun, "clear", clear_after_the_winner)
    with pytest.raises(AlreadyDecided, match="changes already requested by alice"):
        decide(store, req.id, ALICE, "request_changes", comment="second")
    assert rerun.calls == [(req.id, "rolled back")]
    rerun.clear_fails = True  # a refused clearing with nobody else deciding is still "try again"
    monkeypatch.setattr(FakeRerun, "clear", own_clear)
    fresh, _ = store.record_request(draft(1, run_id="r2"))
    with pytest.raises(RerunRefused, match="did not take the clearing"):
        decide(store, fresh.id, ALICE, "request_changes", comment="second")


def test_lock_conflicts_are_told_from_other_database_errors() -> None:
    from sqlalchemy.exc import OperationalError

    from hitl.rerun import lock_conflict

    class PgError(Exception):
        def __init__(self, code: str) -> None:
            super().__init__("deadlock detected" if code == "40P01" else "server closed the connection")
            self.pgcode = code

    assert lock_conflict(OperationalError("SELECT", {}, PgError("40P01")))
    assert lock_conflict(OperationalError("SELECT", {}, Exception("database is locked")))
    outer = RuntimeError("wrapped")
    outer.__cause__ = OperationalError("SELECT", {}, PgError("40001"))
    assert lock_conflict(outer)  # found through the cause
    assert not lock_conflict(OperationalError("SELECT", {}, PgError("08006")))
    assert not lock_conflict(ValueError("deadlock"))
