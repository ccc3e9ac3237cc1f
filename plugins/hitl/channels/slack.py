"""Slack, inbound: the action endpoint's logic for the interactive buttons (the Flask route is ``hitl.views.slack``).

Slack's request signature is checked (HMAC, as Slack documents) before anything is read; the Slack account maps to
the one Airflow user with exactly its email, asked of the auth manager as the review page asks
(``hitl.airflow_users``); the decision goes through the decision service, whose refusals are shown to the clicker
and in the modal; the message is rewritten with the outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from hitl.notify.slack import APPROVE, CHANGES, REJECT, escape, signing_secret
from hitl.settings import setting
from hitl.views.limits import MAX_COMMENT_CHARS, BadInput, check_text, loads_json, open_store, parse_id

log = logging.getLogger(__name__)
MAX_AGE_SECONDS = 300  # Slack's own guidance for replayed requests


class SlackRefusal(Exception):
    """Refused before any decision: ``str()`` is the reason, ``status`` the HTTP status Slack gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MalformedPayload(SlackRefusal):
    """Signed by Slack, but not the shape Slack sends (not JSON, a key missing, a wrong type)."""

    def __init__(self, what: str) -> None:
        super().__init__(400, f"malformed Slack payload: {what}")


def verify(body: bytes | str, headers: Any, now: float | None = None) -> None:
    """Slack's request signature: ``v0=`` HMAC-SHA256 of ``v0:<timestamp>:<raw body>``, on a recent timestamp.

    The timestamp is checked first and strictly (ASCII digits), so a bad header is a 401, never a crash.
    """
    secret = signing_secret()
    if not secret:
        raise SlackRefusal(404, "Slack actions are not configured ([hitl] slack_signing_secret)")
    timestamp = headers.get("X-Slack-Request-Timestamp") or ""
    signature = headers.get("X-Slack-Signature") or ""
    if not (0 < len(timestamp) <= 12 and timestamp.isascii() and timestamp.isdigit()):
        raise SlackRefusal(401, "missing or malformed request timestamp (X-Slack-Request-Timestamp)")
    now_ts = time.time() if now is None else now
    if abs(now_ts - int(timestamp)) > MAX_AGE_SECONDS:
        raise SlackRefusal(401, f"stale request timestamp (more than {MAX_AGE_SECONDS} seconds off)")
    raw = body if isinstance(body, bytes) else body.encode("utf-8")
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    if not (signature.isascii() and hmac.compare_digest(f"v0={digest}", signature)):
        raise SlackRefusal(401, "invalid Slack signature")


def slack_user_email(user_id: str) -> str | None:
    if not setting("slack_conn_id"):
        return None
    info = _slack_client().users_info(user=user_id)
    user = info.get("user") if hasattr(info, "get") else None
    profile = user.get("profile") if isinstance(user, dict) else None
    email = profile.get("email") if isinstance(profile, dict) else None
    return email if isinstance(email, str) and email else None


REASON_BLOCK = "hitl_reason"
FEEDBACK_BLOCK = "hitl_feedback"


def _slack_client() -> Any:
    from airflow.providers.slack.hooks.slack import SlackHook

    return SlackHook(slack_conn_id=setting("slack_conn_id")).client


def _reviewer(slack_user: str) -> Any:
    """The Airflow user of a Slack account, asked of the auth manager as the review page asks it (the same
    decide permission and readable DAGs): Slack never lets anyone do what the page would not."""
    from hitl.airflow_users import reviewer_with_email

    try:
        email = slack_user_email(slack_user)
    except Exception as exc:  # Slack did not answer, or refused: nothing is decided
        log.warning("hitl: could not look up Slack user %s: %s", slack_user, exc)
        raise SlackRefusal(200, "Could not look up your Slack account; try again, or use the review page.") from exc
    reviewer = reviewer_with_email(email, open_store().dag_ids()) if email else None
    if reviewer is None:
        raise SlackRefusal(200, f"Your Slack account ({email or slack_user}) is not linked to an Airflow user.")
    return reviewer


def _decide(request_id: int, reviewer: Any, verb: str, reason: str | None, response_url: str | None) -> str:
    from hitl.decisions import decide

    outcome = decide(open_store(), request_id, reviewer, verb, comment=reason, channel="slack")  # type: ignore[arg-type]
    text = f"{escape(outcome.request.dag_id)} / {escape(outcome.request.step_id)}: {escape(outcome.message)}"
    if reason:
        text += f" ({escape(reason)})"
    if response_url:
        _post_json(response_url, {"replace_original": True, "text": text})
    return text


# -- reading a signed payload: every key checked, so a malformed one is a 400 -----------------
def _object(container: Any, key: str, what: str) -> dict[str, Any]:
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} is missing or not an object")
    return value


def _string(container: Any, key: str, what: str, *, optional: bool = False, max_chars: int = 4000) -> str | None:
    value = container.get(key) if isinstance(container, dict) else None
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise MalformedPayload(f"{what} is missing or not a string")
    return value


def _request_id(value: Any) -> int:
    number = parse_id(value)
    if number is None:
        raise MalformedPayload("the request id is missing or not a whole number")
    return number


def _response_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 2000 or not value.startswith(("https://", "http://")):
        raise MalformedPayload("response_url is not an http(s) URL")
    return value


def _payload(form: Any) -> dict[str, Any]:
    raw = form.get("payload")
    if not isinstance(raw, str) or not raw:
        raise MalformedPayload("no payload field")
    try:
        payload = loads_json(raw, what="the payload")
    except BadInput as exc:
        raise SlackRefusal(400, f"malformed Slack payload: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedPayload("the payload is not a JSON object")
    return payload


def _ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def handle_action(body: bytes | str, form: Any, headers: Any, now: float | None = None) -> dict[str, Any] | None:
    """Verify, then act. Returns the JSON answer for Slack, or None for an empty 200.

    Approve decides at once. Reject opens a modal asking why (a reason is required, as on
    the review page), Request changes one asking for feedback (required); their submission
    decides. Raises ``SlackRefusal`` (401 unsigned, 400 malformed) before anything is decided.
    """
    from hitl.decisions import DecisionError

    verify(body, headers, now)
    payload = _payload(form)
    kind = _string(payload, "type", "type")
    if kind == "view_submission":
        dialog = DIALOGS.get(str(_object(payload, "view", "view").get("callback_id")))
        return dialog.submit(payload) if dialog is not None else None
    if kind != "block_actions":
        return None  # nothing of ours
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise MalformedPayload("actions is missing or not a list of objects")
    action = actions[0]
    action_id = action.get("action_id")
    if not isinstance(action_id, str):
        raise MalformedPayload("action_id is missing or not a string")
    if action_id not in (APPROVE, REJECT, CHANGES):
        return None  # the link buttons report their clicks too
    request_id = _request_id(action.get("value"))
    slack_user = _string(_object(payload, "user", "user"), "id", "user.id", max_chars=64)
    response_url = _response_url(payload.get("response_url"))
    if action_id in DIALOGS:
        trigger_id = _string(payload, "trigger_id", "trigger_id", max_chars=256)
        _reviewer(slack_user)  # type: ignore[arg-type]  # now, so an unlinked account hears why before typing
        dialog = DIALOGS[action_id]
        what = dialog.title.lower()
        try:
            _slack_client().views_open(trigger_id=trigger_id, view=dialog.modal(action_id, request_id, response_url))
        except Exception as exc:
            log.warning("hitl: could not open the %s dialog: %s", what, exc)
            return _ephemeral(f"Could not open the {what} dialog; use the review page instead.")
        return None
    reviewer = _reviewer(slack_user)  # type: ignore[arg-type]
    try:
        text = _decide(request_id, reviewer, "approve", None, response_url)
    except DecisionError as exc:
        return _ephemeral(escape(str(exc)))
    return _ephemeral(text)


@dataclass(frozen=True)
class _Dialog:
    """A decision that asks for text first (reject: why; request changes: what to change), in a Slack modal."""

    action: str  # the decision service's action
    block: str  # the modal's input block id
    field: str  # the input's action id, and the text's name in errors
    title: str
    label: str

    def modal(self, callback_id: str, request_id: int, response_url: str | None) -> dict[str, Any]:
        return {
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": json.dumps({"request_id": request_id, "response_url": response_url}),
            "title": {"type": "plain_text", "text": self.title},
            "submit": {"type": "plain_text", "text": self.title},
            "blocks": [
                {
                    "type": "input",
                    "block_id": self.block,
                    "label": {"type": "plain_text", "text": self.label},
                    "element": {
                        "type": "plain_text_input",
                        "action_id": self.field,
                        "multiline": True,
                        "max_length": MAX_COMMENT_CHARS,
                    },
                }
            ],
        }

    def submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The modal's submission: decide, or show in the modal why it was refused."""
        from hitl.decisions import DecisionError

        view = _object(payload, "view", "view")
        slack_user = _string(_object(payload, "user", "user"), "id", "user.id", max_chars=64)
        meta_text = _string(view, "private_metadata", "view.private_metadata")
        try:
            meta = loads_json(meta_text or "", what="private_metadata")
        except BadInput as exc:
            raise MalformedPayload(str(exc)) from exc
        if not isinstance(meta, dict):
            raise MalformedPayload("private_metadata is not a JSON object")
        request_id = _request_id(meta.get("request_id"))
        response_url = _response_url(meta.get("response_url"))
        values = _object(_object(view, "state", "view.state"), "values", "view.state.values")
        field = _object(_object(values, self.block, f"the {self.field} block"), self.field, f"the {self.field} field")
        try:
            text = check_text(field.get("value"), self.field) or ""
            _decide(request_id, _reviewer(slack_user), self.action, text.strip(), response_url)  # type: ignore[arg-type]
        except (BadInput, DecisionError, SlackRefusal) as exc:
            return {"response_action": "errors", "errors": {self.block: str(exc)}}
        return {"response_action": "clear"}


DIALOGS = {
    REJECT: _Dialog("reject", REASON_BLOCK, "reason", "Reject", "Why? (required)"),
    CHANGES: _Dialog(
        "request_changes",
        FEEDBACK_BLOCK,
        "feedback",
        "Request changes",
        "What should the next draft change? (required)",
    ),
}


def _post_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()
    except OSError as exc:  # the decision stands; the message just keeps its buttons
        log.warning("hitl: could not update the Slack message: %s", exc)
