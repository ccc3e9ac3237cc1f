"""The review UI with Flask's test client: who sees and may do what, CSRF, escaping, edits, quorum."""

from __future__ import annotations

from typing import Any

from helpers import gate
from hitl.store import APPROVED, PENDING, REJECTED, Store


def review(user: Any, req_id: int) -> str:
    resp = user.get(f"/request/{req_id}")
    assert resp.status_code == 200
    return str(resp.get_data(as_text=True))


def test_not_logged_in_goes_to_login(as_user: Any) -> None:
    resp = as_user(None).get("/")
    assert resp.status_code == 302 and "login" in resp.headers["Location"]


def test_inbox_shows_what_needs_my_attention(as_user: Any, ui_store: Store) -> None:
    mine, _ = ui_store.record_request(gate(run_id="mine"))
    ui_store.record_request(gate(run_id="for_ops", approvers=[{"role": "Op"}]))
    page = as_user("alice").get("/").get_data(as_text=True)
    assert 'id="attention-count">1<' in page
    assert "To owner@shop.example: Hello" in page and "mine" in page and "for_ops" not in page
    everything = as_user("alice").get("/?tab=pending").get_data(as_text=True)
    assert "for_ops" in everything
    assert as_user("carol").get("/badge").get_json() == {"attention": 1}
    assert as_user("vic").get("/badge").get_json() == {"attention": 0}
    assert f'href="/hitl/request/{mine.id}"' in page


def test_filters_search_and_pagination(as_user: Any, ui_store: Store) -> None:
    for i in range(55):
        ui_store.record_request(gate(run_id=f"run_{i:03d}", dag_id="a" if i % 5 else "b"))
    alice = as_user("alice")
    first = alice.get("/?tab=pending").get_data(as_text=True)
    assert "55 requests" in first and "page 1 of 2" in first and "run_054" in first and "run_000" not in first
    second = alice.get("/?tab=pending&page=2").get_data(as_text=True)
    assert "run_000" in second
    only_b = alice.get("/?tab=pending&dag=b").get_data(as_text=True)
    assert "11 requests" in only_b
    assert "1 request<" in alice.get("/?tab=pending&q=run_007").get_data(as_text=True)
    assert "0 requests" in alice.get("/?tab=pending&age=7d").get_data(as_text=True)


def test_review_page_renders_email_and_escapes_script(as_user: Any, ui_store: Store) -> None:
    evil = {
        "from": "a@b.example",
        "to": "c@d.example",
        "subject": "<script>alert(1)</script>",
        "body": "<img src=x onerror=alert(2)>",
    }
    req, _ = ui_store.record_request(gate(output=evil))
    page = review(as_user("alice"), req.id)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert ">Send email</button>" in page
    assert "/dags/outreach/runs/manual__1" in page


def test_json_output_renders_as_a_tree_and_cannot_be_edited(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate(output={"rows": [1, 2], "note": "<b>x</b>"}, output_kind="json"))
    page = review(as_user("alice"), req.id)
    assert '<details class="json"' in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert 'id="edit"' not in page and 'name="edit_' not in page


def test_approver_approves_through_the_form(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    alice = as_user("alice")
    resp = alice.post(f"/request/{req.id}/decide", {"action": "approve", "seen_hash": req.output_hash}, csrf_from="/")
    assert resp.status_code == 302
    assert ui_store.get(req.id).status == APPROVED  # type: ignore[union-attr]
    page = review(alice, req.id)
    assert 'id="status">approved</span>' in page and "by <strong>alice</strong>" in page
    assert 'id="decide"' not in page


def test_post_without_csrf_token_is_refused(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    resp = as_user("alice").post(f"/request/{req.id}/decide", {"action": "approve"})
    assert resp.status_code == 400
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_non_approver_gets_403_and_a_read_only_page(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    bob = as_user("bob")
    page = review(bob, req.id)
    assert 'id="read-only"' in page and 'id="decide"' not in page
    resp = bob.post(f"/request/{req.id}/decide", {"action": "approve"}, csrf_from="/")
    assert resp.status_code == 403 and "bob is not an approver" in resp.get_data(as_text=True)
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_viewer_is_read_only_even_when_listed_by_role(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate(approvers=[{"role": "viewer"}]))
    vic = as_user("vic")
    assert 'id="decide"' not in review(vic, req.id)
    resp = vic.post(f"/request/{req.id}/decide", {"action": "approve"}, csrf_from="/")
    assert resp.status_code == 403


def test_admin_decides_only_when_no_approvers_are_listed(as_user: Any, ui_store: Store) -> None:
    listed, _ = ui_store.record_request(gate())
    open_gate, _ = ui_store.record_request(gate(run_id="r2", approvers=[]))
    admin = as_user("admin")
    assert admin.post(f"/request/{listed.id}/decide", {"action": "approve"}, csrf_from="/").status_code == 403
    assert admin.post(f"/request/{open_gate.id}/decide", {"action": "approve"}, csrf_from="/").status_code == 302
    assert ui_store.get(open_gate.id).status == APPROVED  # type: ignore[union-attr]


def test_reject_needs_a_reason_then_records_it(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    alice = as_user("alice")
    resp = alice.post(f"/request/{req.id}/decide", {"action": "reject", "reason": ""}, csrf_from="/")
    assert resp.status_code == 400 and "a reason is required" in resp.get_data(as_text=True)
    alice.post(f"/request/{req.id}/decide", {"action": "reject", "reason": "Wrong shop"}, csrf_from="/")
    final = ui_store.get(req.id)
    assert final is not None and final.status == REJECTED and final.comment == "Wrong shop"


def test_bad_edit_shows_field_errors_and_keeps_the_input(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    form = {
        "action": "edit",
        "edit_from": "sam@acme.example",
        "edit_to": "nobody",
        "edit_subject": "Typed by alice",
        "edit_body": "",
    }
    resp = as_user("alice").post(f"/request/{req.id}/decide", form, csrf_from="/")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert 'data-error-for="to">to: &#39;nobody&#39; is not an email address' in page
    assert 'data-error-for="body">body is required' in page
    assert 'value="Typed by alice"' in page
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_edit_and_approve_then_the_page_shows_the_diff(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    form = {
        "action": "edit",
        "edit_from": "Sam <sam@acme.example>",
        "edit_to": "owner@shop.example",
        "edit_subject": "A better subject",
        "edit_body": "Hi there",
    }
    alice = as_user("alice")
    assert (
        alice.post(f"/request/{req.id}/decide", {**form, "seen_hash": req.output_hash}, csrf_from="/").status_code
        == 302
    )
    final = ui_store.get(req.id)
    assert final is not None and final.edited_output["subject"] == "A better subject"  # type: ignore[index]
    page = review(alice, req.id)
    assert (
        'id="diff"' in page
        and '<div class="del">-Hello</div>' in page
        and '<div class="add">+A better subject</div>' in page
    )


def test_second_decision_says_already_decided_by_whom(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate(approvers=[{"userId": "alice"}, {"userId": "bob"}]))
    alice, bob = as_user("alice"), as_user("bob")
    token = bob.csrf(f"/request/{req.id}")  # bob opened the page before alice decided
    alice.post(f"/request/{req.id}/decide", {"action": "approve"}, csrf_from="/")
    resp = bob.post(f"/request/{req.id}/decide", {"action": "reject", "reason": "no", "csrf_token": token})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 409 and "already decided by alice at" in page
    assert 'id="status">approved<' in page


def test_superseded_request_says_so_and_cannot_be_decided(as_user: Any, ui_store: Store) -> None:
    old, _ = ui_store.record_request(gate())
    new, _ = ui_store.record_request(gate(output={**old.output, "body": "rerun"}))
    page = review(as_user("alice"), old.id)
    assert f"review request #{new.id}" in page and 'id="decide"' not in page
    resp = as_user("alice").post(f"/request/{old.id}/decide", {"action": "approve"}, csrf_from="/")
    assert resp.status_code == 409


def test_quorum_and_self_approval_in_the_ui(as_user: Any, ui_store: Store) -> None:
    team = [{"userId": "alice"}, {"userId": "bob"}]
    req, _ = ui_store.record_request(
        gate(approvers=team, min_approvals=2, triggered_by="bob", allow_self_approval=False)
    )
    alice, bob = as_user("alice"), as_user("bob")
    resp = bob.post(f"/request/{req.id}/decide", {"action": "approve"}, csrf_from="/")
    assert resp.status_code == 403 and "may not approve it" in resp.get_data(as_text=True)
    alice.post(f"/request/{req.id}/decide", {"action": "approve"}, csrf_from="/")
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]
    page = review(alice, req.id)
    assert 'id="quorum-count">1 of 2<' in page and 'name="edit_' not in page and 'id="no-edit-quorum"' in page


def test_bulk_approve_decides_each_and_reports_each(as_user: Any, ui_store: Store) -> None:
    mine = [ui_store.record_request(gate(run_id=f"b{i}"))[0] for i in range(3)]
    not_mine, _ = ui_store.record_request(gate(run_id="ops", approvers=[{"role": "Op"}]))
    alice = as_user("alice")
    ids = [str(r.id) for r in mine] + [str(not_mine.id)]
    asked = alice.post("/bulk", {"action": "approve", "ids": ids}, csrf_from="/")
    confirm = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'data-count="3"' in confirm and "Approve 3 requests" in confirm
    assert all(ui_store.get(r.id).status == PENDING for r in mine)  # type: ignore[union-attr]  # asked, not decided
    form = {"action": "approve", "ids": ids, "confirmed": "1"}
    resp = alice.post("/bulk", form, csrf_from="/", follow_redirects=True)
    page = resp.get_data(as_text=True)
    assert all(ui_store.get(r.id).status == APPROVED for r in mine)  # type: ignore[union-attr]
    assert ui_store.get(not_mine.id).status == PENDING  # type: ignore[union-attr]
    assert f"#{not_mine.id}: alice is not an approver" in page
    events = [e.event for r in mine for e in ui_store.history(r.id)]
    assert events.count("approved") == 3


def test_signed_link_opens_the_action_and_a_tampered_one_decides_nothing(
    as_user: Any, ui_store: Store, monkeypatch: Any
) -> None:
    from urllib.parse import urlparse

    from hitl.notify.links import SHELL_ROUTE, UI_PATH, review_url

    monkeypatch.setenv("AIRFLOW__HITL__SECRET_KEY", "test-link-secret")
    req, _ = ui_store.record_request(gate())
    link = urlparse(review_url(req.id, "approve"))
    assert link.path.startswith(f"/plugin/{SHELL_ROUTE}{UI_PATH}/")  # opens inside Airflow's shell
    path = link.path.removeprefix(f"/plugin/{SHELL_ROUTE}{UI_PATH}") + "?" + link.query
    alice = as_user("alice")
    page = alice.get(path).get_data(as_text=True)
    assert 'id="link-action"' in page and 'id="approve" autofocus' in page
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]  # opening a link decides nothing
    tampered = alice.get(path[:-3] + ("xyz" if not path.endswith("xyz") else "abc"))
    assert tampered.status_code == 400 and "This link is not valid" in tampered.get_data(as_text=True)
    other = alice.get(path.replace("action=approve", "action=reject"))
    assert other.status_code == 400 and "another request or action" in other.get_data(as_text=True)
    assert as_user(None).get(path).status_code == 302  # still needs a login


def test_research_output_links_only_to_web_pages(as_user: Any, ui_store: Store) -> None:
    research = {"url": "javascript:alert(1)", "title": "<b>Shop</b>", "emails": [], "phones": [], "text": "x"}
    req, _ = ui_store.record_request(gate(output=research, output_kind="research"))
    page = review(as_user("alice"), req.id)
    assert 'href="javascript:' not in page and "&lt;b&gt;Shop&lt;/b&gt;" in page
    web = {**research, "url": "https://shop.example/"}
    safe, _ = ui_store.record_request(gate(run_id="r2", output=web, output_kind="research"))
    assert 'href="https://shop.example/"' in review(as_user("alice"), safe.id)


def test_statuses_read_as_words_and_names_as_typed(as_user: Any, ui_store: Store) -> None:
    import re

    from hitl.decisions import decide
    from hitl.identity import Reviewer

    req, _ = ui_store.record_request(gate())
    edited = {**req.output, "subject": "Edited"}
    decide(ui_store, req.id, Reviewer("alice", roles=frozenset({"user"})), "approve", edited_output=edited)
    page = as_user("alice").get("/?tab=decided").get_data(as_text=True)
    cell = re.search(r'<td class="status approved"[^>]*>(.*?)</td>', page, re.S)
    assert cell is not None, page[-2000:]
    assert cell.group(1).startswith("Approved (edited)") and ">by alice<" in cell.group(1)
    layout = as_user("alice").get(f"/request/{req.id}").get_data(as_text=True)
    assert "text-transform: capitalize" not in layout  # "by alice" is not shown as "By Alice"
    assert 'id="status-pill">Approved (edited)</span>' in layout


def test_status_words() -> None:
    from hitl.views.render import channel_words, status_words

    assert status_words("changes_requested") == "Changes requested" and status_words("timed_out") == "Timed out"
    assert status_words("approved", edited=True) == "Approved (edited)" and status_words("rejected", True) == "Rejected"
    assert channel_words("cli") == "the CLI" and channel_words("slack") == "Slack"
