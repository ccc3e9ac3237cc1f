"""aiAction: draft text or an email from a prompt and earlier outputs.

Backends: ``template`` (offline: the config's Jinja templates, already rendered with the
earlier steps' outputs; no model, no network), ``llm`` (any model of a common.ai / pydantic-ai
connection: OpenAI, Azure OpenAI, Anthropic, Bedrock, Gemini, Ollama, vLLM; ``hitl.steps.llm``)
and ``gemini`` (Google Gemini through the google provider's GenAI hook and a Google Cloud connection).
Output: {from, to, subject, body} for ``output: email``; {text} for ``output: text``.

After a reviewer requests changes the step runs again with their feedback: the ``template``
backend's templates may use ``{{ review.feedback }}`` (and ``review.round``, ``review.rounds``) like any
other variable (the example does not: feedback is for the writer, not the customer, and the review page
shows it beside the draft); ``llm`` sends the earlier drafts and the feedback as turns of the conversation;
``gemini`` adds the feedback and the draft it answers to the prompt by itself.
"""

from __future__ import annotations

import json
from typing import Any

EMAIL_INSTRUCTIONS = (
    "Answer with a JSON object with exactly the keys from, to, subject, body (strings). No markdown, no commentary."
)


def _template(config: dict[str, Any]) -> dict[str, Any]:
    if config.get("output") == "email":
        email = config["email"]
        return {"from": email["from"], "to": email["to"], "subject": email["subject"].strip(), "body": email["body"]}
    return {"text": config["text"]}


def _gemini(config: dict[str, Any], review: dict[str, Any] | None = None) -> dict[str, Any]:
    from airflow.providers.google.cloud.hooks.gen_ai import GenAIGenerativeModelHook

    from hitl.rounds import feedback_prompt

    hook = GenAIGenerativeModelHook(gcp_conn_id=config.get("connId") or "google_cloud_default")
    prompt = config["prompt"] + feedback_prompt(review or {})
    if config.get("output") == "email":
        prompt = f"{prompt}\n\n{EMAIL_INSTRUCTIONS}"
    kwargs: dict[str, Any] = {
        "location": config.get("location", "us-central1"),
        "model": config.get("model") or "gemini-2.5-flash",
        "contents": [prompt],
    }
    if config.get("project"):
        kwargs["project_id"] = config["project"]
    text = hook.generate_content(**kwargs)
    if config.get("output") != "email":
        return {"text": text}
    cleaned = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        draft = json.loads(cleaned)
    except json.JSONDecodeError as exc:
        raise ValueError(f"aiAction: the model did not answer with JSON: {text[:200]!r}") from exc
    missing = [k for k in ("from", "to", "subject", "body") if not isinstance(draft.get(k), str)]
    if missing:
        raise ValueError(f"aiAction: the model's email lacks {', '.join(missing)}")
    return {k: draft[k] for k in ("from", "to", "subject", "body")}


def run(config: dict[str, Any], context: Any = None) -> dict[str, Any]:
    review = context.get("review") if isinstance(context, dict) else None
    backend = config.get("backend")
    if backend == "llm":
        from hitl.steps import llm

        return llm.run(config, context)
    return _gemini(config, review) if backend == "gemini" else _template(config)
