"""Shadow agreement on the insights page, from the JSON API and from the CLI: the same figures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bs4 import BeautifulSoup
from views.client import bearer

from helpers import gate
from hitl.cli import main
from hitl.decisions import decide
from hitl.identity import Reviewer
from hitl.policy import GatePolicy
from hitl.store import Store

ALICE = Reviewer("alice")


def recorded(store: Store, run: str, confidence: float) -> Any:
    policy = GatePolicy.parse({"approveWhen": {"path": "steps.score.output.confidence", "gte": 0.9}})
    values = {"output": {}, "steps": {"score": {"output": {"confidence": confidence}}}, "params": {}}
    req, _ = store.record_request(gate(run_id=run, verdict=policy.verdict(values, sample_key=run)))
    return req


def test_the_api_and_the_cli_give_the_page_s_figures(
    flask_app: Any, ui_store: Store, as_user: Any, capsys: pytest.CaptureFixture[str]
) -> None:

    for i, (confidence, action) in enumerate([(0.95, "approve"), (0.95, "reject"), (0.2, "approve")]):
        req = recorded(ui_store, f"r{i}", confidence)
        decide(ui_store, req.id, ALICE, action, comment="no" if action == "reject" else None)  # type: ignore[arg-type]
    client = flask_app.test_client()
    api = client.get("/hitl/api/policy?workflow=outreach", headers=bearer("alice")).get_json()
    (gate_figures,) = api["gates"]
    assert (gate_figures["would_decide"], gate_figures["agreed"], gate_figures["approve_reject"]) == (2, 1, 1)
    bad = client.get("/hitl/api/policy?last=0", headers=bearer("alice"))
    assert bad.status_code == 400

    assert main(["policy", "report", "--workflow", "outreach", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gates"] == api["gates"]
    assert main(["policy", "report"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "agreed 1 (50%)" in line and "would approve but rejected 1" in line

    # the insights page shows the same figures
    page = BeautifulSoup(as_user("alice").get("/insights").get_data(as_text=True), "html.parser")
    shown = {b["data-figure"]: b.get_text(strip=True) for b in page.select("#policies [data-figure]")}
    assert shown["policy-would-decide"] == "2" and shown["policy-agreement"] == "50%"
    assert shown["policy-approve-reject"] == "1"
    links = [a["href"] for a in page.select("#policies .policy-disagreements a")]
    assert len(links) == 1 and links[0].endswith(f"/request/{gate_figures['disagreements'][0]['request_id']}")  # type: ignore[union-attr]
