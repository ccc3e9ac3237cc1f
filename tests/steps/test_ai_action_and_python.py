"""aiAction's offline template backend and the python step (Gemini: test_gemini.py)."""

from __future__ import annotations

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


def test_python_step_calls_by_dotted_path() -> None:
    assert python.run({"callable": "posixpath:basename", "kwargs": {"p": "/a/b.txt"}}) == "b.txt"
    assert python.run({"callable": "json.dumps", "kwargs": {"obj": [1, 2]}}) == "[1, 2]"
