"""The insights page in the FAB provider's real Flask app: figures, charts drawn on the server, CSV, bad input."""

from __future__ import annotations

import csv
import io
from typing import Any

from bs4 import BeautifulSoup

from helpers import gate
from hitl.decisions import decide
from hitl.identity import Reviewer
from hitl.store import Store

ALICE = Reviewer("alice", roles=frozenset({"user"}))


def test_the_page_shows_the_figures_and_svg_charts_without_scripts(as_user: Any, ui_store: Store) -> None:
    hostile = '<script>alert("x")</script>'
    first, _ = ui_store.record_request(gate())
    decide(ui_store, first.id, ALICE, "approve", edited_output={**first.output, "subject": "Edited"})
    second, _ = ui_store.record_request(gate(run_id="r2", dag_id=hostile))
    decide(ui_store, second.id, ALICE, "reject", comment="no")
    ui_store.record_request(gate(run_id="r3"))
    resp = as_user("alice").get("/insights")
    assert resp.status_code == 200
    page = BeautifulSoup(resp.get_data(as_text=True), "html.parser")
    figures = {b["data-figure"]: b.get_text(strip=True) for b in page.select("[data-figure]")}
    assert figures["decided"] == "2" and figures["edit-rate"] == "100%" and figures["pending"] == "1"
    charts = page.select("svg.chart")
    assert len(charts) == 2 and not any(c.find("script") for c in charts)
    assert [r.get("class") for r in charts[0].select("rect")] == [["series-edited"], ["series-rejected"]]
    assert hostile in [o.get_text() for o in page.select("select[name=workflow] option")]  # shown as text, escaped
    assert "<script>alert" not in resp.get_data(as_text=True)


def test_one_workflow_the_csv_and_a_bad_window(as_user: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    decide(ui_store, req.id, ALICE, "approve")
    other, _ = ui_store.record_request(gate(dag_id="billing"))
    decide(ui_store, other.id, ALICE, "reject", comment="no")
    alice = as_user("alice")
    one = BeautifulSoup(alice.get("/insights?workflow=billing&days=7").get_data(as_text=True), "html.parser")
    assert one.select_one("[data-figure=decided]").get_text(strip=True) == "1"  # type: ignore[union-attr]
    got = alice.get("/insights?workflow=outreach&days=90&format=csv")
    assert got.mimetype == "text/csv" and "hitl-insights-outreach-90d.csv" in got.headers["Content-Disposition"]
    totals = {
        r["outcome"]: r["value"]
        for r in csv.DictReader(io.StringIO(got.get_data(as_text=True)))
        if r["section"] == "decisions_total"
    }
    assert totals["approved"] == "1" and totals["rejected"] == "0"
    bad = alice.get("/insights?days=365")
    assert bad.status_code == 400 and "days must be one of 7, 30, 90" in bad.get_data(as_text=True)
