"""Comments before deciding: anyone who may read a request comments, @user mentions notify, comments never decide.

The mention email lands on a real SMTP server on loopback; Slack is the local fake of its API.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from helpers import gate, render_partial
from hitl.comments import MAX_MENTIONS, CommentRefused, add_comment, mentioned_names
from hitl.decisions import NotFound
from hitl.identity import Reviewer
from hitl.store import PENDING, Store

ALICE = Reviewer("alice", email="alice@example.com", roles=frozenset({"user"}))
VIC = Reviewer("vic", roles=frozenset({"viewer"}))  # reads, never decides: may still comment


@pytest.fixture(autouse=True)
def _users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:alice@example.com,bob:bob@example.com")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,alice:user,bob:user,vic:viewer")


def test_mentions_are_names_not_email_addresses() -> None:
    body = "@bob see this; mail sam@acme.example, cc @alice. and @bob again (@carol_2)"
    assert mentioned_names(body) == ["bob", "alice", "carol_2"]
    assert mentioned_names("no one") == [] and mentioned_names("a@b.c") == []


def test_a_reader_comments_and_the_thread_is_kept_in_order(store: Store) -> None:
    req, _ = store.record_request(gate())
    first = add_comment(store, req.id, VIC, "  Is the trial 30 days?  ", channel="test")
    second = add_comment(store, req.id, ALICE, "Yes\r\nit is", channel="test")
    assert [(c.author, c.body) for c in store.comments(req.id)] == [
        ("vic", "Is the trial 30 days?"),
        ("alice", "Yes\nit is"),
    ]
    assert first.id < second.id and first.mentions == []
    assert store.get(req.id).status == PENDING  # type: ignore[union-attr]  # comments never decide
    events = [e for e in store.history(req.id) if e.event == "commented"]
    assert [(e.actor, e.detail["comment_id"], e.detail["channel"]) for e in events] == [
        ("vic", first.id, "test"),
        ("alice", second.id, "test"),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [("", "empty"), ("   \n", "empty"), ("x" * 2001, "too long"), (42, "must be text"), ("a\x00b", "NUL")],
)
def test_bad_comments_are_refused(store: Store, body: Any, message: str) -> None:
    req, _ = store.record_request(gate())
    with pytest.raises(CommentRefused, match=message):
        add_comment(store, req.id, ALICE, body)
    assert store.comments(req.id) == []


def test_no_such_request(store: Store) -> None:
    with pytest.raises(NotFound):
        add_comment(store, 999, ALICE, "hello")


def test_comments_per_request_are_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hitl.comments.MAX_COMMENTS", 2)
    req, _ = store.record_request(gate())
    add_comment(store, req.id, ALICE, "one")
    add_comment(store, req.id, ALICE, "two")
    with pytest.raises(CommentRefused, match="has 2 comments already"):
        add_comment(store, req.id, ALICE, "three")


def test_one_author_cannot_fill_the_thread_for_everyone(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hitl.comments.MAX_COMMENTS_PER_AUTHOR", 2)
    req, _ = store.record_request(gate())
    add_comment(store, req.id, VIC, "one")
    add_comment(store, req.id, VIC, "two")
    with pytest.raises(CommentRefused, match="vic wrote 2 comments"):
        add_comment(store, req.id, VIC, "three")
    assert add_comment(store, req.id, ALICE, "the approver still can").body == "the approver still can"
    assert [c.author for c in store.comments(req.id)] == ["vic", "vic", "alice"]


def test_a_mention_emails_that_user_once_and_escapes_the_comment(configured: Store, smtp_server: Any) -> None:
    req, _ = configured.record_request(gate())
    comment = add_comment(configured, req.id, VIC, "@bob <b>look</b> & @alice, and @nobody @vic")
    assert comment.mentions == ["bob", "alice"]  # unknown users and the author are not notified
    assert comment.unknown_mentions == ("nobody",)  # ... and the author is told so
    assert comment.told() == "; mentioned bob, alice; no user @nobody: not notified (left as text)"
    plain = next(m for m in smtp_server.messages if m["To"] == "bob@example.com")
    to_text = plain.get_body(preferencelist=("plain",)).get_content()
    assert "vic mentioned you on request" in to_text and "<b>look</b> & @alice" in to_text  # text as written
    assert sorted(m["To"] for m in smtp_server.messages) == ["alice@example.com", "bob@example.com"]
    to_bob = next(m for m in smtp_server.messages if m["To"] == "bob@example.com")
    assert to_bob["Subject"] == f"[Mentioned] vic on outreach / draft_email (request {req.id})"
    html = to_bob.get_body(preferencelist=("html",)).get_content()
    assert "&lt;b&gt;look&lt;/b&gt; &amp; @alice" in html and "<b>look</b>" not in html
    assert re.search(rf'href="http://airflow.example:8080/plugin/approvals/pluginsv2/hitl/request/{req.id}\?', html)

    from hitl.notify import notify_mention

    again = notify_mention(req, comment, [Reviewer("bob", "bob@example.com")], store=configured)
    assert again == {"bob": {"email": "already"}}  # a retry sends nothing
    assert len(smtp_server.messages) == 2
    assert configured.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_mentions_per_comment_are_bounded(configured: Store, smtp_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"user{i}" for i in range(MAX_MENTIONS + 3)]
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", ",".join(f"{n}:{n}@example.com" for n in names))
    req, _ = configured.record_request(gate())
    comment = add_comment(configured, req.id, ALICE, " ".join(f"@{n}" for n in names))
    assert comment.mentions == names[:MAX_MENTIONS] and len(smtp_server.messages) == MAX_MENTIONS


def test_a_mention_reaches_slack_escaped(configured: Store, fake_slack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    req, _ = configured.record_request(gate(notify={"email": False, "slack": {"connId": "slack_hook"}}))
    add_comment(configured, req.id, ALICE, "@bob <!channel> please check")
    [posted] = [body for path, body in fake_slack.calls if path.startswith("/services/")]
    assert posted["text"].startswith("bob: alice mentioned you on request")
    assert "&lt;!channel&gt; please check" in posted["text"] and "<!channel>" not in posted["text"]


def test_a_reader_cannot_amplify_mentions(
    configured: Store, smtp_server: Any, fake_slack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Slack post per comment naming everyone; one author tells one user about one request once per window."""
    from datetime import timedelta

    import hitl.notify
    from hitl.store import utcnow

    names = [f"user{i}" for i in range(MAX_MENTIONS)]
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", ",".join(f"{n}:{n}@example.com" for n in names))
    req, _ = configured.record_request(gate(notify={"email": True, "slack": {"connId": "slack_hook"}}))
    mentions = " ".join(f"@{n}" for n in names)
    for i in range(5):
        add_comment(configured, req.id, VIC, f"ping {i} {mentions}")
    posts = [body for path, body in fake_slack.calls if path.startswith("/services/")]
    assert len(posts) == 1 and posts[0]["text"].startswith(", ".join(names) + ": vic mentioned you on request")
    assert len(smtp_server.messages) == MAX_MENTIONS  # one email each, for the first comment only
    assert [c.mentions for c in configured.comments(req.id)] == [names] * 5  # recorded, not sent again
    held = [e for e in configured.history(req.id) if e.event == "mention_throttled"]
    assert len(held) == 4 and held[0].actor == "vic" and held[0].detail["users"] == names

    add_comment(configured, req.id, ALICE, "@user0 from someone else")  # another author is not held back
    assert len(smtp_server.messages) == MAX_MENTIONS + 1

    later = utcnow() + timedelta(seconds=hitl.notify.MENTION_EVERY + 1)
    monkeypatch.setattr(hitl.notify, "utcnow", lambda: later)
    add_comment(configured, req.id, VIC, "@user0 again, ten minutes on")
    assert len(smtp_server.messages) == MAX_MENTIONS + 2
    assert len([p for p, _ in fake_slack.calls if p.startswith("/services/")]) == 3


def test_the_bot_posts_one_line_naming_everyone_mentioned(configured: Store, fake_slack: Any) -> None:
    req, _ = configured.record_request(gate(notify={"email": False, "slack": {"connId": "slack_bot", "channel": "C1"}}))
    add_comment(configured, req.id, VIC, "@bob and @alice: <!here> look")
    [posted] = fake_slack.posted("/api/chat.postMessage")
    assert posted["channel"] == "C1" and posted["text"].startswith("bob, alice: vic mentioned you on request")
    assert "&lt;!here&gt; look" in posted["text"] and "<!here>" not in posted["text"]
    [sent] = [e for e in configured.history(req.id) if e.event == "notified"]
    assert sent.detail["users"] == ["bob", "alice"] and sent.detail["occasion"] == "mention:1"


def test_at_most_twenty_names_of_a_comment_are_looked_up(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import hitl.comments

    looked_up: list[str] = []
    real = hitl.comments.known_user
    monkeypatch.setattr(hitl.comments, "known_user", lambda name, dag: looked_up.append(name) or real(name, dag))  # type: ignore[func-returns-value]
    req, _ = store.record_request(gate())
    body = " ".join(f"@x{i}" for i in range(600))[:2000] + " @bob"
    assert add_comment(store, req.id, VIC, body[:2000]).mentions == []
    assert looked_up == [f"x{i}" for i in range(hitl.comments.MAX_NAMES_LOOKED_UP)]


# -- the channels: CLI, JSON API, review page --------------------------------------------------
def test_cli_comment_and_show(configured: Store, smtp_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from hitl.cli import main

    req, _ = configured.record_request(gate())
    assert main(["approvals", "comment", str(req.id), "--user", "vic", "--body", "ask @bob"]) == 0
    assert f"comment 1 added to request {req.id}; mentioned bob" in capsys.readouterr().out
    assert main(["approvals", "comment", str(req.id), "--user", "vic", "--body", " "]) == 1
    assert "the comment is empty" in capsys.readouterr().err
    assert main(["approvals", "show", str(req.id)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(c["author"], c["body"], c["mentions"]) for c in shown["comments"]] == [("vic", "ask @bob", ["bob"])]


@pytest.fixture
def app(airflow_db: Path, monkeypatch: pytest.MonkeyPatch, configured: Store) -> Any:
    from views.client import flask_app

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,alice:user,bob:user,vic:viewer")
    return flask_app()


def test_api_comments_with_a_bearer_token(app: Any, configured: Store, smtp_server: Any) -> None:
    from views.client import bearer

    req, _ = configured.record_request(gate())
    client = app.test_client()
    made = client.post(f"/hitl/api/requests/{req.id}/comments", json={"body": "@bob ok?"}, headers=bearer("vic"))
    assert made.status_code == 201 and made.get_json()["comment"]["mentions"] == ["bob"]
    listed = client.get(f"/hitl/api/requests/{req.id}/comments", headers=bearer("alice")).get_json()
    assert [(c["author"], c["body"]) for c in listed] == [("vic", "@bob ok?")]
    empty = client.post(f"/hitl/api/requests/{req.id}/comments", json={"body": ""}, headers=bearer("vic"))
    assert empty.status_code == 400 and empty.get_json()["code"] == "bad_comment"
    missing = client.get("/hitl/api/requests/999/comments", headers=bearer("vic"))
    assert missing.status_code == 404
    cookie = app.test_client()
    from views.client import token

    cookie.set_cookie("_token", token("vic"))  # a browser cookie does not count on the API
    assert cookie.post(f"/hitl/api/requests/{req.id}/comments", json={"body": "x"}).status_code == 401
    assert configured.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_review_page_comment_form_needs_csrf_and_shows_the_thread_escaped(app: Any, configured: Store) -> None:
    from views.client import Browser

    req, _ = configured.record_request(gate())
    vic = Browser(app, "vic")
    assert vic.post(f"/request/{req.id}/comment", {"body": "no token"}).status_code == 400
    done = vic.post(f"/request/{req.id}/comment", {"body": "<script>x</script> @bob"}, csrf_from=f"/request/{req.id}")
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/request/{req.id}#comment-1")
    assert [c.body for c in configured.comments(req.id)] == ["<script>x</script> @bob"]
    page = render_partial(
        app, "hitl/_review_comments.html", configured, req.id, Reviewer("vic", roles=frozenset({"viewer"}))
    )
    assert "&lt;script&gt;x&lt;/script&gt; @bob" in page and "<script>x</script>" not in page
    assert 'id="comment-1"' in page and 'name="csrf_token"' in page and "mentions bob" in page


def _mid_window(monkeypatch: pytest.MonkeyPatch, windows_later: int = 0) -> None:
    """Pin hitl.notify's clock to the middle of a mention window, so no test straddles a window's edge."""
    from datetime import UTC, datetime

    import hitl.notify

    every = hitl.notify.MENTION_EVERY
    start = (int(datetime(2026, 1, 5, tzinfo=UTC).timestamp()) // every + windows_later) * every
    monkeypatch.setattr(hitl.notify, "utcnow", lambda: datetime.fromtimestamp(start + every // 2, UTC))


def test_one_authors_mentions_across_requests_are_budgeted(
    configured: Store, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty comments on twenty requests mentioning six people each: MENTION_BUDGET emails, not 120."""
    import hitl.notify

    names = [f"user{i}" for i in range(6)]
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", ",".join(f"{n}:{n}@example.com" for n in names))
    _mid_window(monkeypatch)
    budget = hitl.notify.MENTION_BUDGET
    requests = [configured.record_request(gate(run_id=f"manual__{i}"))[0] for i in range(20)]
    for req in requests:
        add_comment(configured, req.id, VIC, "please look " + " ".join(f"@{n}" for n in names))
    assert len(smtp_server.messages) == budget  # not 20 x 6
    assert all(c.mentions == names for req in requests for c in configured.comments(req.id))  # all recorded
    held = [e for req in requests for e in configured.history(req.id) if e.event == "mention_throttled"]
    assert sum(len(e.detail["users"]) for e in held) == 20 * 6 - budget
    assert all(e.detail["budget"] == budget and e.actor == "vic" for e in held)

    add_comment(configured, requests[0].id, ALICE, "@user0 from another author")  # her own budget
    assert len(smtp_server.messages) == budget + 1
    _mid_window(monkeypatch, windows_later=1)  # the next window: vic may tell people again
    add_comment(configured, requests[1].id, VIC, "@user1 ten minutes on")
    assert len(smtp_server.messages) == budget + 2


def test_the_budget_holds_under_concurrent_comments(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every slot is claimed once: threads telling people at the same time never go past the budget."""
    from concurrent.futures import ThreadPoolExecutor

    import hitl.notify
    from hitl.store import Comment

    _mid_window(monkeypatch)
    req, _ = store.record_request(gate())
    comment = Comment(1, req.id, "vic", "@everyone", ["x"], store.get(req.id).created_at)  # type: ignore[union-attr]
    with ThreadPoolExecutor(max_workers=8) as pool:
        allowed = list(pool.map(lambda i: hitl.notify._budget_allows(store, comment, f"user{i}"), range(40)))
    assert allowed.count(True) == hitl.notify.MENTION_BUDGET
    assert store.count_side_effects("mention-budget:") == hitl.notify.MENTION_BUDGET
    assert store.count_side_effects("mention-budget_") == 0  # the prefix is matched as written, '_' is no wildcard


def test_a_decided_request_gets_no_mention_emails(
    configured: Store, smtp_server: Any, fake_slack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hitl.decisions import decide

    _mid_window(monkeypatch)
    req, _ = configured.record_request(gate(notify={"email": True, "slack": {"connId": "slack_hook"}}))
    decide(configured, req.id, ALICE, "approve")
    comment = add_comment(configured, req.id, VIC, "@bob why was this sent?")
    assert comment.mentions == ["bob"]  # recorded on the thread
    assert smtp_server.messages == []  # mention emails are for pending requests only
    [posted] = [body for path, body in fake_slack.calls if path.startswith("/services/")]
    assert posted["text"].startswith("bob: vic mentioned you")  # the workflow's channel still hears of it
