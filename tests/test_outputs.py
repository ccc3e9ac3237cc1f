"""Edits and approvals are checked for what they will do: field_errors (edits) and sendable_errors (any output)."""

from __future__ import annotations

import email
from email import policy
from typing import Any

import pytest

from hitl.outputs import MAX_RECIPIENTS, detect_kind, field_errors, parse_addresses, sendable_errors, summarize
from hitl.steps.email import build_message

EMAIL = {"from": "Sam <sam@acme.example>", "to": "owner@shop.example", "subject": "Hello", "body": "Hi\nthere"}


def errors(**change: Any) -> dict[str, str]:
    return field_errors("email", {**EMAIL, **change})


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


def test_a_plain_email_and_its_optional_fields_are_fine() -> None:
    assert errors() == {}
    assert errors(cc="a@x.example", bcc=["b@x.example", "c@x.example"], reply_to="Desk <desk@acme.example>") == {}
    assert errors(cc=None, bcc="", reply_to=[]) == {}  # empty optional fields are absent
    assert errors(to=["a@x.example", "Bee <b@x.example>"]) == {}
    assert errors(to='"Smith, Jo" <jo@x.example>, b@x.example') == {}


@pytest.mark.parametrize("field", ["to", "from", "cc", "bcc", "reply_to"])
@pytest.mark.parametrize(
    "bad", ["x@y.example\r\nBcc: evil@z.example", "x@y.example\nBcc: evil@z.example", "x@y.example\r"]
)
def test_address_fields_refuse_line_breaks(field: str, bad: str) -> None:
    assert errors(**{field: bad})[field] == f"{field} must be one line"
    assert errors(**{field: ["ok@y.example", bad]})[field] == f"{field} must be one line"


@pytest.mark.parametrize("field", ["to", "from", "cc", "bcc", "reply_to"])
def test_address_fields_refuse_nul(field: str) -> None:
    assert errors(**{field: "x@y.example\x00"})[field] == f"{field} must not contain NUL characters"


@pytest.mark.parametrize("field", ["to", "cc", "bcc", "reply_to"])
@pytest.mark.parametrize(
    "bad",
    [{"a": "b@c.example"}, 42, ["ok@y.example", 7], [["nested@y.example"]], True],
)
def test_address_fields_are_a_string_or_a_list_of_strings(field: str, bad: Any) -> None:
    assert errors(**{field: bad})[field] == f"{field} must be an address or a list of addresses"


def test_a_list_written_as_its_python_repr_is_not_an_address() -> None:
    assert "is not an email address" in errors(to="['a@x.example', 'b@x.example']")["to"]


def test_from_is_one_address() -> None:
    assert errors(**{"from": "a@x.example, b@x.example"})["from"] == "from must be one address"
    assert errors(**{"from": ["a@x.example", "b@x.example"]})["from"] == "from must be one address"
    assert errors(**{"from": None})["from"] == "from is required"


def test_recipients_are_bounded() -> None:
    many = [f"r{i}@x.example" for i in range(MAX_RECIPIENTS)]
    assert errors(to=many) == {}
    assert "at most 100" in errors(to=[*many, "one.more@x.example"])["to"]
    assert "at most 100" in errors(to=many[:60], cc=many[60:], bcc=["b1@x.example"])["to"]
    assert "at most 100" in errors(to=", ".join(f"r{i}@x.example" for i in range(101)))["to"]


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("two\nlines", "subject must be one line"),
        ("two\r\nBcc: evil@z.example", "subject must be one line"),
        ("line\u2028separator", "subject must be one line"),
        ("nul\x00", "subject must not contain NUL characters"),
        ("bell\x07", "subject must not contain control characters"),
        ("x" * 999, "subject is longer than 998 characters"),
        (5, "subject must be text"),
        (["Hello"], "subject must be text"),
        (None, "subject is required"),
        ("   ", "subject is required"),
        ("\ud800", "subject is not valid text"),
    ],
)
def test_subject_rules(subject: Any, message: str) -> None:
    assert errors(subject=subject)["subject"] == message


def test_subject_of_998_characters_and_unicode_is_fine() -> None:
    assert errors(subject="x" * 998) == {}
    assert errors(subject="Grüße, café ☕\ttabbed") == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a\x00b", "body must not contain NUL characters"),
        ({"text": "hi"}, "body must be text"),
        ("x" * 1_000_001, "body is larger than 1 MB"),
        ("é" * 500_001, "body is larger than 1 MB"),  # bytes, not characters
        ("", "body is required"),
        ("\udfff", "body is not valid text"),
    ],
)
def test_body_rules(body: Any, message: str) -> None:
    assert errors(body=body)["body"] == message


def test_body_may_have_lines_and_control_characters_other_than_nul() -> None:
    assert errors(body="line 1\r\nline 2\n\tindented \x0c page") == {}


def test_unknown_email_fields_are_refused() -> None:
    assert errors(headers={"X-Evil": "1"})["output"] == "unknown field(s): headers"
    assert errors(**{f"k{i}": 1 for i in range(30)})["output"].endswith(", ...")


def test_text_rules() -> None:
    assert field_errors("text", {"text": "fine"}) == {}
    assert field_errors("text", {"text": "fine", "extra": 1})["output"] == "unknown field(s): extra"
    assert field_errors("text", {"text": {"nested": "no"}})["text"] == "text must be a string"
    assert field_errors("text", {"text": ["a"]})["text"] == "text must be a string"
    assert field_errors("text", {"text": ""})["text"] == "text is required"
    assert field_errors("text", {"text": "a\x00"})["text"] == "text must not contain NUL characters"
    assert field_errors("text", {"text": "x" * 1_000_001})["text"] == "text is larger than 1 MB"
    assert field_errors("text", "just a string") == {"output": "must be an object"}


def test_nesting_is_bounded() -> None:
    # {"text": [...]} : the object is level 1, each list one more
    assert "text" in field_errors("text", {"text": nested(19)})  # not too deep, but not a string either
    assert field_errors("text", {"text": nested(20)}) == {"output": "nested more than 20 levels deep"}
    assert field_errors("email", {**EMAIL, "to": nested(100)}) == {"output": "nested more than 20 levels deep"}


def test_only_email_and_text_can_be_edited_but_anything_else_can_be_approved() -> None:
    assert "cannot be edited" in field_errors("json", {"a": 1})["output"]
    assert sendable_errors("json", {"a": nested(50)}) == {}
    assert sendable_errors("research", {"url": "x"}) == {}


def test_sendable_errors_checks_an_unedited_output_like_an_edit() -> None:
    bad = {**EMAIL, "to": "x@y.example\r\nBcc: evil@z.example"}
    assert sendable_errors("email", bad) == field_errors("email", bad) == {"to": "to must be one line"}
    assert sendable_errors("email", EMAIL) == {}
    assert sendable_errors("text", {"text": 5}) == {"text": "text must be a string"}


@pytest.mark.parametrize(
    "output",
    [
        EMAIL,
        {**EMAIL, "to": ["a@x.example", '"Smith, Jo" <jo@x.example>'], "cc": "c@x.example, d@x.example"},
        {**EMAIL, "from": "Zoë Ünïcode <zoe@acme.example>", "subject": "Grüße " * 30, "reply_to": ["r@acme.example"]},
        {**EMAIL, "bcc": [f"b{i}@x.example" for i in range(50)], "to": [f"t{i}@x.example" for i in range(50)]},
    ],
)
def test_what_passes_is_sent_as_it_reads(output: dict[str, Any]) -> None:
    """Whatever sendable_errors lets through builds a message whose headers parse back to the same addresses."""
    assert sendable_errors("email", output) == {}
    parsed = email.message_from_bytes(bytes(build_message(output)), policy=policy.default)
    for field, header in (("from", "From"), ("to", "To"), ("cc", "Cc"), ("bcc", "Bcc"), ("reply_to", "Reply-To")):
        if field in output:
            want = [a.addr_spec for a in parse_addresses(field, output[field])]
            assert [a.addr_spec for a in parsed[header].addresses] == want
            assert "[" not in str(parsed[header]) and "'" not in str(parsed[header])
    assert parsed["Subject"] == output["subject"]
    assert parsed.get_content().rstrip("\n") == output["body"].replace("\r\n", "\n")


def test_summary_and_kind_of_a_list_recipient() -> None:
    out = {**EMAIL, "to": ["a@x.example", "b@x.example"]}
    assert detect_kind(out) == "email"
    assert summarize(out, "email") == "To a@x.example, b@x.example: Hello"
