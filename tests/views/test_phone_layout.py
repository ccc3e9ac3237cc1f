"""The inbox and the review page in chromium at a desk (1280 px) and on a phone (390 px), light and dark.

The pages are the view's own HTML (its CSS is inline), loaded into Debian's chromium; screenshots land in
test-artifacts/. At 390 px nothing may be wider than the screen: a reviewer answering a notification from a
phone must not scroll sideways to find the Status column.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from helpers import gate
from hitl.store import Store

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LONG = "https://very-long-prospect-domain-name.example/and/a/path/that/goes/on?utm_source=notification"


@pytest.fixture(scope="module")
def browser() -> Any:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 390])
def test_inbox_and_review_fit_the_screen(browser: Any, as_user: Any, ui_store: Store, width: int, scheme: str) -> None:
    output = {"from": "Sam <sam@acme.example>", "to": "owner@shop.example", "subject": f"About {LONG}", "body": LONG}
    reqs = [
        ui_store.record_request(gate(run_id=f"scheduled__2026-12-0{i}T00:00:00+00:00", output=output))[0]
        for i in range(1, 4)
    ]
    alice = as_user("alice")
    pages = {
        "inbox": alice.get("/").get_data(as_text=True),
        "review": alice.get(f"/request/{reqs[0].id}").get_data(as_text=True),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    try:
        page = context.new_page()
        for name, html in pages.items():
            page.set_content(html, wait_until="load")
            assert page.evaluate("document.documentElement.getAttribute('data-theme')") == scheme
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}px-{scheme}.png"), full_page=True)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            wide = page.evaluate(
                "[...document.querySelectorAll('body *')]"
                ".filter(e => e.getBoundingClientRect().right > window.innerWidth)"
                ".slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"
            )
            assert overflow <= 0, f"the {name} is {overflow} px wider than a {width} px screen: {wide}"
        # Airflow's own theme values (its UI bundle): the page's background and font as Airflow's shell has them
        airflow_bg = "oklch(0.23185 0.0323 266.44)" if scheme == "dark" else "#FFFFFF"
        same = page.evaluate(
            "c => { const d = document.createElement('div'); d.style.background = c; document.body.append(d);"
            " const want = getComputedStyle(d).backgroundColor; d.remove();"
            " return [getComputedStyle(document.body).backgroundColor, want]; }",
            airflow_bg,
        )
        assert same[0] == same[1], same
        font = page.evaluate("getComputedStyle(document.body).fontFamily")
        assert font.startswith('Inter, -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial'), font
        if width == 390:  # on a phone every request is a card whose status is on screen
            page.set_content(pages["inbox"], wait_until="load")
            status = page.locator("td.status").first.bounding_box()
            assert status is not None and status["x"] + status["width"] <= width
    finally:
        context.close()
