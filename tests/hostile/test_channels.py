"""Hostile input on every channel a decision can come through: review forms, the JSON API, Slack, signed links, the CLI.

Each case is refused with a clear status (or exit code) and message, and the store is unchanged: the request is
still pending, undecided, unedited, and has no vote. (``decide`` audits refusals as "refused" events, so the audit
log may grow; decisions may not.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from views.client import SLACK_SECRET, Browser, bearer, slack_payload, slack_post, token, use_store
from views.client import flask_app as make_app

from helpers import gate
from hitl.store import PENDING, ApprovalRequest, Store

REPO = Path(__file__).resolve().parents[2]
HUGE = str(2**64)  # beyond a 64-bit id
TOO_BIG = 1 << 20  # a mebibyte


def arabic(number: int) -> str:
    """``number`` in Arabic-Indic digits: ``int()`` reads them, so a careless check would act on that request."""
    return "".join(chr(0x0660 + int(d)) for d in str(number))


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


@dataclass
class World:
    app: Any
    store: Store
    req: ApprovalRequest
    slack: Any

    @property
    def rid(self) -> int:
        return self.req.id

    def alice(self) -> Browser:
        return Browser(self.app, "alice")

    def form(self, path: str, data: Any, **kw: Any) -> Any:
        """POST a form as alice (an approver), with a valid CSRF token."""
        from werkzeug.datastructures import MultiDict

        alice = self.alice()
        fields = MultiDict(data)
        fields.add("csrf_token", alice.csrf("/"))
        return alice.post(path, fields, **kw)

    def api(self, path: str, **kw: Any) -> Any:
        return self.app.test_client().post(f"/hitl/api/requests{path}", headers=bearer("alice"), **kw)

    def decision(self, **kw: Any) -> Any:
        return self.api(f"/{self.rid}/decision", **kw)

    def click(self, value: Any, **extra: Any) -> Any:
        payload = {
            "type": "block_actions",
            "user": {"id": "U_ALICE"},
            "trigger_id": "T-1",
            "actions": [{"action_id": "hitl_approve", "value": value}],
            "response_url": f"{self.slack.url}/response",
            **extra,
        }
        return slack_payload(self.app, payload)

    def link(self, request_id: Any, action: str, signed_for: tuple[int, str] | None = None) -> Any:
        """Open the review page through a signed link (signed for ``signed_for``, default the same request/action)."""
        from hitl.notify.links import make_token

        rid, act = signed_for or (self.rid, action)
        query = urlencode({"action": action, "t": make_token(rid, act)})
        return self.alice().get(f"/request/{request_id}?{query}")


@pytest.fixture(scope="module")
def app(airflow_db: Path) -> Any:
    return make_app()


@pytest.fixture
def world(app: Any, sqlite_store: Store, fake_slack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    from hitl.store import _store_for

    use_store(monkeypatch, sqlite_store.url)
    monkeypatch.setenv("AIRFLOW__HITL__SECRET_KEY", "test-link-secret")
    monkeypatch.setenv("AIRFLOW__HITL__SLACK_SIGNING_SECRET", SLACK_SECRET)
    monkeypatch.setenv("AIRFLOW__HITL__SLACK_CONN_ID", "slack_bot")
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:alice@example.com")
    fake_slack.emails["U_ALICE"] = "alice@example.com"
    req, _ = sqlite_store.record_request(gate())
    yield World(app, sqlite_store, req, fake_slack)
    _store_for.cache_clear()


def assert_unchanged(w: World) -> None:
    now = w.store.get(w.rid)
    assert now is not None
    assert (now.status, now.decided_by, now.comment, now.edited_output) == (PENDING, None, None, None)
    assert w.store.votes(w.rid) == []
    assert not w.slack.posted("/response"), "nothing may be announced in Slack"


def text_of(resp: Any) -> str:
    if resp.mimetype == "application/json":
        body = resp.get_json()
        return str(body.get("detail") or body.get("text") or body) if isinstance(body, dict) else str(body)
    return str(resp.get_data(as_text=True))


Case = Callable[[World], Any]


# -- the review page's forms and the bulk form ---------------------------------------------------------
FORMS = [
    pytest.param(lambda w: w.form(f"/request/{w.rid}/decide", {}), 400, "choose an action", id="decide-no-action"),
    pytest.param(
        lambda w: w.form(f"/request/{w.rid}/decide", {"action": "approve-all"}), 400, "unknown action", id="decide-odd"
    ),
    pytest.param(
        lambda w: w.form(f"/request/{w.rid}/decide", {"action": "APPROVE"}), 400, "unknown action", id="decide-case"
    ),
    pytest.param(
        lambda w: w.form(f"/request/{w.rid}/decide", {"action": "reject", "reason": "x" * 2001}),
        400,
        "too long",
        id="decide-long-reason",
    ),
    pytest.param(
        lambda w: w.form(f"/request/{w.rid}/decide", {"action": "reject", "reason": "no\x00pe"}),
        400,
        "NUL",
        id="decide-nul-reason",
    ),
    pytest.param(
        lambda w: w.form(f"/request/{w.rid}/decide", {"action": "approve", "comment": "c" * 2001}),
        400,
        "too long",
        id="decide-long-comment",
    ),
    pytest.param(
        lambda w: w.form(
            f"/request/{w.rid}/decide",
            {"action": "edit", "edit_from": "a@b.example", "edit_to": "c@d.example", "edit_body": "x" * (300 << 10)},
        ),
        413,
        "too large",
        id="decide-huge-edit",
    ),
    pytest.param(
        lambda w: w.form(f"/request/{w.rid}/decide", {"action": "approve", "comment": "x" * TOO_BIG}),
        413,
        "too large",
        id="decide-body-over-1MiB",
    ),
    pytest.param(
        lambda w: w.form(f"/request/{w.rid}/decide", {"action": "approve", "seen_hash": "0" * 64}),
        409,
        "changed since you opened it",
        id="decide-stale-hash",
    ),
    pytest.param(
        lambda w: w.alice().post(f"/request/{w.rid}/decide", {"action": "approve"}),
        400,
        "CSRF",
        id="decide-no-csrf",
    ),
    pytest.param(
        lambda w: w.form(f"/request/{arabic(w.rid)}/decide", {"action": "approve"}),
        404,
        "no approval request",
        id="decide-arabic-digits-id",
    ),
    pytest.param(
        lambda w: w.form(f"/request/{HUGE}/decide", {"action": "approve"}), 404, "no approval request", id="decide-huge"
    ),
    pytest.param(
        lambda w: w.form("/bulk", {"action": "approve", "ids": arabic(w.rid)}),
        400,
        "not a request id",
        id="bulk-arabic-digits-id",
    ),
    pytest.param(
        lambda w: w.form("/bulk", [("action", "approve"), ("ids", str(w.rid)), ("ids", HUGE)]),
        400,
        "not a request id",
        id="bulk-huge-id-with-a-good-one",
    ),
    pytest.param(
        lambda w: w.form("/bulk", [("action", "approve")] + [("ids", str(w.rid))] * 101),
        400,
        "too many",
        id="bulk-too-many-ids",
    ),
    pytest.param(
        lambda w: w.form("/bulk", {"action": "approve-all", "ids": str(w.rid)}),
        400,
        "unknown bulk action",
        id="bulk-odd-action",
    ),
    pytest.param(
        lambda w: w.form("/bulk", {"action": "reject", "ids": str(w.rid), "reason": "r" * 2001}),
        400,
        "too long",
        id="bulk-long-reason",
    ),
    *(
        pytest.param(
            lambda w, back=back: w.form("/bulk", {"action": "approve", "ids": str(w.rid), "back": back}),
            400,
            "must be a path on this site",
            id=f"bulk-back-{name}",
        )
        for name, back in (
            ("protocol-relative", "//evil.com/inbox"),
            ("backslash", "/\\evil.com"),
            ("absolute", "https://evil.example/"),
            ("javascript", "javascript:alert(document.cookie)"),
            ("tab-smuggled", "/\t/evil.com"),
            ("relative", "evil.com"),
        )
    ),
]


@pytest.mark.parametrize(("send", "status", "needle"), FORMS)
def test_forms_refuse(world: World, send: Case, status: int, needle: str) -> None:
    resp = send(world)
    assert resp.status_code == status and needle in text_of(resp), text_of(resp)[:500]
    assert_unchanged(world)


# -- the JSON API --------------------------------------------------------------------------------------
JSON = "application/json"
API = [
    pytest.param(lambda w: w.decision(json={"action": "reject", "reason": 123}), 400, "must be text", id="reason-int"),
    pytest.param(lambda w: w.decision(json={"action": "reject", "reason": {}}), 400, "must be text", id="reason-obj"),
    pytest.param(
        lambda w: w.decision(json={"action": "approve", "comment": ["a"]}), 400, "must be text", id="comment-list"
    ),
    pytest.param(
        lambda w: w.decision(json={"action": "reject", "reason": "x" * 2001}), 400, "too long", id="reason-too-long"
    ),
    pytest.param(lambda w: w.decision(json={"action": "ship it"}), 400, '"action" must be', id="unknown-action"),
    pytest.param(lambda w: w.decision(json={"action": None}), 400, '"action" must be', id="null-action"),
    pytest.param(lambda w: w.decision(json=["approve"]), 400, "JSON object", id="body-a-list"),
    pytest.param(lambda w: w.decision(data="[" * 100_000, content_type=JSON), 400, "nested too deeply", id="deep-100k"),
    pytest.param(
        lambda w: w.decision(json={"action": "approve", "edited_output": nested(40)}),
        400,
        "nested too deeply",
        id="deep-edit",
    ),
    pytest.param(lambda w: w.decision(data=b"\xff{", content_type=JSON), 400, "UTF-8", id="not-utf8"),
    pytest.param(lambda w: w.decision(data="{'action': 1}", content_type=JSON), 400, "not valid JSON", id="bad-json"),
    pytest.param(lambda w: w.decision(data="action=approve"), 400, "send JSON", id="form-not-json"),
    pytest.param(
        lambda w: w.decision(json={"action": "approve", "edited_output": ["x"]}),
        400,
        "must be a JSON object",
        id="edit-a-list",
    ),
    pytest.param(
        lambda w: w.decision(json={"action": "approve", "edited_output": {**w.req.output, "body": "b" * (300 << 10)}}),
        413,
        "too large",
        id="edit-over-256KiB",
    ),
    pytest.param(
        lambda w: w.decision(data='{"action": "approve", "comment": "' + "x" * TOO_BIG + '"}', content_type=JSON),
        413,
        "too large",
        id="body-over-1MiB",
    ),
    pytest.param(lambda w: w.api(f"/{HUGE}/decision", json={"action": "approve"}), 404, "no approval", id="huge-id"),
    pytest.param(
        lambda w: w.api(f"/{arabic(w.rid)}/decision", json={"action": "approve"}), 404, "no approval", id="arabic-id"
    ),
    pytest.param(
        lambda w: w.app.test_client().get(f"/hitl/api/requests/{w.rid}/decision", headers=bearer("alice")),
        405,
        "not allowed",
        id="get-on-decision",
    ),
    pytest.param(
        lambda w: w.app.test_client().post(f"/hitl/api/requests/{w.rid}/decision", json={"action": "approve"}),
        401,
        "Bearer",
        id="no-token",
    ),
    pytest.param(
        lambda w: _cookie_only(w).post(f"/hitl/api/requests/{w.rid}/decision", json={"action": "approve"}),
        401,
        "Bearer",
        id="cookie-not-bearer",
    ),
]


def _cookie_only(w: World) -> Any:
    client = w.app.test_client()
    client.set_cookie("_token", token("alice"))
    return client


@pytest.mark.parametrize(("send", "status", "needle"), API)
def test_the_json_api_refuses_in_json(world: World, send: Case, status: int, needle: str) -> None:
    resp = send(world)
    assert resp.status_code == status and resp.mimetype == JSON, resp.get_data(as_text=True)[:300]
    assert needle in resp.get_json()["detail"]
    assert_unchanged(world)


# -- Slack's action endpoint ---------------------------------------------------------------------------
def _submission(w: World, *, metadata: Any = None, reason: Any = "fine") -> Any:
    import json

    meta = metadata if metadata is not None else json.dumps({"request_id": w.rid})
    values = {"hitl_reason": {"reason": {"type": "plain_text_input", "value": reason}}}
    view = {"callback_id": "hitl_reject", "private_metadata": meta, "state": {"values": values}}
    return slack_payload(w.app, {"type": "view_submission", "user": {"id": "U_ALICE"}, "view": view})


SLACK = [
    pytest.param(lambda w: slack_payload(w.app, {}, timestamp="abc"), 401, "request timestamp", id="ts-letters"),
    pytest.param(lambda w: slack_payload(w.app, {}, timestamp="9" * 5000), 401, "request timestamp", id="ts-5000"),
    pytest.param(lambda w: slack_payload(w.app, {}, timestamp="\u00b9\u00b2"), 401, "request timestamp", id="ts-sup"),
    pytest.param(lambda w: slack_payload(w.app, {}, timestamp=""), 401, "request timestamp", id="ts-missing"),
    pytest.param(lambda w: slack_payload(w.app, {}, age=3600), 401, "stale", id="ts-an-hour-old"),
    pytest.param(lambda w: slack_payload(w.app, {}, secret="guess"), 401, "invalid Slack signature", id="forged"),
    pytest.param(
        lambda w: slack_payload(w.app, {}, signature="v0=\u00e9"), 401, "invalid Slack signature", id="sig-latin1"
    ),
    pytest.param(lambda w: slack_post(w.app, "nothing=here"), 400, "no payload field", id="no-payload"),
    pytest.param(lambda w: slack_payload(w.app, "{not json"), 400, "not valid JSON", id="payload-not-json"),
    pytest.param(lambda w: slack_payload(w.app, "[1, 2]"), 400, "not a JSON object", id="payload-a-list"),
    pytest.param(lambda w: slack_payload(w.app, "[" * 50_000), 400, "nested too deeply", id="payload-deep"),
    pytest.param(lambda w: slack_payload(w.app, {"actions": []}), 400, "type", id="no-type"),
    pytest.param(lambda w: slack_payload(w.app, {"type": "block_actions"}), 400, "actions", id="no-actions"),
    pytest.param(
        lambda w: slack_payload(w.app, {"type": "block_actions", "actions": {"action_id": "hitl_approve"}}),
        400,
        "actions",
        id="actions-an-object",
    ),
    pytest.param(
        lambda w: slack_payload(w.app, {"type": "block_actions", "actions": [{"action_id": ["hitl_approve"]}]}),
        400,
        "action_id",
        id="action-id-a-list",
    ),
    pytest.param(lambda w: w.click(None), 400, "request id", id="value-missing"),
    pytest.param(lambda w: w.click(arabic(w.rid)), 400, "request id", id="value-arabic-digits"),
    pytest.param(lambda w: w.click(HUGE), 400, "request id", id="value-huge"),
    pytest.param(lambda w: w.click(str(w.rid), user="U_ALICE"), 400, "user", id="user-a-string"),
    pytest.param(lambda w: w.click(str(w.rid), user={"id": 7}), 400, "user.id", id="user-id-a-number"),
    pytest.param(
        lambda w: w.click(str(w.rid), response_url="file:///etc/passwd"), 400, "response_url", id="response-url-file"
    ),
    pytest.param(lambda w: _submission(w, metadata="{oops"), 400, "private_metadata", id="modal-metadata-not-json"),
    pytest.param(lambda w: _submission(w, metadata='{"request_id": "x"}'), 400, "request id", id="modal-bad-id"),
    pytest.param(lambda w: _submission(w, reason=["no"]), 200, "must be text", id="modal-reason-a-list"),
    pytest.param(lambda w: _submission(w, reason="r" * 2001), 200, "too long", id="modal-reason-too-long"),
    pytest.param(lambda w: _submission(w, reason="   "), 200, "a reason is required", id="modal-reason-blank"),
]


@pytest.mark.parametrize(("send", "status", "needle"), SLACK)
def test_the_slack_endpoint_refuses(world: World, send: Case, status: int, needle: str) -> None:
    resp = send(world)
    assert resp.status_code == status and resp.mimetype == JSON, resp.get_data(as_text=True)[:300]
    body = resp.get_json()
    said = body["errors"]["hitl_reason"] if body.get("response_action") == "errors" else body["text"]
    assert needle in said, body
    assert_unchanged(world)


def test_an_unsigned_oversized_slack_body_is_413(world: World) -> None:
    resp = slack_post(world.app, "payload=" + "x" * TOO_BIG)
    assert resp.status_code == 413 and "too large" in resp.get_json()["text"]
    assert_unchanged(world)


# -- signed links from emails and Slack messages -------------------------------------------------------
LINKS = [
    pytest.param(lambda w: w.link(w.rid, "reject", signed_for=(w.rid, "approve")), 400, "another", id="other-action"),
    pytest.param(lambda w: w.link(w.rid, "approve", signed_for=(w.rid + 1, "approve")), 400, "another", id="other-id"),
    pytest.param(
        lambda w: w.alice().get(f"/request/{w.rid}?action=approve&t={'A' * 10_000}"), 400, "not valid", id="junk-token"
    ),
    pytest.param(
        lambda w: w.alice().get(f"/request/{w.rid}?action=approve&t=%00%FF%FE"), 400, "not valid", id="binary-token"
    ),
    pytest.param(lambda w: _tampered(w), 400, "not valid", id="tampered-token"),
    pytest.param(lambda w: w.link(arabic(w.rid), "approve"), 404, "no approval request", id="arabic-id-in-path"),
    pytest.param(lambda w: w.link(HUGE, "approve"), 404, "no approval request", id="huge-id-in-path"),
]


def _tampered(w: World) -> Any:
    from hitl.notify.links import review_url

    query = parse_qs(urlsplit(review_url(w.rid, "approve")).query)
    good = query["t"][0]
    bad = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    return w.alice().get(f"/request/{w.rid}?{urlencode({'action': 'approve', 't': bad})}")


@pytest.mark.parametrize(("send", "status", "needle"), LINKS)
def test_links_refuse_and_never_decide(world: World, send: Case, status: int, needle: str) -> None:
    resp = send(world)
    assert resp.status_code == status and needle in text_of(resp), text_of(resp)[:500]
    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert_unchanged(world)


# -- the CLI -------------------------------------------------------------------------------------------
CLI = [
    pytest.param(lambda w: ("approve", arabic(w.rid), "--user", "alice"), 2, "not a request id", id="arabic-id"),
    pytest.param(lambda w: ("approve", HUGE, "--user", "alice"), 2, "not a request id", id="huge-id"),
    pytest.param(
        lambda w: ("approve", str(w.rid), "--user", "alice", "--output-json", "[" * 100_000),
        2,
        "nested too deeply",
        id="deep-output-json",
    ),
    pytest.param(
        lambda w: ("approve", str(w.rid), "--user", "alice", "--output-json", '"just text"'),
        2,
        "must be a JSON object",
        id="output-json-a-string",
    ),
    pytest.param(
        lambda w: ("reject", str(w.rid), "--user", "alice", "--reason", "x" * 2001), 2, "too long", id="long-reason"
    ),
    pytest.param(lambda w: ("reject", str(w.rid), "--user", "alice", "--reason", " "), 1, "reason", id="blank-reason"),
]


@pytest.mark.parametrize(("argv", "code", "needle"), CLI)
def test_the_cli_refuses_in_one_line(
    world: World, argv: Callable[[World], tuple[str, ...]], code: int, needle: str
) -> None:
    env = {**os.environ, "AIRFLOW__HITL__STORE_URL": world.store.url}
    env.pop("HITL_DEBUG", None)
    out = subprocess.run(
        [sys.executable, "-m", "hitl", "approvals", *argv(world)], capture_output=True, text=True, env=env, cwd=REPO
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-1500:]
    assert needle in lines[0]
    assert_unchanged(world)
