"""Email notifications against a real SMTP server on loopback, and signed one-click links."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from helpers import dead_smtp_connection, gate
from hitl.notify import notify_requested
from hitl.notify.links import LinkError, check_token, make_token, review_url
from hitl.store import PENDING, Store


@pytest.fixture(autouse=True)
def _settings(configured: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:alice@example.com,bob:bob@example.com")


def links_in(message: Any) -> list[str]:
    body = message.get_body(preferencelist=("html", "plain")).get_content()
    return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', body)]


def test_one_email_per_request_with_a_working_signed_link(sqlite_store: Store, smtp_server: Any) -> None:
    req, _ = sqlite_store.record_request(gate())
    assert notify_requested(req, sqlite_store)["email"] == "sent"
    assert notify_requested(req, sqlite_store)["email"] == "already"  # a retry sends nothing
    assert len(smtp_server.messages) == 1
    msg = smtp_server.messages[0]
    assert msg["To"] == "alice@example.com"
    assert msg["Subject"] == "[Approval needed] outreach / draft_email: To owner@shop.example: Hello"
    review, approve, reject = links_in(msg)
    for link, action in ((review, "review"), (approve, "approve"), (reject, "reject")):
        url = urlparse(link)
        assert (
            f"{url.scheme}://{url.netloc}{url.path}"
            == f"http://airflow.example:8080/plugin/approvals/pluginsv2/hitl/request/{req.id}"
        )
        query = parse_qs(url.query)
        assert query["action"] == [action]
        check_token(query["t"][0], req.id, action)  # does not raise
    events = [e.event for e in sqlite_store.history(req.id)]
    assert events.count("notified") == 2  # dashboard + email, once each


def test_dead_smtp_server_leaves_the_gate_waiting_and_audits_the_failure(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, smtp_server: Any
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", dead_smtp_connection())
    req, _ = sqlite_store.record_request(gate())
    outcome = notify_requested(req, sqlite_store)
    assert outcome["email"].startswith("failed: ")
    assert sqlite_store.get(req.id).status == PENDING  # type: ignore[union-attr]
    failure = [e for e in sqlite_store.history(req.id) if e.event == "notify_failed"]
    assert len(failure) == 1 and failure[0].detail["channel"] == "email"
    # The server is back: the monitor's sweep announces the request once.
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", __import__("os").environ["AIRFLOW_CONN_SMTP_TEST"])
    from hitl.monitor import sweep

    assert sweep(sqlite_store)["renotified"] == [req.id]
    assert len(smtp_server.messages) == 1
    sweep(sqlite_store)
    assert len(smtp_server.messages) == 1


def test_no_smtp_connection_is_skipped_not_failed(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.setenv("AIRFLOW__HITL__SMTP_CONN_ID", "no_such_smtp")
    req, _ = sqlite_store.record_request(gate())
    assert notify_requested(req, sqlite_store)["email"] == "skipped: no SMTP connection 'no_such_smtp'"
    assert not [e for e in sqlite_store.history(req.id) if e.event == "notify_failed"]


def test_recipients_by_email_user_and_owner(sqlite_store: Store, smtp_server: Any) -> None:
    by_email, _ = sqlite_store.record_request(
        gate(run_id="1", approvers=[{"email": "lead@example.com"}, {"userId": "bob"}])
    )
    notify_requested(by_email, sqlite_store)
    owner_only, _ = sqlite_store.record_request(gate(run_id="2", approvers=[{"role": "Op"}], owner="sales@example.com"))
    notify_requested(owner_only, sqlite_store)
    assert [m["To"] for m in smtp_server.messages] == ["lead@example.com, bob@example.com", "sales@example.com"]


def test_tampered_expired_and_mismatched_tokens_are_refused() -> None:
    token = make_token(7, "approve")
    check_token(token, 7, "approve")
    with pytest.raises(LinkError, match="not valid"):
        check_token(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], 7, "approve")
    with pytest.raises(LinkError, match="another request or action"):
        check_token(token, 8, "approve")
    with pytest.raises(LinkError, match="another request or action"):
        check_token(token, 7, "reject")
    with pytest.raises(LinkError, match="expired"):
        check_token(token, 7, "approve", max_age=-1)
    assert "action=reject" in review_url(7, "reject")


def test_the_email_has_a_text_part_beside_the_html_with_the_same_links(sqlite_store: Store, smtp_server: Any) -> None:
    req, _ = sqlite_store.record_request(gate())
    notify_requested(req, sqlite_store)
    (msg,) = smtp_server.messages
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None and text is not html
    plain = text.get_content()
    assert "outreach is waiting for your review at step draft_email" in plain and "<" not in plain
    links = re.findall(r"^(?:Review|Send email|Reject): (\S+)\s*$", plain, re.M)
    assert links == links_in(msg)  # the same three signed links, one a line


def test_a_second_draft_says_which_draft_it_is_and_what_was_asked(
    sqlite_store: Store, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hitl.store import CHANGES_REQUESTED

    first, _ = sqlite_store.record_request(gate())
    with sqlite_store.writing() as conn:  # as "request changes" closes it (the decision's own tests cover that)
        closed = sqlite_store.close_request(
            conn, first.id, status=CHANGES_REQUESTED, user="alice", comment="Mention the free 30-day trial",
            edited_output=None,
        )  # fmt: skip
    assert closed
    second, created = sqlite_store.record_request(gate(output={**first.output, "body": "Hi, with a trial"}))
    assert created and second.revision == 2
    notify_requested(second, sqlite_store)
    (msg,) = smtp_server.messages
    assert msg["Subject"].startswith("[Approval needed, draft 2] outreach / draft_email")
    note = "Draft 2, after alice requested changes: \u201cMention the free 30-day trial\u201d"
    assert note in msg.get_body(preferencelist=("plain",)).get_content()
    assert note in msg.get_body(preferencelist=("html",)).get_content()
