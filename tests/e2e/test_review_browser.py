"""The review experience in a real browser (Debian's chromium, Playwright) inside Airflow's own navigation.

One Airflow for the module; four outreach runs parked at their gate. alice, in Airflow's UI with a
non-UTC timezone picked there, opens Approvals: sees why (the researched site), edits the subject
in place and presses "Send email" (the edited subject is what is sent, and the page shows the sent
message's headers), follows the run/step/gate links to Airflow's own pages, rejects a run, bulk
approves two after a confirmation page, and sees the page dark when Airflow is dark.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import time
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest

from hitl_devstack import REPO, AirflowStack, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts"
DAG, GATE = "local_business_outreach", "draft_email__approval"
TZ = "Asia/Kolkata"  # picked in Airflow's UI (its user menu keeps it in localStorage "timezone")
EDITED = "Rosie, a faster till for Saturday mornings?"

if CHROMIUM is None:
    if os.environ.get("HITL_REQUIRE_BROWSER"):
        raise RuntimeError("HITL_REQUIRE_BROWSER is set but chromium is not installed (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def review_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home: Path = tmp_path_factory.mktemp("airflow-review")
    s = AirflowStack(home=home, port=free_port(), extra_env={"AIRFLOW__HITL__POLL_INTERVAL": "0.5"})
    s.setup()
    s.start()
    try:
        s.wait_healthy()
        s.wait_for_dag(DAG)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def runs(review_stack: AirflowStack, demo_site: str) -> dict[str, Any]:
    """Four runs of the example, each parked at its gate: name -> its approval request."""
    from hitl.store import Store

    names = ("edit", "reject", "bulk1", "bulk2")
    ids = {name: review_stack.trigger(DAG, {"prospect_url": demo_site}) for name in names}
    store = Store(f"sqlite:///{review_stack.home / 'hitl.db'}")
    deadline = time.monotonic() + 300
    found: dict[str, Any] = {}
    while len(found) < len(ids):
        assert time.monotonic() < deadline, f"gates never parked: {sorted(set(ids) - set(found))}"
        for name, run_id in ids.items():
            if name not in found and review_stack.task_state(DAG, run_id, GATE) == "deferred":
                req = store.current_for_gate(DAG, run_id, GATE)
                if req is not None:
                    found[name] = req
        time.sleep(0.5)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            yield b
        finally:
            b.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def sign_in(browser: Any, stack: AirflowStack, user: str, theme: str = "light") -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 1500})
    context.add_init_script(
        f"try {{ localStorage.setItem('timezone', JSON.stringify('{TZ}')); localStorage.setItem('theme', '{theme}'); }}"
        " catch (e) {}"
    )
    page = context.new_page()
    page.goto(f"{stack.base_url}/")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(stack.passwords()[user])
    page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
    page.get_by_role("link", name="Approvals").first.wait_for()
    return page


def open_approvals(page: Any) -> Any:
    from playwright.sync_api import expect

    frame = page.frame_locator("iframe").first
    if "/plugin/approvals" in page.url:  # already inside: Airflow's nav keeps the frame where it is
        frame.locator("header h1 a").click()
    else:
        page.get_by_role("link", name="Approvals").first.click()  # Airflow's own navigation
    expect(page).to_have_url(re.compile(r"/plugin/approvals"))
    expect(frame.locator("#attention-count")).to_be_visible()
    return frame


def open_review(page: Any, req: Any, tab: str = "attention") -> Any:
    from playwright.sync_api import expect

    frame = open_approvals(page)
    if tab != "attention":
        frame.locator(f'[data-tab="{tab}"]').click()
    frame.locator(f'tr[data-request-id="{req.id}"]').get_by_role("link", name="draft_email").click()
    expect(frame.locator("#status")).to_be_visible()
    return frame


def test_edit_in_place_sends_the_edit_and_shows_why_and_what_was_done(
    review_stack: AirflowStack, runs: dict[str, Any], browser: Any
) -> None:
    from playwright.sync_api import expect

    from hitl.steps.email import safe_name

    req = runs["edit"]
    page = sign_in(browser, review_stack, "alice")
    frame = open_approvals(page)
    expect(frame.locator("#attention-count")).to_have_text("4")
    expect(frame.locator(f'tr[data-request-id="{req.id}"]')).to_contain_text("A quicker checkout for Rosie's Bakery")
    expect(frame.locator("#tz-label")).to_contain_text(TZ)
    expect(frame.locator(f'tr[data-request-id="{req.id}"] time')).to_contain_text("GMT+5:30")
    shot(page, "inbox.png")

    frame = open_review(page, req)
    expect(frame.locator("#approve")).to_have_text("Send email")
    expect(frame.locator('[data-input-field="title"]')).to_have_text("Rosie's Bakery")
    expect(frame.locator('[data-input-field="emails"]')).to_contain_text("@")
    expect(frame.locator('[data-input-field="url"]')).to_contain_text("http://127.0.0.1:")
    expect(frame.locator('[data-input-field="description"]')).not_to_be_empty()
    expect(frame.locator("#triggered-by")).to_contain_text("admin")
    expect(frame.locator("#run-started")).to_contain_text("GMT+5:30")
    expect(frame.locator("#quorum-count")).to_have_text("0 of 1")
    expect(frame.locator("#changes")).to_be_hidden()
    shot(page, "review-pending.png")

    subject = frame.locator("#field-subject")
    subject.fill(EDITED)
    expect(frame.locator("#changes")).to_be_visible()
    expect(frame.locator("#diff-body")).to_contain_text("-A quicker checkout for Rosie's Bakery")
    expect(frame.locator("#diff-body")).to_contain_text("+" + EDITED)
    expect(frame.locator("#edit-note")).to_be_visible()
    shot(page, "review-edited.png")

    # Leaving with an unsent edit asks first (in the page: Airflow's sandboxed frame refuses browser prompts);
    # staying keeps the page and the edit.
    frame.locator("#link-run").click()
    expect(frame.locator("#ask")).to_be_visible()
    expect(frame.locator("#ask-message")).to_contain_text("not sent")
    shot(page, "review-leave-warning.png")
    frame.locator("#ask-no").click()
    expect(frame.locator("#ask")).to_be_hidden()
    expect(page).to_have_url(re.compile(r"/plugin/approvals"))
    expect(subject).to_have_value(EDITED)

    # Airflow's own navigation drops the frame without asking anyone: the edit is kept and comes back.
    page.get_by_role("link", name="Dags").first.click()
    expect(page).to_have_url(re.compile(r"/dags$"))
    frame = open_review(page, req)
    expect(frame.locator("#restored")).to_be_visible()
    subject = frame.locator("#field-subject")
    expect(subject).to_have_value(EDITED)
    expect(frame.locator("#diff-body")).to_contain_text("+" + EDITED)

    frame.locator("#approve").click()  # the big button: sends what is on screen
    expect(frame.locator("#status")).to_have_text("approved")
    expect(frame.locator("#diff")).to_contain_text("+" + EDITED)
    expect(frame.locator("[data-history-summary]").last).to_contain_text(EDITED)
    shot(page, "review-decided.png")

    assert review_stack.wait_run(DAG, req.run_id) == "success"
    [sent] = sorted((review_stack.home / "outbox").glob(f"*__{safe_name(req.run_id)}__*.eml"))
    message = email.message_from_bytes(Path(sent).read_bytes(), policy=policy.default)
    assert message["Subject"] == EDITED

    page.reload()
    frame = page.frame_locator("iframe").first
    expect(frame.locator('#done [data-header="subject"]')).to_have_text(EDITED)
    expect(frame.locator('#done [data-header="message-id"]')).to_have_text(str(message["Message-ID"]))
    shot(page, "review-sent.png")
    page.context.close()


def test_links_land_on_airflows_pages_inside_its_navigation(
    review_stack: AirflowStack, runs: dict[str, Any], browser: Any
) -> None:
    from urllib.parse import quote

    from playwright.sync_api import expect

    req = runs["bulk1"]
    page = sign_in(browser, review_stack, "alice")
    run_path = f"/dags/{DAG}/runs/{quote(req.run_id, safe='')}"
    for link, task in (("#link-gate", GATE), ("#link-step", "draft_email"), ("#link-run", None)):
        frame = open_review(page, req)
        frame.locator(link).click()
        expected = run_path + (f"/tasks/{task}" if task else "")
        expect(page).to_have_url(re.compile(re.escape(expected) + "$"))
        expect(page.locator("iframe")).to_have_count(0)  # Airflow's own page, not the plugin's frame
        expect(page.get_by_text(req.run_id).first).to_be_visible()  # Airflow's breadcrumb of this run
        if task:
            expect(page.get_by_text(task).first).to_be_visible()
            expect(page.get_by_text("No Task Instance found")).to_have_count(0, timeout=20_000)
        page.wait_for_load_state("networkidle")
        shot(page, f"airflow-{task or 'run'}-page.png")
    page.context.close()


def test_reject_then_bulk_asks_before_it_sends(review_stack: AirflowStack, runs: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    from hitl.store import Store

    store = Store(f"sqlite:///{review_stack.home / 'hitl.db'}")
    page = sign_in(browser, review_stack, "alice")
    frame = open_review(page, runs["reject"])
    frame.locator("#reason").fill("Wrong prospect: they closed last month")
    frame.locator("#reject").click()
    expect(frame.locator("#status")).to_have_text("rejected")
    shot(page, "review-rejected.png")

    frame = open_approvals(page)
    bulk = [runs["bulk1"], runs["bulk2"]]
    for req in bulk:
        frame.locator(f'input[name="ids"][value="{req.id}"]').check()
    frame.locator("#bulk-approve").click()
    expect(frame.locator("#bulk-confirm")).to_have_attribute("data-count", "2")
    expect(frame.locator("#bulk-confirm-button")).to_have_text("Approve 2 requests")
    for req in bulk:
        expect(frame.locator(f'#bulk-confirm tr[data-request-id="{req.id}"]')).to_contain_text(req.summary)
    assert all(store.get(r.id).status == "pending" for r in bulk)  # type: ignore[union-attr]  # asked first
    shot(page, "bulk-confirm.png")
    frame.locator("#bulk-confirm-button").click()
    expect(frame.locator("#attention-count")).to_have_text("0")
    expect(frame.locator("#attention-count")).to_have_class(re.compile(r"\bzero\b"))
    assert all(store.get(r.id).status == "approved" for r in bulk)  # type: ignore[union-attr]
    page.context.close()


def test_dark_when_airflow_is_dark(review_stack: AirflowStack, runs: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    page = sign_in(browser, review_stack, "alice", theme="dark")
    expect(page.locator("html")).to_have_class(re.compile(r"\bdark\b"))  # Airflow itself is dark
    frame = open_review(page, runs["edit"], tab="all")
    expect(frame.locator("html")).to_have_attribute("data-theme", "dark")
    background = frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
    channels = [float(v) for v in re.findall(r"[\d.]+", background)[:3]]
    assert (background.startswith("oklch") and channels[0] < 0.3) or max(channels) < 80, background
    shot(page, "review-dark.png")
    open_approvals(page)
    shot(page, "inbox-dark.png")
    page.context.close()
