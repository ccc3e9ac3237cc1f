"""The gate in Airflow's own screens, on a real Airflow: the gate task's "Review" extra link, the gate on
Airflow's HITL list (Required Actions), and an answer given through Airflow's native HITL endpoint refused
(the gate parks again, nothing is approved or sent) until the decision service decides."""

from __future__ import annotations

import os
import re
import shutil
import urllib.error
from typing import Any
from urllib.parse import quote

import pytest

from helpers import wait_for
from hitl.native import NATIVE_CHANNEL, NATIVE_OPTION
from hitl.steps.email import safe_name
from hitl.store import ApprovalRequest, Store
from hitl_devstack import REPO, AirflowStack

pytestmark = pytest.mark.e2e
DAG = "local_business_outreach"
GATE = "draft_email__approval"
ARTIFACTS = REPO / "test-artifacts"


def store_of(stack: AirflowStack) -> Store:
    return Store(f"sqlite:///{stack.home / 'hitl.db'}")


def parked(stack: AirflowStack, run_id: str) -> ApprovalRequest | None:
    if stack.task_state(DAG, run_id, GATE) != "deferred":
        return None
    return store_of(stack).current_for_gate(DAG, run_id, GATE)


def hitl_detail(stack: AirflowStack, run_id: str) -> dict[str, Any] | None:
    listed = stack.api("GET", f"/api/v2/dags/~/dagRuns/~/hitlDetails?dag_id={DAG}&task_id={GATE}")["hitl_details"]
    found = [d for d in listed if d["task_instance"]["dag_run_id"] == run_id]
    return found[0] if found else None


def test_review_link_required_actions_and_a_native_answer_refused(stack: AirflowStack, demo_site: str) -> None:
    run_id = stack.trigger(DAG, {"prospect_url": demo_site})
    req = wait_for("the gate to park", lambda: parked(stack, run_id))
    review = f"{stack.base_url}/plugin/approvals/pluginsv2/hitl/request/{req.id}"  # inside Airflow's shell

    # (a) the gate task's extra link "Review" resolves to the review page (the worker stored it when it deferred)
    links_path = f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{GATE}/links"
    links = wait_for("the Review link", lambda: stack.api("GET", links_path)["extra_links"].get("Review") or None)
    assert links == review

    # ... and the gate's log names the same page
    log = stack.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{GATE}/logs/1?full_content=true")
    assert f"/pluginsv2/hitl/request/{req.id}" in str(log)

    # (b) the gate is on Airflow's HITL list (Required Actions), pending, with the review link in its body
    detail = wait_for("the HITL record", lambda: hitl_detail(stack, run_id))
    assert detail["response_received"] is False and detail["options"] == [NATIVE_OPTION]
    assert detail["subject"] == f"Review draft_email: {req.summary}"
    assert f"({review})" in detail["body"]
    assert [u["id"] for u in detail["assigned_users"]] == ["alice"]
    pending = stack.api(
        "GET", "/api/v2/dags/~/dagRuns/~/hitlDetails?response_received=false&state=deferred&state=awaiting_input"
    )["hitl_details"]
    assert any(d["task_instance"]["dag_run_id"] == run_id for d in pending)

    if shutil.which("chromium") or shutil.which("chromium-browser"):
        _screenshots(stack, run_id, req.id)
    elif os.environ.get("HITL_REQUIRE_BROWSER"):
        raise RuntimeError("HITL_REQUIRE_BROWSER is set but chromium is not installed")

    # (c) an answer through Airflow's native endpoint: bob is not assigned, Airflow refuses him itself
    patch = f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{GATE}/-1/hitlDetails"
    with pytest.raises(urllib.error.HTTPError) as denied:
        stack.api("PATCH", patch, {"chosen_options": [NATIVE_OPTION], "params_input": {}}, user="bob")
    assert denied.value.code == 403

    # alice (the approver) answers there: Airflow records it and resumes the gate, which refuses it and parks again
    answered = stack.api("PATCH", patch, {"chosen_options": [NATIVE_OPTION], "params_input": {}}, user="alice")
    assert answered["chosen_options"] == [NATIVE_OPTION]
    store = store_of(stack)
    wait_for(
        "the refusal in the audit",
        lambda: [
            e for e in store.history(req.id) if e.event == "refused" and e.detail.get("channel") == NATIVE_CHANNEL
        ],
    )
    again = wait_for("the gate to park again", lambda: parked(stack, run_id))
    assert again.id == req.id and again.status == "pending"
    reopened = wait_for(
        "the HITL record to reopen", lambda: (d := hitl_detail(stack, run_id)) and not d["response_received"] and d
    )
    assert reopened["chosen_options"] in (None, [])
    assert stack.task_state(DAG, run_id, "send_email") in (None, "none", "scheduled", "queued")
    assert not list((stack.home / "outbox").glob(f"*__{safe_name(run_id)}__*.eml"))  # nothing was sent
    log = stack.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{GATE}/logs/1?full_content=true")
    assert "not a decision and was refused" in str(log) and review in str(log)

    # the decision service still decides it: alice approves on the review page's JSON API, the email is sent
    decided = stack.api("POST", f"/pluginsv2/hitl/api/requests/{req.id}/decision", {"action": "approve"}, user="alice")
    assert decided["final"] is True and decided["request"]["status"] == "approved"
    assert stack.wait_run(DAG, run_id) == "success"
    assert stack.task_state(DAG, run_id, "send_email") == "success"
    assert store.get(req.id).status == "approved" and store.get(req.id).decided_by == "alice"  # type: ignore[union-attr]


def goto(page: Any, url: str) -> None:
    """Open a page of Airflow's UI; a navigation the single-page app interrupts itself is tried again."""
    for attempt in range(3):
        try:
            page.goto(url)
            return
        except Exception:
            if attempt == 2:
                raise
            page.wait_for_timeout(1000)


def _screenshots(stack: AirflowStack, run_id: str, request_id: int) -> None:
    """The gate task's page with its Review link, and Airflow's Required Actions page listing the gate."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{stack.base_url}/")
            page.locator("input[name=username]").fill("alice")
            page.locator("input[name=password]").fill(stack.passwords()["alice"])
            page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
            page.get_by_role("link", name="Approvals").wait_for(timeout=60_000)  # logged in: Airflow's navigation
            task_page = f"{stack.base_url}/dags/{DAG}/runs/{quote(run_id, safe='')}/tasks/{GATE}"
            # Airflow 3.3 shows a task's extra links on its Details tab ("Extra Links")
            goto(page, f"{task_page}/details")
            review = page.get_by_role("link", name="Review", exact=True)
            review.wait_for(timeout=60_000)
            shell_url = f"{stack.base_url}/plugin/approvals/pluginsv2/hitl/request/{request_id}"
            assert review.get_attribute("href") == shell_url
            page.screenshot(path=str(ARTIFACTS / "gate_task_review_link.png"), full_page=True)
            goto(page, f"{stack.base_url}/required_actions")
            page.get_by_text("Review draft_email:").first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "required_actions.png"), full_page=True)
            goto(page, f"{task_page}/required_actions")
            page.get_by_role("link", name=re.compile("Review and decide on the review page")).wait_for(timeout=60_000)
            page.get_by_role("button", name=NATIVE_OPTION).wait_for(timeout=60_000)  # says what pressing it does
            page.screenshot(path=str(ARTIFACTS / "gate_required_action_tab.png"), full_page=True)
        finally:
            browser.close()
