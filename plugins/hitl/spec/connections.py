"""What ``hitl validate`` checks of an ``aiAction`` step with ``backend: llm`` before a run.

At task start ``hitl.steps.llm.connect`` refuses a connection that cannot reach a model (wrong type, no key,
unknown model prefix, no model) with one line naming the connection. Much of that can be seen earlier:

- the step's ``model``: its prefix must be a provider pydantic-ai knows (``openai``, ``anthropic``, ...), checked
  with pydantic-ai's own ``infer_provider_class``, as common.ai's ``PydanticAIHook`` checks it;
- the connection, when it is resolvable without Airflow's database: an ``AIRFLOW_CONN_<ID>`` environment
  variable, JSON or URI form, read as Airflow's environment secrets backend reads it. Its type must be a
  pydantic-ai one, the generic ``pydanticai`` type needs an API key (the password) and a model (the step's or
  the connection's extra ``model``) with a known prefix.

A connection that is not in the environment may live in the metastore or a secrets backend: that is a warning,
never an error. Values are never printed (a connection holds its key); messages name the variable.

Only ``validate`` runs these, never the DAG factory: pydantic-ai's provider lookup imports the vendor's SDK
(about a second), which DAG parsing must not pay, and a spec must build the same DAG wherever it is parsed,
whatever the environment of that process holds. Nothing here imports Airflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from hitl.spec.loader import KeyPath, LoadedSpec, SpecError, format_path

DEFAULT_CONN_ID = "pydanticai_default"  # = hitl.steps.llm.DEFAULT_CONN_ID (not imported: it is the step's module)
CONN_ENV_PREFIX = "AIRFLOW_CONN_"  # = airflow.secrets.environment_variables.CONN_ENV_PREFIX
GENERIC_TYPE = "pydanticai"
VENDOR_TYPES = ("pydanticai_azure", "pydanticai_bedrock", "pydanticai_vertex")  # bare model ids are theirs to read
SOME_PROVIDERS = "openai, anthropic, google, groq, mistral, bedrock, ollama"


@dataclass(frozen=True)
class EnvConnection:
    """The parts of an ``AIRFLOW_CONN_<ID>`` connection these checks read."""

    conn_type: str
    password: str | None
    extra: dict[str, Any]


class BadConnection(ValueError):
    """The variable holds no connection Airflow could read; the message never quotes its value."""


def _normalize_conn_type(conn_type: str) -> str:
    """As Airflow's ``Connection._normalize_conn_type``: ``postgresql`` -> ``postgres``, ``-`` -> ``_``."""
    return "postgres" if conn_type == "postgresql" else conn_type.replace("-", "_")


def parse_connection(value: str) -> EnvConnection:
    """A connection from its environment form, read as Airflow reads it: JSON when it starts with ``{``, else a URI."""
    value = value.strip()
    if not value:
        raise BadConnection("is empty")
    if value[0] == "{":
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadConnection(f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        if not isinstance(data, dict):
            raise BadConnection("is JSON but not an object")
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except json.JSONDecodeError:
                raise BadConnection("has an extra that is not JSON") from None
        password = data.get("password")
        return EnvConnection(
            conn_type=_normalize_conn_type(str(data.get("conn_type") or "")),
            password=str(password) if password else None,
            extra=extra if isinstance(extra, dict) else {},
        )
    if "://" not in value:
        raise BadConnection("is neither JSON nor a connection URI (type://...)")
    try:
        parts = urlsplit(value)
        password = unquote(parts.password) if parts.password else None
        query = dict(parse_qsl(parts.query, keep_blank_values=True)) if parts.query else {}
    except ValueError as exc:
        raise BadConnection(f"is not a valid connection URI ({exc})") from None
    from_query: Any = query
    if "__extra__" in query:
        try:
            from_query = json.loads(query["__extra__"])
        except json.JSONDecodeError:
            raise BadConnection("has an __extra__ that is not JSON") from None
    return EnvConnection(
        conn_type=_normalize_conn_type(parts.scheme),
        password=password,
        extra=from_query if isinstance(from_query, dict) else {},
    )


def provider_known(prefix: str) -> bool | None:
    """Whether pydantic-ai knows the provider ``prefix`` (as common.ai's hook asks it); None: no pydantic-ai here."""
    try:
        from pydantic_ai.providers import infer_provider_class
    except ImportError:
        return None
    try:
        infer_provider_class(prefix)
    except ValueError:
        return False
    except ImportError:  # a provider it knows whose SDK is not installed here (the worker may have it)
        return True
    return True


def _templated(value: str) -> bool:
    return "{{" in value or "{%" in value


class _Report:
    def __init__(self, item: LoadedSpec) -> None:
        self.item = item
        self.errors: list[SpecError] = []
        self.warnings: list[SpecError] = []

    def add(self, path: KeyPath, message: str, *, warning: bool = False) -> None:
        text = f"warning: {message}" if warning else message
        found = SpecError(str(self.item.path), self.item.line(path), format_path(path), text)
        (self.warnings if warning else self.errors).append(found)


def _check_model(report: _Report, path: KeyPath, model: str, where: str) -> None:
    if model == "test":  # pydantic-ai's TestModel
        return
    prefix, sep, _ = model.partition(":")
    if not sep:
        report.add(path, f"model {model!r} {where} must be 'provider:model' (e.g. openai:gpt-4o)")
        return
    known = provider_known(prefix)
    if known is None:
        report.add(
            path, f"pydantic-ai is not installed here: the provider of model {model!r} is not checked", warning=True
        )
    elif not known:
        report.add(
            path,
            f"unknown model provider {prefix!r} in {model!r} {where}: not a provider pydantic-ai knows "
            f"(such as {SOME_PROVIDERS})",
        )


def _check_step(report: _Report, i: int, config: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    base: KeyPath = ("steps", i, "config")
    model = config.get("model")
    model = model if isinstance(model, str) and model and not _templated(model) else None
    conn_id = config.get("connId") or DEFAULT_CONN_ID
    conn_path: KeyPath = (*base, "connId") if config.get("connId") else (*base, "backend")
    if not isinstance(conn_id, str) or _templated(conn_id):
        if model:
            _check_model(report, (*base, "model"), model, "(the step's model)")
        return
    variable = CONN_ENV_PREFIX + conn_id.upper()
    raw = environ.get(variable)
    if raw is None:
        if model:
            _check_model(report, (*base, "model"), model, "(the step's model)")
        report.add(
            conn_path,
            f"connection {conn_id!r} is not set in the environment ({variable}): not checked here; "
            "it may be in Airflow's metastore or a secrets backend",
            warning=True,
        )
        return
    try:
        conn = parse_connection(raw)
    except BadConnection as exc:
        report.add(conn_path, f"connection {conn_id!r}: {variable} {exc}")
        return
    if not conn.conn_type.startswith(GENERIC_TYPE):
        shown = repr(conn.conn_type) if conn.conn_type else "no type"
        report.add(
            conn_path,
            f"connection {conn_id!r} ({variable}) has {'type ' if conn.conn_type else ''}{shown}, but the llm "
            f"backend needs a pydantic-ai one ({', '.join((GENERIC_TYPE, *VENDOR_TYPES))})",
        )
        return
    if conn.conn_type in VENDOR_TYPES:
        return  # a vendor type reads bare model ids and its own credentials; the hook checks them at run time
    if not conn.password:
        report.add(
            conn_path,
            f"connection {conn_id!r} ({variable}) has no API key (the connection's password / API Key field); "
            "a local server that needs none (Ollama, vLLM) still takes any non-empty value",
        )
    if model:
        _check_model(report, (*base, "model"), model, "(the step's model)")
        return
    extra_model = conn.extra.get("model")
    if not isinstance(extra_model, str) or not extra_model:
        report.add(
            (*base, "model"),
            f"no model: connection {conn_id!r} ({variable}) has no extra 'model' and the step sets none; "
            "set one of them to 'provider:model' (e.g. openai:gpt-4o)",
        )
        return
    _check_model(report, conn_path, extra_model, f"(connection {conn_id!r}'s extra model)")


def check_llm_steps(
    item: LoadedSpec, environ: Mapping[str, str] | None = None
) -> tuple[list[SpecError], list[SpecError]]:
    """(errors, warnings) for the ``backend: llm`` steps of a spec that loaded without errors."""
    report = _Report(item)
    if not item.ok:
        return [], []
    env = os.environ if environ is None else environ
    for i, step in enumerate(item.steps):
        if step.type == "aiAction" and step.config.get("backend") == "llm":
            _check_step(report, i, step.config, env)
    by_line = sorted(report.errors, key=lambda e: e.line), sorted(report.warnings, key=lambda e: e.line)
    return by_line
