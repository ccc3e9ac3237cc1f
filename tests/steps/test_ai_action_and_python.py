"""aiAction's offline template backend, its Gemini answer parsing, and the python step."""

from __future__ import annotations

from typing import Any

import pytest

from hitl.steps import ai_action, python


def test_template_email_uses_the_rendered_fields() -> None:
    out = ai_action.run(
        {
            "backend": "template",
            "output": "email",
            "email": {"from": "a@b.example", "to": "c@d.example", "subject": " Hi \n", "body": "Body"},
        }
    )
    assert out == {"from": "a@b.example", "to": "c@d.example", "subject": "Hi", "body": "Body"}


def test_template_text() -> None:
    assert ai_action.run({"backend": "template", "output": "text", "text": "Hello"}) == {"text": "Hello"}


class FakeGenAIHook:
    answer = ""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def generate_content(self, **kwargs: Any) -> str:
        FakeGenAIHook.called_with = kwargs  # type: ignore[attr-defined]
        return self.answer


@pytest.fixture
def gemini(monkeypatch: pytest.MonkeyPatch) -> type[FakeGenAIHook]:
    from airflow.providers.google.cloud.hooks import gen_ai

    monkeypatch.setattr(gen_ai, "GenAIGenerativeModelHook", FakeGenAIHook)
    return FakeGenAIHook


def test_gemini_email_answer_is_parsed_and_checked(gemini: type[FakeGenAIHook]) -> None:
    gemini.answer = '```json\n{"from": "a@b.example", "to": "c@d.example", "subject": "S", "body": "B"}\n```'
    out = ai_action.run(
        {"backend": "gemini", "output": "email", "prompt": "Write", "model": "gemini-2.5-flash", "project": "p"}
    )
    assert out["subject"] == "S"
    assert "JSON object" in gemini.called_with["contents"][0]  # type: ignore[attr-defined]
    gemini.answer = '{"subject": "only"}'
    with pytest.raises(ValueError, match="lacks from, to, body"):
        ai_action.run({"backend": "gemini", "output": "email", "prompt": "Write", "model": "m"})
    gemini.answer = "Sure! Here is your email"
    with pytest.raises(ValueError, match="did not answer with JSON"):
        ai_action.run({"backend": "gemini", "output": "email", "prompt": "Write", "model": "m"})


def test_python_step_calls_by_dotted_path() -> None:
    assert python.run({"callable": "posixpath:basename", "kwargs": {"p": "/a/b.txt"}}) == "b.txt"
    assert python.run({"callable": "json.dumps", "kwargs": {"obj": [1, 2]}}) == "[1, 2]"
