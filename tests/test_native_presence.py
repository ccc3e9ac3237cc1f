"""The gate inside Airflow's own screens (hitl.native): the "Review" extra link, the Required Actions record,
and an answer given there refused with a pointer, never counted."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace
from typing import Any

import pytest

from helpers import gate
from hitl.native import NATIVE_CHANNEL, NATIVE_OPTION, ReviewLink, native_answer, review_page_url
from hitl.sensor import ApprovalSensor
from hitl.store import PENDING


def ti_key(req: Any) -> Any:
    return SimpleNamespace(dag_id=req.dag_id, run_id=req.run_id, task_id=req.gate_task_id, map_index=-1)


def test_the_gate_task_has_a_review_link_registered_by_the_plugin() -> None:
    sensor = ApprovalSensor(task_id="g", step_id="s")
    assert [link.name for link in sensor.operator_extra_links] == ["Review"]
    from hitl.plugin import HitlPlugin

    assert [type(link) for link in HitlPlugin.operator_extra_links] == [ReviewLink]
    assert ApprovalSensor in ReviewLink().operators


def test_the_serialized_gate_names_the_link_and_its_xcom_key() -> None:
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import OperatorSerialization

    with DAG("links_dag", schedule=None):
        sensor = ApprovalSensor(task_id="g", step_id="s")
    serialized = OperatorSerialization.serialize_operator(sensor)
    assert serialized["_operator_extra_links"] == {"Review": "_link_ReviewLink"}


def test_the_link_is_the_review_page_of_the_request_the_gate_parked_on(configured: Any) -> None:
    req, _ = configured.record_request(gate())
    assert (
        ReviewLink().get_link(None, ti_key=ti_key(req))
        == f"http://airflow.example:8080/plugin/approvals/pluginsv2/hitl/request/{req.id}"
    )
    # a changed output supersedes the request: the link follows the gate to the new one
    newer, created = configured.record_request(gate(output={**req.output, "subject": "Changed"}))
    assert created and newer.id != req.id
    assert ReviewLink().get_link(None, ti_key=ti_key(req)).endswith(f"/request/{newer.id}")


def test_no_request_no_link_and_a_store_outage_never_fails_the_task(
    configured: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=-1)
    assert ReviewLink().get_link(None, ti_key=key) == ""
    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", "postgresql://nobody@127.0.0.1:1/none")
    from hitl.store import _store_for

    _store_for.cache_clear()
    assert ReviewLink().get_link(None, ti_key=key) == ""


def test_only_airflows_hitl_response_counts_as_a_native_answer() -> None:
    answer = {"chosen_options": [NATIVE_OPTION], "params_input": {}, "responded_by_user": {"id": "bob", "name": "bob"}}
    assert native_answer(answer) == answer
    assert native_answer({"request_id": 3, "status": "superseded"}) is None  # our own trigger's event
    assert native_answer(None) is None and native_answer("x") is None


class FakeTI:
    def __init__(self, req: Any) -> None:
        self.id = "00000000-0000-0000-0000-000000000001"
        self.dag_id, self.run_id, self.task_id, self.map_index = req.dag_id, req.run_id, req.gate_task_id, -1


def test_an_answer_on_required_actions_is_refused_with_a_pointer_and_the_gate_parks_again(
    configured: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    import hitl.native as native

    req, _ = configured.record_request(gate())
    published: list[Any] = []
    monkeypatch.setattr(native, "publish", lambda context, r: published.append(r.id) or True)  # type: ignore[func-returns-value]
    sensor = ApprovalSensor(task_id=req.gate_task_id, step_id=req.step_id, approvers=[{"userId": "alice"}])
    # the task SDK's logger is structlog; a stdlib one lets caplog read the gate's log line
    monkeypatch.setattr(ApprovalSensor, "log", property(lambda self: logging.getLogger("hitl.test.gate")))
    answer = {
        "chosen_options": [NATIVE_OPTION],
        "params_input": {},
        "responded_by_user": {"id": "alice", "name": "alice"},  # even the listed approver: not a decision here
        "responded_at": None,
        "timedout": False,
    }
    with caplog.at_level("WARNING"), pytest.raises(TaskDeferred) as parked:
        sensor.execute_complete({"ti": FakeTI(req)}, event=answer, request_id=req.id)
    assert parked.value.kwargs == {"request_id": req.id}
    assert published == [req.id]  # the HITL record is reopened (the upsert clears the response)
    assert configured.get(req.id).status == PENDING
    assert "not a decision and was refused" in caplog.text and review_page_url(req.id) in caplog.text
    refused = [e for e in configured.history(req.id) if e.event == "refused"]
    assert refused and refused[-1].actor == "alice" and refused[-1].detail["channel"] == NATIVE_CHANNEL


def test_publish_writes_the_record_with_the_review_link(configured: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.sdk.execution_time.hitl as sdk_hitl
    import airflow.sdk.execution_time.task_runner as runner

    import hitl.native as native

    req, _ = configured.record_request(gate())
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(sdk_hitl, "upsert_hitl_detail", lambda **kw: calls.append(kw))
    monkeypatch.setattr(runner, "SUPERVISOR_COMMS", object(), raising=False)
    assert native.publish({"ti": FakeTI(req)}, req)
    (call,) = calls
    assert call["options"] == [NATIVE_OPTION]
    assert call["subject"] == "Review draft_email: To owner@shop.example: Hello"
    assert call["body"].startswith(f"### [Review and decide on the review page \u2192]({review_page_url(req.id)})")
    assert "the gate refuses it, this item comes back, and nothing is approved or sent" in call["body"]
    assert NATIVE_OPTION == "Not a decision: refused, asks again"  # the button says what pressing it does
    assert call["assigned_users"] == [{"id": "alice", "name": "alice"}]


def test_publish_outside_a_worker_is_a_warning_not_a_failure(configured: Any) -> None:
    import hitl.native as native

    req, _ = configured.record_request(gate(approvers=[{"role": "Op"}]))
    # A role cannot be an Airflow assignee; without one, anyone with HITL-edit rights could answer (and resume the
    # gate only to be refused): an assignee no user has makes Airflow refuse every answer itself.
    assert native._assigned_users(req) == [native.NOBODY]
    assert native.publish({"ti": FakeTI(req)}, req) is False


def test_a_hostile_summary_stays_text_in_airflows_markdown(configured: Any) -> None:
    """The summary comes from the gated step's output (a scraped page): never a link, image or HTML there."""
    import hitl.native as native

    hostile = "[Approve here](https://evil.example) <img src=x onerror=alert(1)> **now**\n# big"
    req, _ = configured.record_request(gate(output={"text": "x"}, output_kind="text", summary=hostile))
    body = native._body(req, review_page_url(req.id))
    links = body.split("](")[1:]
    assert len(links) == 1 and links[0].startswith(review_page_url(req.id))  # our own link, nothing else
    assert not re.search(r"(?<!\\)<", body) and "\\<img" in body and "\n# big" not in body
    assert native.md_text("a" * 400).endswith("\\.\\.\\.") and len(native.md_text("a" * 400)) < 320
