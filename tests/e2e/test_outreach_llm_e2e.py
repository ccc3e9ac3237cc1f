"""The outreach example with ``backend: llm`` on a real Airflow, its model a local OpenAI-compatible server.

Its own stack (the shared one has no model connection): the shipped spec with its one line switched to
``backend: llm`` and ``AIRFLOW_CONN_PYDANTICAI_DEFAULT`` pointing at ``tests/fake_openai.py``. The pending draft
is the model's answer; "request changes" runs the step again with the first draft and the feedback as turns;
the second draft is approved and exactly one email goes out.
"""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from test_changes_e2e import api_decide, wait_next_round
from test_outreach_e2e import DAG, outbox, wait_deferred

from hitl_devstack import REPO, AirflowStack, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
FEEDBACK = "Mention the free 30-day trial."
DRAFT1 = {
    "from": "Sam from Acme POS <sam@acme-pos.example>",
    "to": "owner@rosies-bakery.example",
    "subject": "Rosie, a faster till?",
    "body": "Hi Rosie,\n\nAcme POS takes card payments in under two seconds.\n\nSam",
}
DRAFT2 = {**DRAFT1, "body": "Hi Rosie,\n\nAcme POS is fast, and the first 30 days are free.\n\nSam"}


def review_page(stack: AirflowStack, request_id: int, user: str) -> str:
    import urllib.request

    req = urllib.request.Request(
        f"{stack.base_url}/pluginsv2/hitl/request/{request_id}",
        headers={"Authorization": f"Bearer {stack.token(user)}"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read().decode()


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def llm_stack(tmp_path_factory: pytest.TempPathFactory, model: FakeOpenAI) -> Iterator[AirflowStack]:
    home: Path = tmp_path_factory.mktemp("airflow-llm-e2e")
    specs = home / "workflow_specs"
    specs.mkdir()
    spec = (REPO / "workflow_specs" / "local_business_outreach.yaml").read_text()
    assert spec.count("      backend: template\n") == 1
    (specs / "local_business_outreach.yaml").write_text(spec.replace("backend: template", "backend: llm"))
    env = {
        "AIRFLOW__HITL__POLL_INTERVAL": "0.5",
        "AIRFLOW_CONN_PYDANTICAI_DEFAULT": json.dumps(model.connection()),
    }
    s = AirflowStack(home=home, port=free_port(), specs_folder=specs, extra_env=env)
    s.setup()
    s.start()
    try:
        s.wait_healthy()
        s.wait_for_dag(DAG)
        yield s
    finally:
        s.stop()


def test_llm_draft_request_changes_second_draft_approve_one_email(
    llm_stack: AirflowStack, model: FakeOpenAI, demo_site: str
) -> None:
    model.answer(DRAFT1, DRAFT2)
    run_id = llm_stack.trigger(DAG, {"prospect_url": demo_site})
    first = wait_deferred(llm_stack, run_id)
    assert first.output == DRAFT1  # the pending draft is the model's answer
    (ask,) = model.chats
    prompt = ask["messages"][-1]["content"]
    assert "Rosie's Bakery" in json.dumps(prompt)  # the rendered prompt carries the research step's output
    assert model.api_key not in json.dumps(first.output)

    page = review_page(llm_stack, first.id, "alice")  # "What fed this step": the model's side
    fed = page[page.index('id="model-fed"') :]
    fed = fed[: fed.index("</dl>")]
    assert "pydanticai_default" in fed and "openai-chat:gpt-test" in fed and "Rosie&#39;s Bakery" in fed
    assert " in, " in fed and " out" in fed and " s</dd>" in fed
    assert model.api_key not in page

    status, answer = api_decide(llm_stack, first.id, {"action": "request_changes", "feedback": FEEDBACK}, "alice")
    assert status == 200, answer
    second = wait_next_round(llm_stack, run_id, first.id)
    assert second.output == DRAFT2
    turns = [(m["role"], m.get("content")) for m in model.chats[-1]["messages"] if m["role"] != "system"]
    assert [r for r, _ in turns] == ["user", "assistant", "user"]
    assert json.loads(turns[1][1]) == DRAFT1 and turns[2][1] == FEEDBACK

    status, answer = api_decide(llm_stack, second.id, {"action": "approve"}, "alice")
    assert status == 200, answer
    assert llm_stack.wait_run(DAG, run_id) == "success"
    files = outbox(llm_stack, run_id)
    assert len(files) == 1
    sent = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert sent["Subject"] == DRAFT2["subject"] and "30 days are free" in sent.get_content()
