"""The workflow spec's shape. Strict: "yes please" is not a boolean, unknown keys are errors.

Nested parts whose shape depends on a sibling (``next``, a step's ``config``) are kept raw
here and validated by ``hitl.spec.loader`` against the right model, so every error keeps a
clean key path.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$"


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
    owner: str = "hitl"
    schedule: str | None = None
    start_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}")
    tags: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    notify: Notify = Field(default_factory=Notify)
    steps: list[dict[str, Any]] = Field(min_length=1)


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


class AiActionConfig(Strict):
    backend: Literal["template", "gemini"] = "template"
    output: Literal["email", "text"] = "text"
    prompt: str | None = None
    email: EmailTemplate | None = None
    text: str | None = None
    model: str = "gemini-2.5-flash"
    connId: str = "google_cloud_default"
    project: str | None = None
    location: str = "us-central1"

    @model_validator(mode="after")
    def _backend_needs(self) -> AiActionConfig:
        if self.backend == "gemini" and not self.prompt:
            raise ValueError("the gemini backend needs a prompt")
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


STEP_CONFIGS: dict[str, type[Strict]] = {
    "webResearch": WebResearchConfig,
    "aiAction": AiActionConfig,
    "email": EmailConfig,
    "python": PythonConfig,
}
