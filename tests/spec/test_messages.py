"""Spec errors read well: right lines for YAML syntax errors, every error of a file, suggestions that fit the place."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl.spec import safe_yaml
from hitl.spec.loader import MAX_ERRORS, load_spec, load_specs

STEP = "  - id: a\n    type: python\n    config: {callable: os.getcwd}\n"


def errors_of(tmp_path: Path, text: str, name: str = "s.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    return [str(e).removeprefix(f"{path}:") for e in load_spec(path).errors]


SYNTAX = {
    "unclosed_flow_sequence": ("id: x\nsteps: [a, b\nowner: me\n", 3, "did not find expected ',' or ']'"),
    "unclosed_flow_mapping": ("id: x\nparams: {a: 1\n", 2, "did not find expected ',' or '}'"),
    "unclosed_quote_at_end": ("id: x\nowner: 'me\n", 2, "found unexpected end of stream"),
    "bad_indent": ("id: x\nsteps:\n  - id: a\n   type: python\n", 4, "YAML syntax error"),
    "mapping_in_plain_value": ("id: x\nowner: a: b\n", 2, "mapping values are not allowed in this context"),
    "tab_indent": ("id: x\nparams:\n\ta: 1\n", 3, "a tab indents this line"),
    "list_then_mapping": ("- a\nid: x\n", 2, "did not find expected '-' indicator"),
    "bad_escape": ('id: x\nowner: "a\\qb"\n', 2, "found unknown escape character"),
    "crlf_lines": ("id: x\r\nowner: me\r\nsteps: [a,\r\n", 3, "YAML syntax error"),
}


@pytest.mark.parametrize("name", sorted(SYNTAX))
def test_yaml_syntax_error_names_the_right_line(name: str, tmp_path: Path) -> None:
    text, line, fragment = SYNTAX[name]
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1 and errors[0].startswith(f"{line}: "), errors
    assert fragment in errors[0], errors


def test_syntax_error_names_where_the_open_bracket_is(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, "id: x\nsteps: [a,\n  b\n\nowner: me\n")
    assert error.startswith("5: YAML syntax error: did not find expected ',' or ']'")
    assert "(while parsing a flow sequence at line 2)" in error


def test_every_error_of_a_file_is_reported(tmp_path: Path) -> None:
    text = (
        "id: many\n"  # 1
        "owner: 12\n"  # 2: not a string
        "params: {1: x}\n"  # 3: a number key
        "start_date: 2024-02-30\n"  # 4: no such day
        "steps:\n"  # 5
        "  - id: 'bad id'\n"  # 6: bad step id ...
        "    type: webResearch\n"  # 7
        "    config: {url: 5, extra: 1}\n"  # 8: ... and still its config is checked
        "    next: {step: b, conditions: {approvalRequired: true, timeout: soon}}\n"  # 9: ... and its next
        "  - id: b\n"  # 10
        "    type: python\n"  # 11
        "    config: {callable: os.getcwd}\n"  # 12
        "  - id: b\n"  # 13: duplicate id ...
        "    type: email\n"  # 14
        "    config: {}\n"  # 15: ... and its config too
        "id: many\n"  # 16: duplicate key
    )
    errors = errors_of(tmp_path, text)
    expected = [
        "2: owner: must be a string, got 12",
        "3: params: key '1' is a number, not text: put it in quotes",
        "4: start_date: must be a date",
        "6: steps[0].id: must be text matching",
        "8: steps[0].config.url: must be a string, got 5",
        "8: steps[0].config.extra: unknown key 'extra'",
        "9: steps[0].next.conditions.timeout: must be a duration like '30m', '48h' or '7d', got 'soon'",
        "13: steps[2].id: duplicate step id 'b' (first used by steps[1])",
        "15: steps[2].config.from: is required",
        "16: id: duplicate key",
    ]
    for want in expected:
        assert any(e.startswith(want) for e in errors), (want, errors)
    assert [int(e.split(":")[0]) for e in errors] == sorted(int(e.split(":")[0]) for e in errors)  # by line


def test_errors_are_capped_per_file(tmp_path: Path) -> None:
    text = "id: x\n" + "".join(f"unknown_{i}: 1\n" for i in range(300)) + f"steps:\n{STEP}"
    errors = errors_of(tmp_path, text)
    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1].endswith(f"... and {300 - MAX_ERRORS} more errors")


SUGGESTIONS = {
    # a typo is matched against the keys of the place where it stands
    "top_level_typo": (
        "id: x\nschedul: '@daily'\nsteps:\n" + STEP,
        "2: schedul: unknown key 'schedul' (did you mean 'schedule'?)",
    ),
    "case_and_separator": ("id: x\nStartDate: '2024-01-01'\nsteps:\n" + STEP, "did you mean 'start_date'?"),
    "step_typo": ("id: x\nsteps:\n" + STEP + "    nxt: a\n", "steps[0].nxt: unknown key 'nxt' (did you mean 'next'?)"),
    "config_typo_uses_the_type": (
        "id: x\nsteps:\n  - id: a\n    type: webResearch\n    config: {url: u, timeoutSecond: 3}\n",
        "steps[0].config.timeoutSecond: unknown key 'timeoutSecond' (did you mean 'timeoutSeconds'?)",
    ),
    "approver_typo": (
        "id: x\nsteps:\n" + STEP + "    next: {conditions: {approvalRequired: true, approvers: [{userid: a}]}}\n",
        "approvers[0].userid: unknown key 'userid' (did you mean 'userId'?)",
    ),
    # a right key in the wrong place says where it belongs
    "gate_key_under_next": (
        "id: x\nsteps:\n" + STEP + "    next: {approvalRequired: true}\n",
        "steps[0].next.approvalRequired: unknown key 'approvalRequired' here: it belongs under next.conditions",
    ),
    "gate_key_on_step": (
        "id: x\nsteps:\n" + STEP + "    approvers: []\n",
        "steps[0].approvers: unknown key 'approvers' here: it belongs under next.conditions",
    ),
    "config_key_on_step": (
        "id: x\nsteps:\n  - id: a\n    type: webResearch\n    url: u\n    config: {url: u}\n",
        "steps[0].url: unknown key 'url' here: it belongs under config",
    ),
    "step_key_in_config": (
        "id: x\nsteps:\n  - id: a\n    type: python\n    config: {callable: os.getcwd, retries: 2}\n",
        "steps[0].config.retries: unknown key 'retries' here: it belongs on the step itself, not in its config",
    ),
    "step_key_at_top": ("id: x\ntype: python\nsteps:\n" + STEP, "type: unknown key 'type' here: it belongs in a step"),
    "top_key_in_step": (
        "id: x\nsteps:\n" + STEP + "    schedule: '@daily'\n",
        "steps[0].schedule: unknown key 'schedule' here: it belongs at the top level of the spec",
    ),
    "next_key_in_conditions": (
        "id: x\nsteps:\n" + STEP + "    next: {conditions: {step: a}}\n",
        "conditions.step: unknown key 'step' here: it belongs under next, one level up",
    ),
    "slack_key_in_notify": (
        "id: x\nnotify: {channel: '#x'}\nsteps:\n" + STEP,
        "notify.channel: unknown key 'channel' here: it belongs under notify.slack",
    ),
    # never suggest a key the mapping already has
    "typo_of_a_key_already_given": (
        "id: x\ndescription: a\ndescripton: b\nsteps:\n" + STEP,
        "3: descripton: unknown key 'descripton' (a second 'description'? that key is already given)",
    ),
    "unknown_step_type_case": (
        "id: x\nsteps:\n  - id: a\n    type: webresearch\n",
        "steps[0].type: unknown step type 'webresearch' (did you mean 'webResearch'?)",
    ),
    "next_step_typo_suggests_step_ids": (
        "id: x\nsteps:\n"
        + STEP
        + "    next: {step: drafft}\n  - id: draft\n    type: python\n    config: {callable: x.y}\n",
        "steps[0].next.step: next step 'drafft' does not exist (did you mean 'draft'?)",
    ),
}


@pytest.mark.parametrize("name", sorted(SUGGESTIONS))
def test_suggestions_fit_where_the_key_stands(name: str, tmp_path: Path) -> None:
    text, want = SUGGESTIONS[name]
    errors = errors_of(tmp_path, text)
    assert any(want in e for e in errors), (want, errors)


def test_aliases_and_merges_load_with_lines_at_the_anchor(tmp_path: Path) -> None:
    text = (
        "id: x\n"  # 1
        "params:\n"  # 2
        "  team: &team\n"  # 3
        "    - userId: alice\n"  # 4
        "    - email: not-an-email\n"  # 5
        "steps:\n"  # 6
        "  - id: a\n"  # 7
        "    type: python\n"  # 8
        "    config: {callable: os.getcwd}\n"  # 9
        "    next:\n"  # 10
        "      conditions:\n"  # 11
        "        approvalRequired: true\n"  # 12
        "        approvers: *team\n"  # 13
    )
    errors = errors_of(tmp_path, text)
    assert errors == ["5: steps[0].next.conditions.approvers[1].email: must be an email address, got 'not-an-email'"]


def test_merge_keys_work_and_own_keys_win(tmp_path: Path) -> None:
    text = (
        "id: x\nparams:\n  defaults: &d {retries: 2, type: python}\n"
        "steps:\n  - <<: *d\n    id: a\n    retries: 3\n    config: {callable: os.getcwd}\n"
    )
    path = tmp_path / "m.yaml"
    path.write_text(text)
    loaded = load_spec(path)
    assert loaded.ok, [str(e) for e in loaded.errors]
    assert (loaded.steps[0].type, loaded.steps[0].retries) == ("python", 3)


def test_duplicate_workflow_id_points_at_the_id_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(f"id: same\nsteps:\n{STEP}")
    (tmp_path / "b.yaml").write_text(f"# second\n\nid: same\nsteps:\n{STEP}")
    first, second = load_specs([tmp_path])
    assert first.ok
    assert str(second.errors[0]) == f"{tmp_path / 'b.yaml'}:3: id: workflow id 'same' is already used by {first.path}"


def test_a_bug_in_the_checks_costs_one_spec_not_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hitl.spec import loader

    (tmp_path / "a.yaml").write_text(f"id: a\nschedule: '@daily'\nsteps:\n{STEP}")
    (tmp_path / "b.yaml").write_text(f"id: b\nsteps:\n{STEP}")

    def broken(check: object, schedule: object, start: object) -> None:
        if schedule is not None:
            raise RecursionError("boom")

    monkeypatch.setattr(loader, "_check_schedule", broken)
    a, b = load_specs([tmp_path])
    assert b.ok
    assert [str(e) for e in a.errors] == [
        f"{tmp_path / 'a.yaml'}:1: internal error while checking this spec: RecursionError: boom"
    ]


def test_limits_can_be_tightened() -> None:
    limits = safe_yaml.Limits(max_depth=2, max_nodes=5, max_number_chars=3)
    assert safe_yaml.parse("a: [[1]]\n", limits).problems[0].message == "nested deeper than 2 levels"
    assert "more than 5 values" in safe_yaml.parse("a: [1, 2, 3, 4]\n", limits).problems[0].message
    assert "number too long" in safe_yaml.parse("a: 1234\n", limits).problems[0].message


def test_dates_stay_text_and_numbers_stay_numbers() -> None:
    parsed = safe_yaml.parse("d: 2024-01-01\nt: 2024-01-01 10:00:00\ni: 0x1F\nf: 1_000.5\nb: yes\nn: ~\ns: '12'\n")
    assert parsed.data == {
        "d": "2024-01-01",
        "t": "2024-01-01 10:00:00",
        "i": 31,
        "f": 1000.5,
        "b": True,
        "n": None,
        "s": "12",
    }
    assert not parsed.problems


def test_a_step_is_never_suggested_as_its_own_next(tmp_path: Path) -> None:
    text = "id: x\nsteps:\n  - id: draft\n    type: python\n    config: {callable: os.getcwd}\n    next: drafft\n"
    assert errors_of(tmp_path, text) == ["6: steps[0].next: next step 'drafft' does not exist"]


LINE_OF_THE_MISTAKE = {
    # libyaml notices these later than where they are: the line that holds the mistake is named
    "quote_never_closed": (
        'id: x\nowner: "me\nsteps:\n  - id: a\n    type: python\n',
        "2: YAML syntax error: found unexpected end of stream (noticed at line 5); the quote opened on this line",
    ),
    "key_without_colon": (
        "id: x\nsteps:\n  - id: a\n    type python\n  - id: b\n",
        "4: YAML syntax error: could not find expected ':' (noticed at line 5); a key needs ':' and a space",
    ),
    "indented_too_far": (
        "id: x\nsteps:\n  - id: a\n    type: python\n     retries: 2\n",
        "5: YAML syntax error: mapping values are not allowed in this context; a ': ' inside a plain value",
    ),
    "indented_too_little": (
        "id: x\nsteps:\n  - id: a\n    type: python\n    config:\n      callable: os.getcwd\n     retries: 2\n",
        "7: YAML syntax error: did not find expected key (while parsing a block mapping at line 3); this line is not"
        " indented like the keys above it",
    ),
}


@pytest.mark.parametrize("name", sorted(LINE_OF_THE_MISTAKE))
def test_a_syntax_error_names_the_line_of_the_mistake_and_what_it_usually_is(name: str, tmp_path: Path) -> None:
    text, want = LINE_OF_THE_MISTAKE[name]
    (error,) = errors_of(tmp_path, text)
    assert error.startswith(want), error


def test_every_tab_indented_line_is_named_at_once(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, "id: x\nparams:\n\ta: 1\n\tb: 2\nsteps:\n\t- id: a\n")
    assert error.startswith("3: YAML syntax error: found character that cannot start any token; a tab indents")
    assert error.endswith("(tabs also indent lines 4, 6)")


def test_a_misspelt_required_key_is_one_error_not_two(tmp_path: Path) -> None:
    text = (
        "id: x\n"
        "steps:\n"
        "  - id: a\n"
        "    typ: python\n"  # 4: 'type' misspelt: not also "type: is required"
        "    config: {callable: os.getcwd}\n"
        "  - id: b\n"
        "    type: email\n"
        "    config: {from: a@b.example, too: c@d.example, subject: s, body: b}\n"  # 8: 'to' misspelt
    )
    errors = errors_of(tmp_path, text)
    assert errors == [
        "4: steps[0].typ: unknown key 'typ' (did you mean 'type'? it is required)",
        "8: steps[1].config.too: unknown key 'too' (did you mean 'to'? it is required)",
    ], errors


def test_a_misspelt_key_next_to_a_missing_one_keeps_both(tmp_path: Path) -> None:
    # 'subjct' is close to 'subject' (missing): folded; 'body' is missing and nothing resembles it: still reported
    text = "id: x\nsteps:\n  - id: b\n    type: email\n    config: {from: a@b.example, to: c@d.example, subjct: s}\n"
    errors = errors_of(tmp_path, text)
    assert "5: steps[0].config.subjct: unknown key 'subjct' (did you mean 'subject'? it is required)" in errors
    assert "5: steps[0].config.body: is required" in errors
    assert not any(e.startswith("5: steps[0].config.subject:") for e in errors)


# A quote left open: libyaml reads on to the next quote of the file, lines later, and stumbles after it (or
# reads to the end). Each case names the line where the quote opens, whatever line libyaml noticed it on.
UNCLOSED_QUOTE = {
    "closed_many_lines_later": (
        "id: x\n"
        "steps:\n"
        "  - id: a\n"
        "    type: python\n"
        '    description: "unclosed\n'  # 5: the mistake
        "    config: {callable: os.getcwd}\n"
        "  - id: b\n"
        "    type: python\n"
        '    description: "closed later"\n'  # 9: the quote closes here, then 'closed later"' fails
        "    config: {callable: os.getcwd}\n",
        5,
        "noticed at line 9); the quote opened on this line closes only at line 9, so lines 6-9 are read as its text",
    ),
    "closed_many_lines_later_single_quotes": (
        "id: x\nowner: 'me\nsteps:\n  - id: a\n    type: python\n    config: {callable: 'os.getcwd'}\n",
        2,
        "the quote opened on this line closes only at line 6",
    ),
    "closed_at_the_last_line_then_more_text": (
        'id: x\nsteps:\n  - id: a\n    description: "opened\n    type: python\n    config: "x"\n',
        4,
        "the quote opened on this line closes only at line 6",
    ),
    "never_closed": (
        'id: x\nsteps:\n  - id: a\n    description: "never\n    type: python\n    config: {callable: os.getcwd}\n',
        4,
        "the quote opened on this line is never closed",
    ),
}


@pytest.mark.parametrize("name", sorted(UNCLOSED_QUOTE))
def test_an_unclosed_quote_is_named_at_the_line_it_opens(name: str, tmp_path: Path) -> None:
    text, line, fragment = UNCLOSED_QUOTE[name]
    (error,) = errors_of(tmp_path, text)
    assert error.startswith(f"{line}: YAML syntax error: "), error
    assert fragment in error, error
    assert "not indented" not in error, error  # the old wrong hint


def test_a_quote_closed_at_the_very_end_of_the_file_is_named_with_the_keys_it_swallowed(tmp_path: Path) -> None:
    # Valid YAML: the quote opened on line 7 closes at the file's last character, so the step's type and config
    # are its text. The schema misses them, and the line where the quote opens is named too.
    text = (
        "id: x\nsteps:\n  - id: a\n    type: python\n    config: {callable: os.getcwd}\n"
        '  - id: b\n    description: "opened\n    type: python\n    config: {callable: os.getcwd}"\n'
    )
    errors = errors_of(tmp_path, text)
    assert "6: steps[1].type: is required" in errors, errors
    assert (
        "7: steps[1].description: the quote opened on this line closes only at line 9, so lines 8-9 are read as"
        " its text (close the quote on this line)"
    ) in errors, errors


def test_quoted_text_over_several_lines_is_fine_in_a_valid_spec(tmp_path: Path) -> None:
    # Multi-line quoted text is legal YAML: with nothing else wrong it is not reported, keys-like lines or not.
    text = 'id: x\ndescription: "first line\n  Note: second line"\nsteps:\n' + STEP
    assert errors_of(tmp_path, text) == []
