"""The workflow spec's shape. Strict: "yes please" is not a boolean, unknown keys are errors.

Nested parts whose shape depends on a sibling (``next``, a step's ``config``) are kept raw
here and validated by ``hitl.spec.loader`` against the right model, so every error keeps a
clean key path.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hitl.steps import STEP_TYPES

# Workflow and step ids: Airflow's DAG/task id alphabet (ASCII only), at most 200 characters so
# that a step's gate task id (``<id>__approval``) stays under Airflow's 250.
ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$"
TAG_MAX_LEN = 100  # Airflow's (airflow.sdk.definitions.dag.TAG_MAX_LEN): a longer tag fails the DAG
OWNER_MAX_LEN = 500  # Airflow stores a DAG's owners in a 2000-character column
START_YEARS = (1900, 2999)  # a start_date outside these breaks Airflow's UTC conversion or scheduling
# Size bounds on what one spec makes the DAG file build. Airflow re-validates every DAG param for
# every task when it serializes the DAG (~1-2 ms each, jsonschema), so params x steps is bounded
# too (in the loader, MAX_PARAM_CHECKS): one large spec must not push the whole DAG file past
# Airflow's parse timeouts (dagbag_import_timeout 30 s, dag_file_processor_timeout 50 s).
MAX_STEPS = 100
MAX_PARAMS = 50

DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.ASCII)
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION_SECONDS = 3650 * 86400  # ten years: fits the store's integer columns and timedelta


def duration_seconds(text: str) -> int | None:
    """``'30m'`` -> 1800; None when ``text`` is not a duration."""
    match = DURATION.match(text)
    if not match or len(match.group(1)) > 12:
        return None
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def check_duration(text: str) -> str:
    """``text`` when it is a duration between 1s and ten years, else a ValueError saying why."""
    if not DURATION.match(text):
        raise ValueError(f"must be a duration like '30m', '48h' or '7d', got {_clip(text)!r}")
    seconds = duration_seconds(text)
    if seconds is None or not 1 <= seconds <= MAX_DURATION_SECONDS:
        raise ValueError(f"must be between 1s and 3650d, got {_clip(text)!r}")
    return text


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def parse_start_date(text: str) -> datetime:
    """A spec's ``start_date`` as the DAG factory reads it (``datetime.fromisoformat``), within START_YEARS."""
    example = "like '2024-01-01' or '2024-01-01T09:00:00+00:00'"
    if not re.match(r"^\d{4}-\d{2}-\d{2}", text, re.ASCII):
        raise ValueError(f"must be a date {example}, got {_clip(text)!r}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"must be a date {example}, got {_clip(text)!r} ({exc})") from None
    if not START_YEARS[0] <= parsed.year <= START_YEARS[1]:
        raise ValueError(f"must be a date between the years {START_YEARS[0]} and {START_YEARS[1]}, got {_clip(text)!r}")
    return parsed


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class Approver(Strict):
    userId: str | None = Field(default=None, min_length=1)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    role: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Approver:
        given = [k for k in ("userId", "email", "role") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an approver needs exactly one of userId, email or role")
        return self

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Conditions(Strict):
    approvalRequired: bool = False
    approveLabel: str = Field(default="Approve", min_length=1, max_length=200)
    approvers: list[Approver] = Field(default_factory=list)
    minApprovals: int = Field(default=1, ge=1, le=20)
    allowSelfApproval: bool = True
    timeout: str | None = Field(default=None, description="e.g. '48h'; the gate task fails after it")
    remindAfter: str | None = None
    escalateAfter: str | None = None
    escalateTo: list[Approver] = Field(default_factory=list)
    expireAfter: str | None = None
    onExpire: Literal["reject"] = "reject"
    maxRevisions: int = Field(
        default=3, ge=0, le=20, description="how many times a reviewer may request changes (0: never)"
    )
    # Kept raw: checked by hitl.policy against the steps before the gate (in the loader), with key paths below it.
    policy: Any = Field(default=None, description="rules that decide (enforce) or shadow the review: hitl.policy")

    @field_validator("timeout", "remindAfter", "escalateAfter", "expireAfter")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return None if value is None else check_duration(value)


class SlackNotify(Strict):
    connId: str = Field(min_length=1)
    channel: str | None = None


class Notify(Strict):
    email: bool = True
    slack: SlackNotify | None = None


class Next(Strict):
    step: str | None = None
    conditions: Conditions = Field(default_factory=Conditions)


class Step(Strict):
    id: str = Field(pattern=ID_PATTERN)
    type: str
    description: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    next: Any = None
    retries: int = Field(default=0, ge=0, le=20)


class WorkflowSpec(Strict):
    id: str = Field(pattern=ID_PATTERN)
    description: str | None = None
    owner: str = Field(default="hitl", min_length=1, max_length=OWNER_MAX_LEN)
    schedule: str | None = None
    start_date: str | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=TAG_MAX_LEN)]] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict, max_length=MAX_PARAMS)
    notify: Notify = Field(default_factory=Notify)
    steps: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_STEPS)

    @field_validator("start_date")
    @classmethod
    def _start_date(cls, value: str | None) -> str | None:
        if value is not None:
            parse_start_date(value)
        return value


# -- per step type configs -------------------------------------------------------------


class WebResearchConfig(Strict):
    url: str = Field(min_length=1)
    extraUrls: list[str] = Field(default_factory=list)
    timeoutSeconds: float = Field(default=10.0, gt=0, le=120)
    maxChars: int = Field(default=5000, ge=100, le=200_000)


class EmailTemplate(Strict):
    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)


# "provider:model"; the provider part is checked against pydantic-ai when the task starts (hitl.steps.llm).
_MODEL_NAME = re.compile(r"^[a-z][a-z0-9-]*:\S+$")


class AiActionConfig(Strict):
    backend: Literal["template", "llm", "gemini"] = "template"
    output: Literal["email", "text"] = "text"
    prompt: str | None = None
    system: str | None = None
    email: EmailTemplate | None = None
    text: str | None = None
    # llm: "provider:model" overriding the connection's extra model; gemini: the Gemini model (gemini-2.5-flash)
    model: str | None = None
    # llm: a common.ai connection (pydanticai_default); gemini: a Google Cloud one (google_cloud_default)
    connId: str | None = None
    # llm: how many times an answer that does not fit goes back to the model before the task fails
    answerRetries: int = Field(default=2, ge=0, le=5)
    project: str | None = None
    location: str = "us-central1"

    @model_validator(mode="after")
    def _backend_needs(self) -> AiActionConfig:
        if self.backend in ("gemini", "llm") and not self.prompt:
            raise ValueError(f"the {self.backend} backend needs a prompt")
        if self.backend == "llm" and self.model is not None and not _MODEL_NAME.match(self.model):
            raise ValueError(
                f"model {self.model!r} must be 'provider:model' (e.g. openai:gpt-4o, anthropic:claude-sonnet-4-5), "
                "or left out to use the connection's model"
            )
        if self.backend == "template" and self.output == "email" and self.email is None:
            raise ValueError(
                "the template backend with output: email needs an email: {from, to, subject, body} template"
            )
        if self.backend == "template" and self.output == "text" and self.text is None:
            raise ValueError("the template backend with output: text needs a text: template")
        return self


class EmailConfig(Strict):
    transport: Literal["outbox", "smtp", "gmail"] = "outbox"
    connId: str | None = None
    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    cc: str | None = None
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)


class PythonConfig(Strict):
    callable: str = Field(pattern=r"^[A-Za-z_][\w.]*[.:][A-Za-z_]\w*$")
    kwargs: dict[str, Any] = Field(default_factory=dict)


# Config models by step type, from the one registry of step types (hitl.steps.STEP_TYPES).
STEP_CONFIGS: dict[str, type[Strict]] = {name: globals()[t.config_model] for name, t in STEP_TYPES.items()}
