"""``hitl validate`` checks an llm step's model and its connection before a run (``hitl.spec.connections``).

The connection is read from a real ``AIRFLOW_CONN_<ID>`` variable in JSON and URI form; the provider check is
pydantic-ai's own. The CLI runs in a subprocess, as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hitl.spec.connections import BadConnection, check_llm_steps, parse_connection
from hitl.spec.loader import load_spec

pytest.importorskip("pydantic_ai")

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-validate-secret-0123"
SPEC = """\
id: llm_check
steps:
  - id: research
    type: python
    config: {{callable: 'os.getcwd'}}
    next: draft
  - id: draft
    type: aiAction
    config:
      backend: llm
      output: text
      prompt: Write a note.
{extra}"""


def spec(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "llm_check.yaml"
    path.write_text(SPEC.format(extra=extra))
    return path


def check(path: Path, **env: str) -> tuple[list[str], list[str]]:
    loaded = load_spec(path)
    assert loaded.ok, [str(e) for e in loaded.errors]  # the loader (and so the factory) accepts it as it is
    errors, warnings = check_llm_steps(loaded, env)
    return [str(e) for e in errors], [str(w) for w in warnings]


def good(**extra: object) -> str:
    return json.dumps({"conn_type": "pydanticai", "password": KEY, "extra": {"model": "openai:gpt-4o", **extra}})


def test_an_unknown_model_prefix_in_the_step_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = spec(tmp_path, "      model: opneai:gpt-4o\n")
    errors, warnings = check(path)
    assert errors == [
        f"{path}:13: steps[1].config.model: unknown model provider 'opneai' in 'opneai:gpt-4o' (the step's model): "
        "not a provider pydantic-ai knows (such as openai, anthropic, google, groq, mistral, bedrock, ollama)"
    ]
    # the connection is not in the environment: it may be in the metastore, so a warning, never an error
    assert warnings == [
        f"{path}:10: steps[1].config.backend: warning: connection 'pydanticai_default' is not set in the "
        "environment (AIRFLOW_CONN_PYDANTICAI_DEFAULT): not checked here; it may be in Airflow's metastore "
        "or a secrets backend"
    ]
    # a provider pydantic-ai knows, whose SDK this machine lacks, is known all the same
    assert check(spec(tmp_path, "      model: anthropic:claude-sonnet-4-5\n"))[0] == []


def test_a_good_connection_in_json_and_uri_form_passes(tmp_path: Path) -> None:
    path = spec(tmp_path, "      connId: llm_main\n")
    assert check(path, AIRFLOW_CONN_LLM_MAIN=good()) == ([], [])
    uri = f"pydanticai://:{KEY}@api.example.com/?model=openai-chat%3Agpt-4o"
    assert check(path, AIRFLOW_CONN_LLM_MAIN=uri) == ([], [])
    extra_uri = "pydanticai://:k@/?__extra__=" + json.dumps({"model": "ollama:llama3"}).replace(" ", "")
    assert check(path, AIRFLOW_CONN_LLM_MAIN=extra_uri) == ([], [])
    # a vendor type reads bare ids and its own credentials: left to the hook at run time
    bedrock = json.dumps({"conn_type": "pydanticai-bedrock", "extra": {"model": "us.anthropic.claude-v1:0"}})
    assert check(path, AIRFLOW_CONN_LLM_MAIN=bedrock) == ([], [])


@pytest.mark.parametrize(
    ("value", "path_and_message"),
    [
        (
            json.dumps({"conn_type": "google_cloud_platform", "password": KEY}),
            "steps[1].config.connId: connection 'llm_main' (AIRFLOW_CONN_LLM_MAIN) has type 'google_cloud_platform', "
            "but the llm backend needs a pydantic-ai one (pydanticai, pydanticai_azure, pydanticai_bedrock, "
            "pydanticai_vertex)",
        ),
        (
            f"http://:{KEY}@api.example.com",
            "steps[1].config.connId: connection 'llm_main' (AIRFLOW_CONN_LLM_MAIN) has type 'http', but the llm",
        ),
        (
            json.dumps({"conn_type": "pydanticai", "extra": {"model": "openai:gpt-4o"}}),
            "steps[1].config.connId: connection 'llm_main' (AIRFLOW_CONN_LLM_MAIN) has no API key",
        ),
        (
            good(model="nosuch:gpt"),
            "steps[1].config.connId: unknown model provider 'nosuch' in 'nosuch:gpt' (connection 'llm_main''s "
            "extra model)",
        ),
        (
            json.dumps({"conn_type": "pydanticai", "password": KEY}),
            "steps[1].config.model: no model: connection 'llm_main' (AIRFLOW_CONN_LLM_MAIN) has no extra 'model'",
        ),
        ('{"conn_type": "pydanticai", ', "steps[1].config.connId: connection 'llm_main': AIRFLOW_CONN_LLM_MAIN is "),
        ("just-a-word", "AIRFLOW_CONN_LLM_MAIN is neither JSON nor a connection URI"),
    ],
    ids=["not-pydanticai", "uri-not-pydanticai", "no-key", "unknown-extra-prefix", "no-model", "bad-json", "no-uri"],
)
def test_a_connection_in_the_environment_that_cannot_reach_a_model(
    tmp_path: Path, value: str, path_and_message: str
) -> None:
    path = spec(tmp_path, "      connId: llm_main\n")
    errors, warnings = check(path, AIRFLOW_CONN_LLM_MAIN=value)
    assert warnings == []
    assert len(errors) == 1 and path_and_message in errors[0], errors
    line = 9 if ".model:" in path_and_message else 13  # a missing model: the line of its config
    assert errors[0].startswith(f"{path}:{line}: steps[1].config.")
    assert KEY not in errors[0]  # a connection holds its key: never echoed


def test_the_steps_model_is_checked_with_a_good_or_a_templated_connection(tmp_path: Path) -> None:
    path = spec(tmp_path, "      connId: llm_main\n      model: nosuch:gpt\n")
    (error,), _ = check(path, AIRFLOW_CONN_LLM_MAIN=good())
    assert error.startswith(f"{path}:14: steps[1].config.model: unknown model provider 'nosuch'")
    templated = spec(tmp_path, '      connId: "{{ params.conn }}"\n      model: openai:gpt-4o\n')
    assert check(templated) == ([], [])  # the connection is known only at run time
    (error,), _ = check(spec(tmp_path, '      connId: "{{ params.conn }}"\n      model: nosuch:gpt\n'))
    assert "unknown model provider 'nosuch'" in error  # the model is checked all the same


def test_parse_connection_reads_as_airflow_reads() -> None:
    uri = parse_connection(f"pydanticai://:{KEY.replace('-', '%2D')}@host/?model=openai%3Agpt-4o")
    assert (uri.conn_type, uri.password, uri.extra) == ("pydanticai", KEY, {"model": "openai:gpt-4o"})
    js = parse_connection(' {"conn_type": "pydanticai-azure", "extra": "{\\"model\\": \\"gpt-4o\\"}"}')
    assert (js.conn_type, js.password, js.extra) == ("pydanticai_azure", None, {"model": "gpt-4o"})
    with pytest.raises(BadConnection, match="is empty"):
        parse_connection("  ")


def test_cli_validate_reports_errors_and_warnings_without_airflow_or_the_key(tmp_path: Path) -> None:
    path = spec(tmp_path, "      connId: llm_main\n")
    probe = (
        "import sys\nfrom hitl.cli import main\ncode = main(sys.argv[1:])\n"
        "print('AIRFLOW_LOADED' if 'airflow' in sys.modules else 'AIRFLOW_NOT_LOADED', code)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["PYTHONPATH"] = str(REPO / "plugins")

    def run(**conns: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", probe, "validate", str(path)],
            capture_output=True,
            text=True,
            env={**env, **conns},
            cwd=REPO,
        )

    bad = run(AIRFLOW_CONN_LLM_MAIN=json.dumps({"conn_type": "pydanticai", "password": KEY, "extra": {}}))
    lines = bad.stdout.splitlines()
    assert lines[-1] == "AIRFLOW_NOT_LOADED 1", bad.stdout + bad.stderr
    assert lines[0].startswith(f"{path}:9: steps[1].config.model: no model: connection 'llm_main'")
    assert KEY not in bad.stdout + bad.stderr and "1 spec(s) checked, 1 invalid" in bad.stderr

    unresolved = run()
    lines = unresolved.stdout.splitlines()
    assert lines[-1] == "AIRFLOW_NOT_LOADED 0", unresolved.stdout + unresolved.stderr
    assert lines[0].startswith(f"{path}:13: steps[1].config.connId: warning: connection 'llm_main' is not set")
    assert lines[1] == f"{path}: ok (llm_check, 2 steps)"

    fine = run(AIRFLOW_CONN_LLM_MAIN=good())
    assert fine.stdout.splitlines() == [f"{path}: ok (llm_check, 2 steps)", "AIRFLOW_NOT_LOADED 0"], fine.stderr
