"""The review page: one form (what you see is what is sent), bulk confirmation, the reviewer's context, links, times."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from helpers import gate
from hitl.steps.email import sent_key
from hitl.store import APPROVED, PENDING, REJECTED, Store

EMAIL = {
    "from": "Sam <sam@acme.example>",
    "to": ["owner@shop.example", "boss@shop.example"],
    "subject": "Hello",
    "body": "Hi there,\n\nA quicker till?\n\nSam",
    "cc": "sales@acme.example",
}


class GivenReads:
    """What Airflow's database would answer the review page (``PageRoutes.airflow_reads``), given by the test.

    The real ``AirflowReads`` is exercised against a real DAG run by the end-to-end tests."""

    def __init__(self, graph: tuple[list[str], list[str]], outputs: dict[str, Any], run: dict[str, Any]) -> None:
        self._graph, self._outputs, self._run = graph, outputs, run

    def graph(self, req: Any) -> tuple[list[str], list[str]]:
        return self._graph

    def xcom_outputs(self, req: Any, task_ids: list[str], key: str = "return_value") -> dict[str, Any]:
        return {t: v for t, v in self._outputs.items() if t in task_ids} if key == "return_value" else {}

    def dag_run(self, req: Any) -> dict[str, Any]:
        return self._run


def given_reads(
    monkeypatch: Any,
    *,
    graph: tuple[list[str], list[str]] = ([], []),
    outputs: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
) -> None:
    from hitl.views.html import PageRoutes

    monkeypatch.setattr(PageRoutes, "airflow_reads", GivenReads(graph, outputs or {}, run or {}))


def page_of(user: Any, req_id: int) -> str:
    resp = user.get(f"/request/{req_id}")
    assert resp.status_code == 200
    return str(resp.get_data(as_text=True))


def shown_fields(output: dict[str, Any]) -> dict[str, str]:
    """The form as the browser submits it untouched: every field as shown (lists as "a, b", CRLF line breaks)."""
    as_text = {k: ", ".join(v) if isinstance(v, list) else v for k, v in output.items()}
    return {f"edit_{k}": as_text[k].replace("\n", "\r\n") for k in ("from", "to", "subject", "body")}


def test_the_draft_is_edited_in_place_in_one_form(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate(output=EMAIL))
    page = page_of(as_user("alice"), req.id)
    assert (
        page.count('id="decision"') == 1
        and 'id="edit-approve"' not in page
        and "<details" not in page.split('id="draft"')[1].split("</section>")[0]
    )
    form = page.split('id="decision"')[1].split("</form>")[0]
    for name in ("from", "to", "subject", "body"):
        assert f'name="edit_{name}"' in form
    assert 'name="action" value="approve" class="primary" id="approve"' in form and ">Send email</button>" in form
    assert 'data-original="owner@shop.example, boss@shop.example"' in form
    assert 'id="reject-form"' in page and "beforeunload" in page


def test_request_changes_asks_before_dropping_unsent_edits(as_user: Any, ui_store: Store) -> None:
    """Like reject, the request-changes form asks (hitlAsk) when the draft has edits it would not send."""
    req, _ = ui_store.record_request(gate(output=EMAIL))
    page = page_of(as_user("alice"), req.id)
    assert 'id="request-changes-form"' in page.split('id="request-changes"')[1].split("</section>")[0]
    script = page.split('getElementById("request-changes-form")')[1].split("</script>")[0]
    assert "if (changesConfirmed || !changed().length)" in script and "ev.preventDefault()" in script
    assert 'window.hitlAsk("Requesting changes discards your edits to the draft' in script


def test_the_primary_button_sends_what_is_on_screen(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate(output=EMAIL))
    form = {**shown_fields(EMAIL), "edit_subject": "Rosie, a faster till?", "action": "approve"}
    resp = as_user("alice").post(f"/request/{req.id}/decide", {**form, "seen_hash": req.output_hash}, csrf_from="/")
    assert resp.status_code == 302
    final = ui_store.get(req.id)
    assert final is not None and final.status == APPROVED
    assert final.edited_output == {**EMAIL, "subject": "Rosie, a faster till?"}  # the list and cc kept as they were
    assert [e.event for e in ui_store.history(req.id)][-1] == "edited"
    page = page_of(as_user("alice"), req.id)
    assert 'id="diff"' in page and '<div class="add">+Rosie, a faster till?</div>' in page
    assert "Approved version" in page and 'data-field="subject">Rosie, a faster till?<' in page
    assert "data-history-summary>To owner@shop.example, boss@shop.example: Rosie, a faster till?<" in page


def test_an_untouched_form_is_a_plain_approval(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate(output=EMAIL))
    form = {**shown_fields(EMAIL), "action": "approve", "seen_hash": req.output_hash}
    assert as_user("alice").post(f"/request/{req.id}/decide", form, csrf_from="/").status_code == 302
    final = ui_store.get(req.id)
    assert final is not None and final.status == APPROVED and final.edited_output is None
    assert "approved" in [e.event for e in ui_store.history(req.id)]


def test_an_untouched_draft_with_crlf_line_breaks_is_a_plain_approval(as_user: Any, ui_store: Store) -> None:
    """A draft whose body holds CRLF, posted back untouched (the browser's CRLF), is no edit: its original stays."""
    crlf = {**EMAIL, "body": "Hi there,\r\n\r\nA quicker till?\r\n\r\nSam"}
    req, _ = ui_store.record_request(gate(output=crlf))
    form = {**shown_fields(EMAIL), "action": "approve", "seen_hash": req.output_hash}
    assert form["edit_body"] == crlf["body"]  # what the browser posts for the untouched textarea
    assert as_user("alice").post(f"/request/{req.id}/decide", form, csrf_from="/").status_code == 302
    final = ui_store.get(req.id)
    assert final is not None and final.status == APPROVED and final.edited_output is None
    assert final.final_output["body"] == crlf["body"]  # the original value, CRLF and all
    assert [e.event for e in ui_store.history(req.id)][-1] == "approved"


def test_preview_shows_the_diff_and_decides_nothing(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate(output=EMAIL))
    form = {**shown_fields(EMAIL), "edit_body": "Hi Rosie,\r\n\r\nA quicker till?\r\n\r\nSam", "action": "preview"}
    resp = as_user("alice").post(f"/request/{req.id}/decide", form, csrf_from="/")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]
    assert '<div class="del">-Hi there,</div>' in page and '<div class="add">+Hi Rosie,</div>' in page
    assert "\nHi Rosie,\n\nA quicker till?" in page  # the textarea keeps the edit
    same = as_user("alice").post(
        f"/request/{req.id}/decide", {**shown_fields(EMAIL), "action": "preview"}, csrf_from="/"
    )
    assert 'id="no-changes"' in same.get_data(as_text=True)


def test_text_output_is_edited_in_place(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate(output={"text": "Post this"}, output_kind="text"))
    form = {"edit_text": "Post this, edited", "action": "approve", "seen_hash": req.output_hash}
    assert as_user("alice").post(f"/request/{req.id}/decide", form, csrf_from="/").status_code == 302
    assert ui_store.get(req.id).edited_output == {"text": "Post this, edited"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"output": {"rows": [1]}, "output_kind": "json"}, "cannot be edited here"),
        (
            {"approvers": [{"userId": "alice"}, {"userId": "bob"}], "min_approvals": 2},
            "needs 2 approvals: its output cannot be edited",
        ),
    ],
)
def test_edits_where_editing_is_off_are_refused(as_user: Any, ui_store: Store, overrides: Any, message: str) -> None:
    req, _ = ui_store.record_request(gate(**overrides))
    form = {"edit_text": "x", "edit_subject": "x", "action": "approve"}
    resp = as_user("alice").post(f"/request/{req.id}/decide", form, csrf_from="/")
    assert resp.status_code == 400 and message in resp.get_data(as_text=True)
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_bulk_asks_first_and_lists_what_it_will_do(as_user: Any, ui_store: Store) -> None:
    mine = [ui_store.record_request(gate(run_id=f"b{i}", summary=f"To x{i}: Hi"))[0] for i in range(2)]
    done, _ = ui_store.record_request(gate(run_id="done"))
    alice = as_user("alice")
    alice.post(f"/request/{done.id}/decide", {"action": "approve"}, csrf_from="/")
    ids = [str(r.id) for r in mine] + [str(done.id)]
    resp = alice.post("/bulk", {"action": "approve", "ids": ids, "back": "/hitl/?tab=pending"}, csrf_from="/")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Approve 2 requests?" in page
    assert "To x0: Hi" in page and "To x1: Hi" in page and "Skipped: already decided by alice" in page
    assert page.count('<input type="hidden" name="ids"') == 2 and 'name="confirmed" value="1"' in page
    assert 'id="bulk-cancel"' in page and 'href="/hitl/?tab=pending"' in page
    assert all(ui_store.get(r.id).status == PENDING for r in mine)  # type: ignore[union-attr]
    reject = alice.post("/bulk", {"action": "reject", "ids": ids[:1]}, csrf_from="/").get_data(as_text=True)
    assert 'id="bulk-needs-reason"' in reject and 'id="bulk-confirm-form"' not in reject
    form = {"action": "reject", "ids": ids[:2], "reason": "Not now", "confirmed": "1"}
    assert alice.post("/bulk", form, csrf_from="/").status_code == 302
    assert all(ui_store.get(r.id).status == REJECTED for r in mine)  # type: ignore[union-attr]


def test_who_may_not_decide_sees_no_bulk_controls(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    for user in ("bob", "vic"):
        page = as_user(user).get("/?tab=pending").get_data(as_text=True)
        assert 'name="ids"' not in page and 'id="bulk-controls"' not in page and 'id="select-all"' not in page
        resp = as_user(user).post("/bulk", {"action": "approve", "ids": [str(req.id)], "confirmed": "1"}, csrf_from="/")
        assert resp.status_code in (302, 403)
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]
    page = as_user("alice").get("/?tab=pending").get_data(as_text=True)
    assert 'id="bulk-controls"' in page and f'name="ids" value="{req.id}"' in page


def test_zero_badge_is_not_red_and_history_shows_the_edited_summary(as_user: Any, ui_store: Store) -> None:
    page = as_user("bob").get("/").get_data(as_text=True)
    assert 'class="badge zero" id="attention-count">0<' in page
    req, _ = ui_store.record_request(gate())
    form = {**shown_fields(gate().output), "edit_subject": "Better subject", "action": "approve"}
    as_user("alice").post(f"/request/{req.id}/decide", form, csrf_from="/")
    history = as_user("alice").get("/?tab=decided").get_data(as_text=True)
    assert "To owner@shop.example: Better subject" in history and ">edited</span>" in history
    assert 'class="badge" id="attention-count"' not in as_user("bob").get("/").get_data(as_text=True)


def test_links_open_airflow_pages_from_inside_its_navigation(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate(run_id="manual__2026-01-01T00:00:00+00:00"))
    mapped, _ = ui_store.record_request(gate(run_id="m", map_index=3))
    page = page_of(as_user("alice"), req.id)
    run = "/dags/outreach/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00"
    assert f'href="{run}" target="_top" data-airflow id="link-run"' in page
    assert f'href="{run}/tasks/draft_email" target="_top" data-airflow id="link-step"' in page
    assert f'href="{run}/tasks/draft_email__approval" target="_top" data-airflow id="link-gate"' in page
    assert "top.history.pushState" in page  # Airflow's iframe is sandboxed without top navigation
    assert 'href="/dags/outreach/runs/m/tasks/draft_email__approval/mapped/3"' in page_of(as_user("alice"), mapped.id)


def test_times_are_in_airflows_timezone_and_labelled(as_user: Any, ui_store: Store, monkeypatch: Any) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__DEFAULT_TIMEZONE", "Europe/Amsterdam")
    req, _ = ui_store.record_request(gate(expire_after=7200))
    page = page_of(as_user("alice"), req.id)
    assert "data-tz-name>Europe/Amsterdam<" in page
    stamps = re.findall(r'<time datetime="([^"]+)"[^>]*title="Europe/Amsterdam">([^<]+)</time>', page)
    assert stamps and all(text.endswith((" CET", " CEST")) for _, text in stamps)
    assert 'id="time-left">1h 59m left<' in page or 'id="time-left">2h left<' in page
    assert "expireAfter: rejected if unanswered" in page


def test_the_reviewer_sees_why_and_what_was_done(
    as_user: Any, ui_store: Store, monkeypatch: Any, tmp_path: Path
) -> None:
    research = {
        "url": "http://127.0.0.1:8765/",
        "title": "Rosie's Bakery",
        "description": "Sourdough & cakes on Mill Lane",
        "emails": ["owner@rosies-bakery.example"],
        "phones": [],
        "text": "Welcome",
    }
    given_reads(monkeypatch, graph=(["research_prospect"], ["send_email"]), outputs={"research_prospect": research})
    monkeypatch.setenv("AIRFLOW__HITL__OUTBOX_DIR", str(tmp_path))
    req, _ = ui_store.record_request(
        gate(triggered_by="carol", approvers=[{"userId": "alice"}, {"userId": "bob"}], min_approvals=2)
    )
    page = page_of(as_user("alice"), req.id)
    assert 'id="inputs"' in page and 'data-input-field="title">Rosie&#39;s Bakery<' in page
    assert "Sourdough &amp; cakes on Mill Lane" in page and "owner@rosies-bakery.example" in page
    assert 'href="http://127.0.0.1:8765/" rel="noopener noreferrer" target="_blank" data-external' in page
    assert 'id="triggered-by">carol' in page and 'id="quorum-count">0 of 2<' in page
    for user in ("alice", "bob"):
        as_user(user).post(f"/request/{req.id}/decide", {"action": "approve"}, csrf_from="/")
    eml = tmp_path / "sent.eml"
    eml.write_bytes(
        b"From: Sam <sam@acme.example>\r\nTo: owner@shop.example\r\nSubject: Hello\r\n"
        b"Date: Fri, 27 Nov 2026 05:00:00 +0000\r\nMessage-ID: <1@hitl.local>\r\n\r\nHi there\r\n"
    )
    key = sent_key("outreach", "manual__1", "send_email", req.map_index)
    ui_store.claim_side_effect(key, "email")
    ui_store.finish_side_effect(key, {"transport": "outbox", "message_id": "<1@hitl.local>", "path": str(eml)})
    page = page_of(as_user("alice"), req.id)
    assert 'id="done"' in page and "email sent" in page
    for name, value in (
        ("subject", "Hello"),
        ("date", "Fri, 27 Nov 2026 05:00:00 +0000"),
        ("message-id", "&lt;1@hitl.local&gt;"),
    ):
        assert f'data-header="{name}">{value}<' in page
    assert 'id="quorum-count">2 of 2<' in page


def test_outputs_and_run_details_only_for_users_airflow_lets_read_the_dag(
    as_user: Any, ui_store: Store, monkeypatch: Any
) -> None:
    """Reading Approvals is not reading the DAG: Airflow's auth manager decides who sees its XComs and runs."""
    from airflow.api_fastapi.app import get_auth_manager

    asked: list[tuple[str, str, str | None, str]] = []

    def is_authorized_dag(*, method: str, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if access_entity is None:  # the DAG itself: both may read it (else its requests would not exist for them)
            return True
        asked.append((method, access_entity.name, details.id, user.get_name()))
        return user.get_name() != "bob"  # bob may read Approvals and the DAG, not its XComs and runs

    monkeypatch.setattr(get_auth_manager(), "is_authorized_dag", is_authorized_dag)
    given_reads(
        monkeypatch,
        graph=(["research_prospect"], ["send_email"]),
        outputs={"research_prospect": {"secret": "upstream-xcom"}},
        run={"triggered_by": "run-owner", "run_type": "manual"},
    )
    req, _ = ui_store.record_request(gate(approvers=[{"userId": "alice"}, {"userId": "bob"}]))

    allowed = page_of(as_user("alice"), req.id)
    assert "upstream-xcom" in allowed and 'id="outputs-hidden"' not in allowed and "(manual)" in allowed
    denied = page_of(as_user("bob"), req.id)
    assert "upstream-xcom" not in denied and 'id="inputs"' not in denied and "(manual)" not in denied
    assert "run-owner" not in denied
    assert "you may not see this DAG&#39;s task outputs" in denied and 'id="outputs-hidden"' in denied
    assert ("GET", "XCOM", "outreach", "bob") in asked and ("GET", "RUN", "outreach", "bob") in asked


def test_dag_access_asks_airflows_auth_manager(flask_app: Any) -> None:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from hitl.views.run_facts import dag_access

    assert dag_access("outreach", None) == {"outputs": False, "runs": False}
    viewer = SimpleAuthManagerUser(username="vic", role="viewer")  # SimpleAuthManager: a viewer reads every DAG
    assert dag_access("outreach", viewer) == {"outputs": True, "runs": True}


def test_headers_outside_the_outbox_are_not_read(
    as_user: Any, ui_store: Store, monkeypatch: Any, tmp_path: Path
) -> None:
    given_reads(monkeypatch, graph=([], ["send_email"]))
    monkeypatch.setenv("AIRFLOW__HITL__OUTBOX_DIR", str(tmp_path / "outbox"))
    secret = tmp_path / "secret.eml"
    secret.write_bytes(b"Subject: private\r\n\r\n")
    req, _ = ui_store.record_request(gate())
    as_user("alice").post(f"/request/{req.id}/decide", {"action": "approve"}, csrf_from="/")
    key = sent_key("outreach", "manual__1", "send_email", req.map_index)
    ui_store.claim_side_effect(key, "email")
    ui_store.finish_side_effect(key, {"to": "owner@shop.example", "subject": "Hello", "path": str(secret)})
    page = page_of(as_user("alice"), req.id)
    assert "private" not in page and 'data-header="subject">Hello<' in page


def test_recorded_headers_are_shown_in_order(as_user: Any, ui_store: Store, monkeypatch: Any) -> None:
    given_reads(monkeypatch, graph=([], ["send_email"]))
    req, _ = ui_store.record_request(gate())
    as_user("alice").post(f"/request/{req.id}/decide", {"action": "approve"}, csrf_from="/")
    key = sent_key("outreach", "manual__1", "send_email", req.map_index)
    ui_store.claim_side_effect(key, "email")
    headers = {"Content-Type": "text/plain", "Subject": "<b>Hello</b>", "To": "owner@shop.example", "From": "Sam"}
    ui_store.finish_side_effect(key, {"transport": "smtp", "headers": headers})
    page = page_of(as_user("alice"), req.id)
    done = page.split('id="done"')[1].split("</section>")[0]
    assert re.findall(r'data-header="([a-z-]+)"', done) == ["from", "to", "subject"]
    assert "&lt;b&gt;Hello&lt;/b&gt;" in done and "via smtp" in done


def test_the_review_page_warns_when_time_bounds_have_no_monitor(as_user: Any, ui_store: Store) -> None:
    from hitl.monitor import sweep

    bounded, _ = ui_store.record_request(gate(remind_after=3600))
    plain, _ = ui_store.record_request(gate(run_id="manual__2"))
    page = page_of(as_user("alice"), bounded.id)
    warning = re.search(r'<div class="flash warn" id="monitor-warning">([^<]*)</div>', page)
    assert warning is not None and warning.group(1).startswith("remind_after is set, but the hitl_monitor DAG is not")
    assert 'id="monitor-warning"' not in page_of(as_user("alice"), plain.id)  # no time bounds: nothing to miss
    sweep(ui_store)  # a monitor sweeps: the warning goes
    assert 'id="monitor-warning"' not in page_of(as_user("alice"), bounded.id)
