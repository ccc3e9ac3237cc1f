"""The review page shows what the approval binds besides the output (its own template block), escaped."""

from __future__ import annotations

from typing import Any

from bs4 import BeautifulSoup

from helpers import gate
from hitl.store import Store


def test_the_review_page_shows_the_bound_inputs(flask_app: Any, ui_store: Store, as_user: Any) -> None:
    bound = {"contact": {"to": "pat@example.com", "note": "<script>alert(1)</script>"}}
    req, _ = ui_store.record_request(gate(bound=bound))
    html = as_user("alice").get(f"/request/{req.id}").get_data(as_text=True)
    page = BeautifulSoup(html, "html.parser")
    shown = page.select_one('#bound-inputs [data-bound-step="contact"]')
    assert shown is not None and "pat@example.com" in shown.get_text()
    assert "<script>alert(1)</script>" not in html  # escaped

    plain, _ = ui_store.record_request(gate(run_id="manual__2"))
    assert (
        BeautifulSoup(as_user("alice").get(f"/request/{plain.id}").get_data(as_text=True), "html.parser").select(
            "#bound-inputs"
        )
        == []
    )
