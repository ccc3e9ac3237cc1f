"""The insights page in a real browser (Debian's chromium) inside Airflow's UI: light, dark, and a 390 px phone.

The store is seeded with decisions of every outcome over ten days (people, the deadline and a policy), so every
chart has something to draw. Screenshots go to test-artifacts/insights-<theme>-<width>.png.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from helpers import gate
from hitl.decisions import decide
from hitl.identity import Reviewer
from hitl.policy import GatePolicy
from hitl.store import Store, utcnow
from hitl.store.schema import approval_request
from hitl_devstack import REPO, AirflowStack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts"
WORKFLOW = "insights_seeded"
APPROVERS = [{"userId": "alice"}, {"userId": "bob"}]

if CHROMIUM is None:
    if os.environ.get("HITL_REQUIRE_BROWSER"):
        raise RuntimeError("HITL_REQUIRE_BROWSER is set but chromium is not installed (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


def seed(store: Store) -> dict[str, int]:
    """Decided requests over the last ten days: approved, edited, rejected, expired, and a shadow policy's verdicts."""
    policy = GatePolicy.parse({"approveWhen": {"path": "output.to", "matches": "shop"}})
    people = [Reviewer("alice"), Reviewer("bob")]
    counts = {"approved": 0, "edited": 0, "rejected": 0}
    now = utcnow()
    for i in range(30):
        output = {**gate().output, "to": "owner@shop.example" if i % 3 else "someone@else.example"}
        verdict = policy.verdict({"output": output, "steps": {}, "params": {}}, sample_key=str(i))
        req, _ = store.record_request(
            gate(dag_id=WORKFLOW, run_id=f"seed__{i}", output=output, verdict=verdict, approvers=APPROVERS)
        )
        who = people[i % 2]
        if i % 7 == 0:
            decide(store, req.id, who, "reject", comment="not for this prospect")
            counts["rejected"] += 1
        elif i % 5 == 0:
            decide(store, req.id, who, "approve", edited_output={**output, "subject": f"Edited {i}"})
            counts["edited"] += 1
        else:
            decide(store, req.id, who, "approve")
            counts["approved"] += 1
        created = now - timedelta(days=i % 10, hours=3)
        with store.writing() as conn:  # spread over ten days, decided minutes to hours later
            conn.execute(
                update(approval_request)
                .where(approval_request.c.id == req.id)
                .values(created_at=created, decided_at=created + timedelta(minutes=5 + 37 * (i % 6)))
            )
    for i in range(3):
        store.record_request(gate(dag_id=WORKFLOW, run_id=f"pending__{i}"))
    return counts


def local(url: str) -> bool:
    """Loopback, or what Airflow's own shell makes in the browser (its workers' blob: and data: URLs)."""
    return url.startswith(("http://127.0.0.1:", "blob:http://127.0.0.1:", "data:"))


def contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two CSS rgb()/rgba() colours."""

    def luminance(color: str) -> float:
        r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", color)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_insights_page_in_light_and_dark_on_a_desk_and_a_phone(stack: AirflowStack) -> None:
    from playwright.sync_api import expect, sync_playwright

    store = Store(f"sqlite:///{stack.home / 'hitl.db'}")
    counts = seed(store)
    api = stack.api("GET", f"/pluginsv2/hitl/api/policy?workflow={WORKFLOW}", user="alice")["gates"][0]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"],
        )
        try:
            for theme in ("light", "dark"):
                for width, height in ((1280, 900), (390, 844)):
                    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=theme)
                    page = context.new_page()
                    blocked: list[str] = []  # the page draws its charts itself: nothing from outside loopback
                    page.on("request", lambda r, blocked=blocked: blocked.append(r.url) if not local(r.url) else None)  # type: ignore[call-overload]
                    page.goto(f"{stack.base_url}/")
                    page.locator("input[name=username]").fill("alice")
                    page.locator("input[name=password]").fill(stack.passwords()["alice"])
                    page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
                    page.wait_for_url(lambda url: "login" not in url, timeout=60_000)
                    page.goto(f"{stack.base_url}/plugin/approvals")
                    frame = page.frame_locator("iframe").first
                    frame.locator("a[data-tab=insights]").click()
                    frame.locator("select[name=workflow]").select_option(WORKFLOW)
                    frame.get_by_role("button", name="Show").click()
                    expect(frame.locator("[data-figure=decided]").first).to_have_text(str(sum(counts.values())))
                    expect(frame.locator("svg.chart")).to_have_count(2)
                    would = frame.locator("#policies [data-figure=policy-would-decide]")
                    expect(would).to_have_text(str(api["would_decide"]))
                    expect(frame.locator("#policies [data-figure=policy-approve-reject]")).to_have_text(
                        str(api["approve_reject"])
                    )
                    inner: Any = frame.locator("body")  # evaluated inside the frame
                    mode = inner.evaluate("() => document.documentElement.getAttribute('data-theme')")
                    assert mode == theme
                    colours = inner.evaluate(
                        "() => { const rgb = c => { const x = document.createElement('canvas').getContext('2d');"
                        " x.fillStyle = c; x.fillRect(0, 0, 1, 1); const d = x.getImageData(0, 0, 1, 1).data;"
                        " return `rgb(${d[0]}, ${d[1]}, ${d[2]})`; };"
                        " const s = getComputedStyle(document.body);"
                        " const t = document.querySelector('svg.chart text');"
                        " const bg = [document.body, document.documentElement].map(e => getComputedStyle(e)"
                        ".backgroundColor).find(c => c !== 'transparent' && !/,\\s*0\\)$/.test(c)) || 'white';"
                        " return [rgb(s.color), rgb(bg), rgb(t ? getComputedStyle(t).fill : s.color)]; }"
                    )
                    background = colours[1]
                    assert contrast(colours[0], background) >= 4.5, (theme, colours)
                    assert contrast(colours[2], background) >= 3, (theme, colours)  # chart labels
                    overflow = inner.evaluate(
                        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
                    )
                    assert overflow <= 1, f"{theme} {width}px: {overflow}px of horizontal overflow"
                    page.screenshot(path=str(ARTIFACTS / f"insights-{theme}-{width}.png"), full_page=True)
                    # The whole page, past the frame's fold: the same page opened on its own.
                    page.goto(f"{stack.base_url}/pluginsv2/hitl/insights?workflow={WORKFLOW}")
                    expect(page.locator("#policies [data-figure=policy-would-decide]")).to_have_text(
                        str(api["would_decide"])
                    )
                    page.screenshot(path=str(ARTIFACTS / f"insights-{theme}-{width}-full.png"), full_page=True)
                    assert blocked == [], blocked
                    context.close()
        finally:
            browser.close()


def test_a_printed_review_link_opens_inside_airflow_s_ui(stack: AirflowStack) -> None:
    """``page_url`` (the CLI, the gate's log, emails, Slack, Required Actions) is Airflow's shell with the review page
    in its frame: Airflow's navigation around it, its login in front of it."""
    from playwright.sync_api import expect, sync_playwright

    from hitl.notify.links import page_url

    store = Store(f"sqlite:///{stack.home / 'hitl.db'}")
    req, _ = store.record_request(gate(dag_id="deep_link", run_id="deep__1", approvers=APPROVERS))
    from urllib.parse import urlparse

    link = stack.base_url + urlparse(page_url(req.id)).path  # this process's [api] base_url is not the stack's
    assert link == f"{stack.base_url}/plugin/approvals/pluginsv2/hitl/request/{req.id}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(link)  # not logged in: Airflow's login first, then back to the link
            page.locator("input[name=username]").fill("alice")
            page.locator("input[name=password]").fill(stack.passwords()["alice"])
            page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
            page.wait_for_url(lambda url: "login" not in url, timeout=60_000)
            if "/plugin/approvals/pluginsv2/hitl/request/" not in page.url:  # a login that lands on Home
                page.goto(link)
            expect(page.get_by_role("link", name="Approvals")).to_be_visible()  # Airflow's navigation is there
            frame = page.frame_locator("iframe").first
            expect(frame.locator("#approve")).to_have_text("Send email")
            assert page.url.startswith(link)
            page.screenshot(path=str(ARTIFACTS / "review-in-airflow-shell.png"), full_page=True)
            cookies = page.context.cookies()
            for theme in ("light", "dark"):  # the inbox and this review page in Airflow's frame on a phone
                phone = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=theme)
                phone.add_cookies(cookies)  # type: ignore[arg-type]
                small = phone.new_page()
                for name, url in (("inbox", f"{stack.base_url}/plugin/approvals"), ("review", link)):
                    small.goto(url)
                    inner = small.frame_locator("iframe").first
                    expect(inner.locator("h1, h2").first).to_be_visible()
                    overflow = inner.locator("body").evaluate(
                        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
                    )
                    assert overflow <= 1, f"{name} in Airflow's frame at 390 px, {theme}: {overflow}px too wide"
                    small.screenshot(path=str(ARTIFACTS / f"{name}-in-airflow-{theme}-390.png"), full_page=True)
                phone.close()
        finally:
            browser.close()
