"""Issue 9, items 10-14 on the review UI and the JSON API: sizes, bad input as 4xx, redirects, store down, headers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from views.client import bearer, use_store

from helpers import gate
from hitl.store import APPROVED, PENDING, Store

HEADERS = {
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
BIG_ID = "9" * 30


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for i in range(levels):
        value = {f"k{i}": value} if i % 2 else [value]
    return value


def api(flask_app: Any, method: str, path: str, user: str = "alice", **kw: Any) -> Any:
    return getattr(flask_app.test_client(), method)(f"/hitl/api{path}", headers=bearer(user), **kw)


def assert_json_error(resp: Any, status: int, *needles: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "application/json", resp.get_data(as_text=True)[:300]
    body = resp.get_json()
    assert isinstance(body["detail"], str) and body["code"]
    for needle in needles:
        assert needle in body["detail"], body
    return dict(body)


# -- 14: anti-framing and friends on every response -------------------------------------------------
@pytest.mark.parametrize(
    ("who", "method", "path"),
    [
        ("alice", "get", "/"),
        ("alice", "get", "/badge"),
        ("alice", "get", "/request/1"),
        ("alice", "get", f"/request/{BIG_ID}"),
        ("alice", "get", "/no/such/page"),
        ("alice", "get", "/bulk"),
        (None, "get", "/"),
        ("bearer", "get", "/api/requests"),
        ("bearer", "get", "/api/nothing"),
        (None, "post", "/slack/actions"),
    ],
)
def test_every_response_carries_the_security_headers(
    flask_app: Any, as_user: Any, ui_store: Store, who: str | None, method: str, path: str
) -> None:
    ui_store.record_request(gate())
    if who == "bearer":
        resp = getattr(flask_app.test_client(), method)(f"/hitl{path}", headers=bearer("alice"))
    else:
        resp = getattr(as_user(who).client, method)(f"/hitl{path}")
    for name, value in HEADERS.items():
        assert resp.headers.get(name) == value, (name, resp.status_code)


def test_airflow_pages_outside_the_plugin_are_left_alone(flask_app: Any) -> None:
    resp = flask_app.test_client().get("/no-such-airflow-page")
    assert "Content-Security-Policy" not in resp.headers


# -- 11: the JSON API answers JSON for every error ------------------------------------------------
def test_api_errors_are_json(flask_app: Any, ui_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    req, _ = ui_store.record_request(gate())
    client = flask_app.test_client()
    assert_json_error(client.get("/hitl/api/requests"), 401, "Bearer")
    assert_json_error(api(flask_app, "get", "/requests/abc"), 404, "no approval request abc")
    assert_json_error(api(flask_app, "get", f"/requests/{BIG_ID}"), 404, "no approval request")
    assert_json_error(api(flask_app, "get", "/no/such/thing"), 404)
    assert_json_error(api(flask_app, "get", "/"), 404)
    not_allowed = assert_json_error(api(flask_app, "get", f"/requests/{req.id}/decision"), 405)
    assert not_allowed["code"] == "method_not_allowed"
    assert "POST" in api(flask_app, "delete", f"/requests/{req.id}/decision").headers["Allow"]
    assert_json_error(api(flask_app, "post", f"/requests/{req.id}/decision", data="x" * ((1 << 20) + 1)), 413)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(type(ui_store), "get", boom)
    crashed = assert_json_error(api(flask_app, "get", f"/requests/{req.id}"), 500, "internal error")
    assert "a bug" not in crashed["detail"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"action": "reject", "reason": 123}, "the reason must be text"),
        ({"action": "reject", "reason": ["no"]}, "the reason must be text"),
        ({"action": "approve", "comment": {"x": 1}}, "the comment must be text"),
        ({"action": "reject", "reason": "x" * 2001}, "too long (2001 characters; at most 2000)"),
        ({"action": "reject", "reason": "no\x00"}, "NUL"),
        ({"action": ["approve"]}, '"action" must be'),
        ({"action": "approve", "edited_output": "a string"}, "must be a JSON object"),
        ({"action": "approve", "edited_output": nested(40)}, "nested too deeply"),
        ({"action": "approve", "seen_hash": 5}, "seen_hash"),
        ([1, 2], "JSON object"),
    ],
)
def test_api_refuses_bad_decision_bodies_with_400(flask_app: Any, ui_store: Store, body: Any, needle: str) -> None:
    req, _ = ui_store.record_request(gate())
    resp = api(flask_app, "post", f"/requests/{req.id}/decision", json=body)
    assert_json_error(resp, 400, needle)
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]
    assert ui_store.votes(req.id) == []


def test_api_refuses_deep_json_too_large_edits_and_non_json(flask_app: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    path = f"/requests/{req.id}/decision"
    deep = api(flask_app, "post", path, data="[" * 100_000, content_type="application/json")
    assert_json_error(deep, 400, "nested too deeply")
    edit = {**req.output, "body": "x" * (300 << 10)}
    assert_json_error(api(flask_app, "post", path, json={"action": "approve", "edited_output": edit}), 413, "too large")
    assert_json_error(api(flask_app, "post", path, data="action=approve"), 400, "send JSON")
    assert_json_error(api(flask_app, "post", path, data=b"\xff\xfe", content_type="application/json"), 400, "UTF-8")
    assert_json_error(
        api(flask_app, "post", path, data="{NaN}", content_type="application/json"), 400, "not valid JSON"
    )
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_api_maps_a_refusal_from_the_decision_service_to_400(
    flask_app: Any, ui_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hitl import decisions
    from hitl.views import api as api_module

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise decisions.DecisionError("the comment is not acceptable")

    monkeypatch.setattr(api_module, "decide", refuse)
    req, _ = ui_store.record_request(gate())
    resp = api(flask_app, "post", f"/requests/{req.id}/decision", json={"action": "approve", "comment": "ok"})
    assert_json_error(resp, 400, "the comment is not acceptable")


@pytest.mark.parametrize(
    ("query", "needle"),
    [(f"offset={BIG_ID}", "offset must be"), ("offset=-1", "offset must be"), ("offset=١٢", "offset must be")],
)
def test_api_list_refuses_bad_offsets(flask_app: Any, ui_store: Store, query: str, needle: str) -> None:
    assert_json_error(api(flask_app, "get", f"/requests?{query}"), 400, needle)


def test_api_list_clamps_a_huge_limit(flask_app: Any, ui_store: Store) -> None:
    ui_store.record_request(gate())
    resp = api(flask_app, "get", f"/requests?limit={BIG_ID}")
    assert resp.status_code == 200 and len(resp.get_json()) == 1


# -- 10/11/12: the review page's forms ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("form", "status", "needle"),
    [
        ({}, 400, "choose an action"),
        ({"action": "approve-all"}, 400, "unknown action"),
        ({"action": "reject", "reason": "x" * 2001}, 400, "too long"),
        ({"action": "approve", "comment": "x" * 2001}, 400, "too long"),
        ({"action": "edit", "edit_subject": "s", "edit_body": "x" * (300 << 10)}, 413, "too large"),
    ],
)
def test_the_decide_form_refuses_bad_input(
    as_user: Any, ui_store: Store, form: dict[str, str], status: int, needle: str
) -> None:
    req, _ = ui_store.record_request(gate())
    resp = as_user("alice").post(f"/request/{req.id}/decide", form, csrf_from="/")
    assert resp.status_code == status and needle in resp.get_data(as_text=True)
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]
    assert ui_store.votes(req.id) == []


def test_a_body_over_a_mebibyte_is_413(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    alice = as_user("alice")
    token = alice.csrf("/")
    form = {"action": "approve", "csrf_token": token, "comment": "x" * (1 << 20)}
    resp = alice.post(f"/request/{req.id}/decide", form)
    assert resp.status_code == 413 and "too large" in resp.get_data(as_text=True)
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]


@pytest.mark.parametrize("path", [f"/request/{BIG_ID}", "/request/١٢", "/request/0", "/request/-1"])
def test_ids_that_cannot_exist_are_404_pages(as_user: Any, ui_store: Store, path: str) -> None:
    resp = as_user("alice").get(path)
    assert resp.status_code == 404 and "no approval request" in resp.get_data(as_text=True)
    posted = as_user("alice").post(f"{path}/decide", {"action": "approve"}, csrf_from="/")
    assert posted.status_code == 404


@pytest.mark.parametrize("page", [BIG_ID, "0", "-3", "x", "١٢"])
def test_bad_page_numbers_are_400(as_user: Any, ui_store: Store, page: str) -> None:
    resp = as_user("alice").get(f"/?page={page}")
    assert resp.status_code == 400 and "page must be a whole number" in resp.get_data(as_text=True)


def test_bulk_with_a_non_ascii_or_huge_id_decides_nothing(as_user: Any, ui_store: Store) -> None:
    reqs = [ui_store.record_request(gate(run_id=f"r{i}"))[0] for i in range(2)]
    alice = as_user("alice")
    for bad in ("١٢", BIG_ID, "1e3", " 1"):
        ids = [str(reqs[0].id), bad, str(reqs[1].id)]
        resp = alice.post("/bulk", {"action": "approve", "ids": ids}, csrf_from="/")
        assert resp.status_code == 400 and "not a request id" in resp.get_data(as_text=True)
    assert all(ui_store.get(r.id).status == PENDING for r in reqs)  # type: ignore[union-attr]


def test_bulk_back_goes_only_to_paths_on_this_site(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    alice = as_user("alice")
    for bad in ("//evil.com/x", "/\\evil.com", "https://evil.example/", "javascript:alert(1)", "/\t/evil.com", "evil"):
        resp = alice.post("/bulk", {"action": "approve", "ids": [str(req.id)], "back": bad}, csrf_from="/")
        assert resp.status_code == 400 and "back" in resp.get_data(as_text=True), bad
        assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]
    form = {"action": "approve", "ids": [str(req.id)], "back": "/hitl/?tab=pending", "confirmed": "1"}
    ok = alice.post("/bulk", form, csrf_from="/")
    assert ok.status_code == 302 and ok.headers["Location"] == "/hitl/?tab=pending"
    assert ui_store.get(req.id).status == APPROVED  # type: ignore[union-attr]


def test_the_inbox_sends_back_its_own_path_with_the_script_root(as_user: Any, ui_store: Store) -> None:
    ui_store.record_request(gate())
    page = as_user("alice").get("/?tab=pending", base_url="http://localhost/pluginsv2/")
    assert 'name="back" value="/pluginsv2/hitl/?tab=pending"' in page.get_data(as_text=True)


def test_a_json_output_nested_250_levels_renders(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate(output=nested(250), output_kind="json"))
    resp = as_user("alice").get(f"/request/{req.id}")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and page.count('<details class="json"') == 40
    assert "nested too deeply to show as a tree" in page and "leaf" in page


def test_the_tree_keeps_order_and_escapes() -> None:
    from hitl.views.render import json_tree

    html = str(json_tree({"b": [1, "<i>"], "a": {"<k>": None}}))
    assert html.index(">b [2]<") < html.index(">a<")
    assert "&lt;i&gt;" in html and "&lt;k&gt;" in html and "<i>" not in html


# -- 13: the decision store is down ------------------------------------------------------------------
@pytest.fixture(params=["postgres-closed-port", "sqlite-under-a-file", "sqlite-a-directory"])
def down_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A store URL that cannot be opened or reached."""
    return {
        "postgres-closed-port": "postgresql://hitl:secret@127.0.0.1:9/hitl",
        "sqlite-under-a-file": f"sqlite:///{__file__}/store.db",
        "sqlite-a-directory": f"sqlite:///{tmp_path}",
    }[request.param]


def test_pages_say_the_store_is_unavailable(
    flask_app: Any, as_user: Any, down_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = as_user("alice")
    token = alice.csrf("/")  # while the store is up
    use_store(monkeypatch, down_url)
    for path in ("/", "/request/1", "/?tab=all&page=2"):
        resp = alice.get(path)
        assert resp.status_code == 503 and "the decision store is unavailable" in resp.get_data(as_text=True)
        assert "secret" not in resp.get_data(as_text=True)
    for path, form in (("/request/1/decide", {"action": "approve"}), ("/bulk", {"action": "approve", "ids": "1"})):
        decided = alice.post(path, {**form, "csrf_token": token})
        assert decided.status_code == 503 and "the decision store is unavailable" in decided.get_data(as_text=True)
    badge = alice.get("/badge")
    assert badge.status_code == 503 and badge.get_json()["detail"] == "the decision store is unavailable"
    assert_json_error(api(flask_app, "get", "/requests"), 503, "the decision store is unavailable")
    assert_json_error(api(flask_app, "get", "/requests/1"), 503, "the decision store is unavailable")
    resp = api(flask_app, "post", "/requests/1/decision", json={"action": "approve"})
    assert_json_error(resp, 503, "the decision store is unavailable")
    for name, value in HEADERS.items():
        assert resp.headers[name] == value


def test_a_store_not_migrated_for_this_release_is_named_so_not_unavailable(
    flask_app: Any, as_user: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from hitl.store import Store

    old = Store(f"sqlite:///{tmp_path / 'old.db'}")
    old.upgrade("0003")  # as an earlier release left it, before `db upgrade` of this one
    alice = as_user("alice")
    use_store(monkeypatch, old.url)
    page = alice.get("/")
    assert page.status_code == 503 and "behind head" in page.get_data(as_text=True)
    assert "the decision store is unavailable" not in page.get_data(as_text=True)
    body = assert_json_error(api(flask_app, "get", "/requests"), 503, "decision store at revision 0003, ")
    assert body["code"] == "store_schema" and body["detail"].endswith(": run python -m hitl db upgrade")
    assert str(tmp_path) not in body["detail"]


def test_the_slack_endpoint_says_the_store_is_unavailable(
    flask_app: Any, fake_slack: Any, down_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from views.client import slack_click

    use_store(monkeypatch, down_url)
    monkeypatch.setenv("AIRFLOW__HITL__SLACK_SIGNING_SECRET", "slack-signing-secret")
    monkeypatch.setenv("AIRFLOW__HITL__SLACK_CONN_ID", "slack_bot")
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:alice@example.com")
    fake_slack.emails["U_ALICE"] = "alice@example.com"
    resp = slack_click(flask_app, "U_ALICE", "hitl_approve", 1)
    assert resp.status_code == 503 and resp.get_json()["text"] == "the decision store is unavailable"


def test_json_error_bodies_do_not_echo_huge_input(flask_app: Any, ui_store: Store) -> None:
    resp = api(flask_app, "get", "/requests/" + "7" * 5000)
    assert resp.status_code == 404 and len(json.dumps(resp.get_json())) < 200
