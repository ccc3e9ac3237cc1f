"""A reviewer in a real browser (Debian's chromium, driven by Playwright) on a real Airflow.

Logs in as alice, opens Approvals from Airflow's navigation, opens the outreach draft, edits
the subject in place, presses "Send email", and sees the run continue. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import time
from email import policy
from pathlib import Path

import pytest

from hitl_devstack import REPO, AirflowStack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts"
DAG, GATE = "local_business_outreach", "draft_email__approval"

if CHROMIUM is None:
    if os.environ.get("HITL_REQUIRE_BROWSER"):
        raise RuntimeError("HITL_REQUIRE_BROWSER is set but chromium is not installed (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


def test_alice_edits_and_sends_from_the_airflow_ui(stack: AirflowStack, demo_site: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    from hitl.steps.email import safe_name
    from hitl.store import Store

    run_id = stack.trigger(DAG, {"prospect_url": demo_site})
    deadline = time.monotonic() + 180
    while stack.task_state(DAG, run_id, GATE) != "deferred":
        assert time.monotonic() < deadline, "the gate never parked"
        time.sleep(0.5)
    req = Store(f"sqlite:///{stack.home / 'hitl.db'}").current_for_gate(DAG, run_id, GATE)
    assert req is not None
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.goto(f"{stack.base_url}/")
            page.locator("input[name=username]").fill("alice")
            page.locator("input[name=password]").fill(stack.passwords()["alice"])
            page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()

            page.get_by_role("link", name="Approvals").click()  # Airflow's own navigation
            expect(page).to_have_url(re.compile(r"/plugin/approvals"))
            inbox = page.frame_locator("iframe").first
            row = inbox.locator(f'tr[data-request-id="{req.id}"]')
            expect(row).to_contain_text("A quicker checkout for Rosie's Bakery")
            expect(inbox.locator("#attention-count")).not_to_have_text("0")
            page.screenshot(path=str(ARTIFACTS / "inbox.png"), full_page=True)

            row.get_by_role("link", name="draft_email").click()
            expect(inbox.locator("#approve")).to_have_text("Send email")
            expect(inbox.locator('input[name="edit_subject"]')).to_have_value("A quicker checkout for Rosie's Bakery")
            page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)

            # One form: the draft is edited in place and the primary button sends what is on screen.
            inbox.locator('input[name="edit_subject"]').fill("Rosie, a faster till for Saturday mornings?")
            expect(inbox.locator("#changes")).to_contain_text("+Rosie, a faster till for Saturday mornings?")
            inbox.locator("#approve").click()
            expect(inbox.locator("#status")).to_have_text("approved")
            expect(inbox.locator("#diff")).to_contain_text("+Rosie, a faster till for Saturday mornings?")
            page.screenshot(path=str(ARTIFACTS / "decided.png"), full_page=True)
        finally:
            browser.close()

    assert stack.wait_run(DAG, run_id) == "success"
    [sent] = sorted((stack.home / "outbox").glob(f"*__{safe_name(run_id)}__*.eml"))
    message = email.message_from_bytes(Path(sent).read_bytes(), policy=policy.default)
    assert message["Subject"] == "Rosie, a faster till for Saturday mornings?"
