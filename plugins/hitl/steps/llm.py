"""aiAction's ``llm`` backend: any model a common.ai (pydantic-ai) connection reaches.

The connection (type ``pydanticai``, or its Azure / Bedrock / Vertex variants) holds the base URL
(host), the API key (password) and the model (extra ``model``, e.g. ``openai:gpt-4o``); the step's
``model`` overrides it. The provider's ``PydanticAIHook`` turns it into a pydantic-ai model, so any
vendor pydantic-ai speaks works, and the key never passes through this code's logs or outputs.

``output: email`` asks for a structured answer (a tool call the model must fill) and checks it as the
gate checks an email (``hitl.outputs.sendable_errors``); an answer that does not fit goes back to the
model with the reason, at most ``answerRetries`` times, then the task fails with one line naming the field.

After "request changes" the earlier rounds are turns of the conversation, oldest first: the prompt,
the model's draft, the reviewer's feedback, the next draft, ... and the latest feedback is the new turn.
Nothing of the feedback is pasted into the draft itself.

What fed the draft (connection, model, rendered prompt, tokens, time) is pushed as the XCom
``PROVENANCE_KEY`` of the task; the review page shows it under "What fed this step".
"""

from __future__ import annotations

import json
import time
from typing import Any

DEFAULT_CONN_ID = "pydanticai_default"
PROVENANCE_KEY = "hitl_llm"
EMAIL_SYSTEM = (
    "You draft one email. Answer through the output tool with the fields from, to, subject and body: "
    "from and to are email addresses, subject is one line, body is plain text."
)


class LlmSetupError(ValueError):
    """The connection cannot reach a model: wrong type, no key, unknown model. Raised before any call."""


def _email_type() -> Any:
    from pydantic import BaseModel, ConfigDict, Field

    class EmailDraft(BaseModel):
        """The email a model drafts. Every field may be missing here so that what is wrong is said by the same
        check the gate makes (``sendable_errors``), once, in its words; the schema still asks for all four."""

        model_config = ConfigDict(
            populate_by_name=True, json_schema_extra={"required": ["from", "to", "subject", "body"]}
        )
        from_: str | None = Field(None, alias="from", description="the sender's email address")
        to: str | None = Field(None, description="the recipient's email address (or a comma-separated list)")
        subject: str | None = Field(None, description="the subject line, one line")
        body: str | None = Field(None, description="the email's plain-text body")

    return EmailDraft


def connect(config: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(pydantic-ai model, facts about it) for the step's connection; one clear error naming the connection."""
    from airflow.providers.common.ai.hooks.pydantic_ai import PydanticAIHook

    conn_id = config.get("connId") or DEFAULT_CONN_ID
    try:
        hook = PydanticAIHook.get_hook(conn_id, hook_params={"model_id": config.get("model") or None})
    except ValueError as exc:  # the provider's own words: the type is not a pydantic-ai one
        raise LlmSetupError(f"aiAction: {exc}") from None
    except Exception as exc:  # not defined at all
        raise LlmSetupError(f"aiAction: connection {conn_id!r} cannot be read: {exc}") from None
    conn = hook.get_connection(conn_id)
    if conn.conn_type == "pydanticai" and not conn.password:
        raise LlmSetupError(
            f"aiAction: connection {conn_id!r} has no API key (the connection's password / API Key field); "
            "a local server that needs none (Ollama, vLLM) still takes any non-empty value"
        )
    try:
        model = hook.get_conn()
    except (ValueError, ImportError) as exc:  # no model, unknown prefix, the SDK for it not installed
        text = str(exc)
        raise LlmSetupError(text if conn_id in text else f"aiAction: connection {conn_id!r}: {text}") from None
    name = config.get("model") or conn.extra_dejson.get("model")
    return model, {"connection": conn_id, "conn_type": conn.conn_type, "model": name, "host": conn.host or ""}


def _answer(output: Any, email: bool) -> dict[str, Any]:
    if not email:
        return {"text": output}
    return {k: v for k, v in output.model_dump(by_alias=True).items() if v is not None}


def _draft_text(draft: Any) -> str:
    return draft if isinstance(draft, str) else json.dumps(draft, ensure_ascii=False)


def history(prompt: str, review: dict[str, Any] | None) -> tuple[list[Any], str]:
    """(earlier turns, this turn's user message): every earlier round as prompt/draft/feedback turns, in order."""
    from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart

    rounds = [r for r in (review or {}).get("rounds") or [] if r.get("draft") is not None]
    if not rounds:
        return [], prompt
    messages: list[Any] = []
    ask = prompt
    for earlier in rounds:
        messages.append(ModelRequest(parts=[UserPromptPart(content=ask)]))
        messages.append(ModelResponse(parts=[TextPart(content=_draft_text(earlier["draft"]))]))
        ask = earlier.get("feedback") or "Write another draft."
    return messages, ask


def _last_retry_reason(messages: list[Any]) -> str:
    """The reason the model's last answer was sent back (validation errors, one line)."""
    from pydantic_ai.messages import ModelRequest, RetryPromptPart

    for message in reversed(messages):
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            if isinstance(part, RetryPromptPart):
                content = part.content
                if isinstance(content, str):
                    return content.splitlines()[0] if content else "no reason given"
                shown = []
                for err in content:
                    loc = ".".join(str(x) for x in err.get("loc", ()) if x != "from_") or "answer"
                    loc = "from" if loc == "from_" else loc
                    shown.append(f"{loc}: {err.get('msg', 'invalid')}")
                return "; ".join(shown)
    return "no usable answer"


def run(config: dict[str, Any], context: Any = None) -> dict[str, Any]:
    from pydantic_ai import Agent, ModelRetry, capture_run_messages
    from pydantic_ai.exceptions import UnexpectedModelBehavior

    from hitl.outputs import sendable_errors

    model, facts = connect(config)
    review = context.get("review") if isinstance(context, dict) else None
    email = config.get("output") == "email"
    retries = int(config.get("answerRetries", 2))
    system = "\n\n".join(s for s in (config.get("system") or "", EMAIL_SYSTEM if email else "") if s)
    agent: Any = Agent(
        model,
        output_type=_email_type() if email else str,
        instructions=system or None,
        retries=retries,
    )

    reasons: list[str] = []

    @agent.output_validator
    def _fits(output: Any) -> Any:
        errors = sendable_errors("email" if email else "text", _answer(output, email))
        if errors:
            reasons.append("; ".join(f"{k}: {v}" for k, v in errors.items()))
            raise ModelRetry(reasons[-1])
        return output

    earlier, ask = history(config["prompt"], review)
    started = time.monotonic()
    with capture_run_messages() as messages:
        try:
            result = agent.run_sync(ask, message_history=earlier or None)
        except UnexpectedModelBehavior:
            reason = reasons[-1] if reasons else _last_retry_reason(messages)
            raise ValueError(
                f"aiAction: the model's answer did not fit the {'email' if email else 'text'} output "
                f"after {retries + 1} tries: {reason}"
            ) from None
    seconds = round(time.monotonic() - started, 3)
    usage = result.usage()
    answer = _answer(result.output, email)
    provenance = {
        **facts,
        "prompt": config["prompt"],
        "system": config.get("system") or "",
        "round": (review or {}).get("round", 1),
        "turns": len(earlier) + 1,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "requests": usage.requests,
        "seconds": seconds,
    }
    ti = context.get("ti") if isinstance(context, dict) else None
    if ti is not None:
        ti.xcom_push(key=PROVENANCE_KEY, value=provenance)
    return answer
