"""Request changes on a real Airflow: the draft goes back with feedback, the step re-runs in the same DAG run, the
second draft is the next round (the offline template backend writes the same text; the feedback is a note for
the rep beside it, never in the email), and approving it sends exactly one email, the second draft as the rep
edited it."""

from __future__ import annotations

import email
import json
import time
import urllib.error
import urllib.request
from email import policy
from typing import Any

import pytest
from test_outreach_e2e import DAG, GATE, cli, outbox, store_of, wait_deferred

from hitl.store import ApprovalRequest
from hitl_devstack import AirflowStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
FEEDBACK = "We also offer a free 30-day trial, no card needed."


def api_decide(stack: AirflowStack, request_id: int, body: dict[str, Any], user: str) -> tuple[int, dict[str, Any]]:
    """The JSON API in the api-server (the deciding process re-runs the step there)."""
    req = urllib.request.Request(
        f"{stack.base_url}/pluginsv2/hitl/api/requests/{request_id}/decision",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {stack.token(user)}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_next_round(stack: AirflowStack, run_id: str, after: int, timeout: float = 240) -> ApprovalRequest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        req = store_of(stack).current_for_gate(DAG, run_id, GATE)
        if req is not None and req.id != after and stack.task_state(DAG, run_id, GATE) == "deferred":
            return req
        time.sleep(0.5)
    raise TimeoutError(f"no second draft for {run_id}; gate {stack.task_state(DAG, run_id, GATE)}")


def runs_of(stack: AirflowStack) -> set[str]:
    runs = stack.api("GET", f"/api/v2/dags/{DAG}/dagRuns?limit=100")
    return {r["dag_run_id"] for r in runs["dag_runs"]}


def test_request_changes_reruns_the_draft_in_the_same_run_and_sends_only_the_second(
    stack: AirflowStack, demo_site: str
) -> None:
    before = runs_of(stack)
    run_id = stack.trigger(DAG, {"prospect_url": demo_site})
    first = wait_deferred(stack, run_id)
    assert first.revision == 1 and FEEDBACK not in first.output["body"]

    # bob may not; alice sends it back through the JSON API, answered by the api-server
    status, answer = api_decide(stack, first.id, {"action": "request_changes", "feedback": FEEDBACK}, "bob")
    assert status == 403 and "bob is not an approver" in answer["detail"]
    status, answer = api_decide(stack, first.id, {"action": "request_changes", "feedback": FEEDBACK}, "alice")
    assert status == 200, answer
    assert answer["request"]["status"] == "changes_requested" and "runs again" in answer["detail"]

    second = wait_next_round(stack, run_id, first.id)
    assert (second.revision, second.previous_request_id, second.status) == (2, first.id, "pending")
    assert second.output == first.output and FEEDBACK not in json.dumps(second.output)  # the feedback is no draft text
    assert [e.event for e in store_of(stack).history(second.id)][:2] == ["requested", "notified"]  # told again
    code, out = cli(stack, "approve", str(first.id), "--user", "alice")
    assert code == 1 and "changes already requested by alice" in out

    # the rep does what was asked in their own words, by editing the draft
    trial = "You can try it free for a month. "
    edited = {"body": second.output["body"].replace("Would a 15-minute call", trial + "Would a 15-minute call")}
    code, out = cli(stack, "approve", str(second.id), "--user", "alice", "--output-json", json.dumps(edited))
    assert code == 0, out
    assert stack.wait_run(DAG, run_id, timeout=240) == "success"
    files = outbox(stack, run_id)
    assert len(files) == 1, files
    sent = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert trial.strip() in sent.get_content()
    assert FEEDBACK not in sent.get_content()  # the reviewer's feedback never reaches the customer
    assert runs_of(stack) - before == {run_id}  # one DAG run, not two
    step = stack.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/draft_email")
    research = stack.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/research_prospect")
    assert step["try_number"] == 2 and research["try_number"] == 1  # only the gated step ran again
    tries = stack.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{GATE}/tries")
    states = [t["state"] for t in sorted(tries["task_instances"], key=lambda t: t["try_number"])]
    assert states == ["skipped", "success"], tries  # the sent-back draft's try is no red "failed" mark


@pytest.mark.browser
def test_request_changes_in_the_browser_shows_two_rounds(stack: AirflowStack, demo_site: str) -> None:
    """The review page's own form in chromium; the two-round history is saved to test-artifacts/ as a screenshot."""
    import re
    import shutil

    from hitl_devstack import REPO

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    run_id = stack.trigger(DAG, {"prospect_url": demo_site})
    first = wait_deferred(stack, run_id)
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            page.goto(f"{stack.base_url}/")
            page.locator("input[name=username]").fill("alice")
            page.locator("input[name=password]").fill(stack.passwords()["alice"])
            page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
            page.get_by_role("link", name="Approvals").first.wait_for()

            page.goto(f"{stack.base_url}/pluginsv2/hitl/request/{first.id}")
            page.locator("#feedback").fill(FEEDBACK)
            page.locator("#request-changes-button").click()
            expect(page.get_by_text(re.compile(r"changes requested on request \d+ by alice"))).to_be_visible()

            second = wait_next_round(stack, run_id, first.id)
            page.goto(f"{stack.base_url}/pluginsv2/hitl/request/{second.id}")
            page.locator("#comments textarea[name=body]").fill("@bob the trial line is in now")
            page.locator("#comment-button").click()
            expect(page.locator("#comments .comment")).to_have_count(1)
            expect(page.locator("#round-1")).to_contain_text(FEEDBACK)
            expect(page.locator("#asked")).to_contain_text(FEEDBACK)  # beside the draft, as a note
            expect(page.locator("#round-2")).to_contain_text("Same as draft 1")
            expect(page.locator("#field-body")).not_to_contain_text(FEEDBACK)
            page.screenshot(path=str(artifacts / "request-changes-two-rounds.png"), full_page=True)
        finally:
            browser.close()
    code, out = cli(stack, "approve", str(second.id), "--user", "alice")
    assert code == 0, out
    assert stack.wait_run(DAG, run_id, timeout=240) == "success"
    files = outbox(stack, run_id)
    assert len(files) == 1
    sent = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert FEEDBACK not in sent.get_content()
