"""The endpoint Slack's interactive buttons call (the logic lives in ``hitl.channels.slack``).

Called by Slack, not a browser: authenticated by Slack's request signature, so exempt from CSRF.
Answers are Slack JSON (``{"response_type": "ephemeral", "text": ...}`` for a refusal).
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask_appbuilder import expose

from hitl.notify.slack import escape


class SlackRoutes:
    """Mixed into ``ApprovalsView``."""

    @expose("/slack/actions", methods=["POST"])
    def slack_actions(self) -> Any:
        from hitl.channels.slack import SlackRefusal, handle_action

        try:
            answer = handle_action(request.get_data(cache=True), request.form, request.headers)
        except SlackRefusal as exc:
            return jsonify({"response_type": "ephemeral", "text": escape(str(exc))}), exc.status
        return jsonify(answer) if answer is not None else ("", 200)
