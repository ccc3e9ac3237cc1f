"""aiAction's ``llm`` backend against a local OpenAI-compatible chat server, through the common.ai provider.

The provider's PydanticAIHook and pydantic-ai's OpenAI model run unchanged: the connection's host is the fake
server (``tests/fake_openai.py``), which speaks the chat-completions protocol over real HTTP on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import API_KEY, Busy, FakeOpenAI

from hitl.spec.schema import AiActionConfig
from hitl.steps import ai_action, llm

pytest.importorskip("airflow.providers.common.ai")

DRAFT = {"from": "sam@acme.example", "to": "owner@shop.example", "subject": "Faster checkout", "body": "Hi Rosie!"}


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    monkeypatch.setenv("AIRFLOW_CONN_LLM_TEST", json.dumps(fake.connection()))
    yield fake
    fake.close()


class TaskInstance:
    """What the step asks of Airflow's task instance: somewhere to push the provenance XCom."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def config(**overrides: Any) -> dict[str, Any]:
    base = {
        "backend": "llm",
        "output": "email",
        "prompt": "Write to Rosie's Bakery (owner@shop.example) about faster checkout. Sign as sam@acme.example.",
        "system": "You are Sam, a friendly sales rep at Acme.",
        "connId": "llm_test",
    }
    return {**base, **overrides}


def messages_of(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of every turn a chat request carried (tool results and calls shown as their JSON)."""
    turns = []
    for m in request["messages"]:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content)
        if m.get("tool_calls"):
            content = (content or "") + " ".join(c["function"]["arguments"] for c in m["tool_calls"])
        turns.append((m["role"], content or ""))
    return turns


def test_a_good_draft_through_the_connections_model(model: FakeOpenAI) -> None:
    model.answer(DRAFT)
    ti = TaskInstance()
    assert ai_action.run(config(), {"ti": ti}) == DRAFT
    (request,) = model.chats
    assert request["model"] == "gpt-test"  # openai:gpt-test from the connection's extra
    turns = messages_of(request)
    assert turns[0][0] == "system" and "You are Sam" in turns[0][1] and "from, to, subject and body" in turns[0][1]
    assert turns[1] == ("user", config()["prompt"])
    tool = request["tools"][0]["function"]
    assert tool["name"].startswith("final_result")
    assert set(tool["parameters"]["required"]) == {"from", "to", "subject", "body"}
    fed = ti.pushed[llm.PROVENANCE_KEY]
    assert fed["connection"] == "llm_test" and fed["model"] == "openai-chat:gpt-test"
    assert fed["prompt"] == config()["prompt"] and fed["input_tokens"] > 0 and fed["output_tokens"] > 0
    assert fed["seconds"] >= 0 and fed["requests"] == 1
    assert API_KEY not in json.dumps(fed)


def test_the_steps_model_overrides_the_connections_and_text_output(model: FakeOpenAI) -> None:
    model.answer("A short note for Rosie.")
    assert ai_action.run(config(output="text", model="openai-chat:gpt-other")) == {"text": "A short note for Rosie."}
    (request,) = model.chats
    assert request["model"] == "gpt-other" and not request.get("tools")


def test_a_bad_answer_goes_back_to_the_model_then_a_good_one(model: FakeOpenAI) -> None:
    model.answer({"from": "sam@acme.example", "to": "owner@shop.example", "subject": "Hi"}, DRAFT)
    assert ai_action.run(config()) == DRAFT
    _first, second = model.chats
    retry = messages_of(second)[-1]
    assert retry[0] == "tool" and "body is required" in retry[1]  # the reason went back as the tool's result
    # An answer with every field but one the gate would refuse (no address) is sent back too.
    model.requests.clear()
    model.statuses.clear()
    model.answer({**DRAFT, "to": "Rosie"}, DRAFT)
    assert ai_action.run(config()) == DRAFT
    assert "to: " in messages_of(model.chats[1])[-1][1]


def test_an_answer_that_never_fits_fails_with_one_line_naming_the_field(model: FakeOpenAI) -> None:
    model.answer({"from": "sam@acme.example", "to": "owner@shop.example", "subject": "Hi"})
    with pytest.raises(ValueError, match="did not fit") as failed:
        ai_action.run(config(answerRetries=1))
    message = str(failed.value)
    assert "\n" not in message and "after 2 tries" in message and "body" in message
    assert len(model.chats) == 2  # bounded: the first answer and one retry
    model.answer({**DRAFT, "from": "not an address"})
    with pytest.raises(ValueError, match=r"after 3 tries: from: "):
        ai_action.run(config())


def test_a_429_then_success(model: FakeOpenAI) -> None:
    model.answer(Busy(retry_after=1), DRAFT)
    assert ai_action.run(config()) == DRAFT
    assert model.statuses == [429, 200]


def test_the_second_round_carries_the_first_draft_and_the_feedback_as_turns(model: FakeOpenAI) -> None:
    draft2 = {**DRAFT, "body": "Hi Rosie, shorter."}
    draft3 = {**DRAFT, "body": "Hi Rosie, shorter, with the price."}
    review = {
        "round": 3,
        "feedback": "Mention the price.",
        "rounds": [
            {"feedback": "Make it shorter.", "draft": DRAFT},
            {"feedback": "Mention the price.", "draft": draft2},
        ],
    }
    model.answer(draft3)
    assert ai_action.run(config(), {"review": review}) == draft3
    turns = messages_of(model.chats[0])
    assert [role for role, _ in turns] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert turns[1][1] == config()["prompt"]
    assert json.loads(turns[2][1]) == DRAFT and turns[3][1] == "Make it shorter."
    assert json.loads(turns[4][1]) == draft2 and turns[5][1] == "Mention the price."
    assert "Make it shorter" not in turns[1][1]  # the feedback is a turn, not pasted into the prompt


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        ({"conn_type": "google_cloud_platform"}, r"'llm_bad'.*type 'google_cloud_platform'.*pydanticai"),
        ({"conn_type": "pydanticai", "password": "k", "extra": {"model": "nosuch:gpt"}}, r"'llm_bad'.*'nosuch'"),
        ({"conn_type": "pydanticai", "extra": {"model": "openai-chat:gpt-test"}}, r"'llm_bad' has no API key"),
        ({"conn_type": "pydanticai", "password": "k"}, r"No model specified for connection 'llm_bad'"),
    ],
    ids=["not-pydanticai", "unknown-prefix", "no-key", "no-model"],
)
def test_a_connection_that_cannot_reach_a_model_fails_before_any_call(
    model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any], expected: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LLM_BAD", json.dumps(conn))
    with pytest.raises(llm.LlmSetupError, match=expected) as failed:
        ai_action.run(config(connId="llm_bad"))
    assert "\n" not in str(failed.value).strip()
    assert model.requests == []


def test_a_missing_connection_is_named() -> None:
    with pytest.raises(llm.LlmSetupError, match="'nowhere'"):
        ai_action.run(config(connId="nowhere"))


def test_the_spec_checks_what_it_can_before_a_run() -> None:
    AiActionConfig.model_validate(config())
    with pytest.raises(ValueError, match="needs a prompt"):
        AiActionConfig.model_validate(config(prompt=None))
    with pytest.raises(ValueError, match="must be 'provider:model'"):
        AiActionConfig.model_validate(config(model="gpt-4o"))
