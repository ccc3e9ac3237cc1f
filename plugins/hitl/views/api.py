"""The JSON API for scripts and other tools (Bearer token from ``POST /auth/token``).

Every answer is JSON, errors included: ``{"detail": "<one line>", "code": "<word>"}`` with
400 / 401 / 403 / 404 / 405 / 409 / 413 / 500 / 503.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask_appbuilder import expose

from hitl.decisions import DecisionError, InvalidEdit, decide
from hitl.identity import Reviewer
from hitl.store import PENDING, RequestQuery
from hitl.views.common import decision_status, error_response, signed_in
from hitl.views.limits import (
    MAX_OFFSET,
    BadInput,
    check_edit,
    check_hash,
    check_text,
    int_arg,
    loads_json,
    open_store,
    parse_id,
    shown,
)

PAGE_SIZE = 50
MAX_LIMIT = 500
ACTIONS = ("approve", "reject")


def _decision_body() -> dict[str, Any]:
    """The checked body of a decision: action, comment, edited_output, seen_hash."""
    if not request.is_json:
        raise BadInput('send JSON (Content-Type: application/json) with "action": "approve" or "reject"')
    body = loads_json(request.get_data(cache=True), what="the request body")
    if not isinstance(body, dict):
        raise BadInput('send a JSON object with "action": "approve" or "reject"')
    action = body.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise BadInput(f'"action" must be "approve" or "reject", not {shown(action)!r}')
    reason = check_text(body.get("reason"), "reason")
    comment = check_text(body.get("comment"), "comment")
    edited = body.get("edited_output")
    return {
        "action": action,
        "comment": reason if action == "reject" else comment,
        "edited_output": None if edited is None else check_edit(edited, what='"edited_output"'),
        "seen_hash": check_hash(body.get("seen_hash")),
    }


class ApiRoutes:
    """Mixed into ``ApprovalsView``."""

    @expose("/api/requests")
    @signed_in("api")
    def api_list(self, reviewer: Reviewer) -> Any:
        limit = int_arg(request.args.get("limit"), "limit", PAGE_SIZE, 1, MAX_LIMIT, clamp=True)
        offset = int_arg(request.args.get("offset"), "offset", 0, 0, MAX_OFFSET)
        mine = request.args.get("mine") in ("1", "true")
        rows = open_store().list_requests(
            RequestQuery(
                status=request.args.get("status", PENDING),
                dag_id=request.args.get("dag_id") or None,
                decidable_by=reviewer if mine else None,
            ),
            limit=limit,
            offset=offset,
        )
        return jsonify([r.as_dict() for r in rows])

    @expose("/api/requests/<request_id>")
    @signed_in("api")
    def api_get(self, reviewer: Reviewer, request_id: str) -> Any:
        number = parse_id(request_id)
        req = open_store().get(number) if number is not None else None
        if req is None:
            return error_response(404, f"no approval request {shown(request_id)}", "not_found")
        return jsonify(req.as_dict())

    @expose("/api/requests/<request_id>/decision", methods=["POST"])
    @signed_in("api")
    def api_decide(self, reviewer: Reviewer, request_id: str) -> Any:
        """Body: {"action": "approve"|"reject", "comment"?, "reason"?, "edited_output"?, "seen_hash"?}."""
        number = parse_id(request_id)
        if number is None:
            return error_response(404, f"no approval request {shown(request_id)}", "not_found")
        body = _decision_body()
        try:
            outcome = decide(open_store(), number, reviewer, body["action"], channel="api", **_without(body, "action"))
        except InvalidEdit as exc:
            return jsonify({"detail": str(exc), "code": exc.code, "errors": exc.errors}), 400
        except DecisionError as exc:
            return jsonify({"detail": str(exc), "code": exc.code}), decision_status(exc)
        return jsonify({"detail": outcome.message, "final": outcome.final, "request": outcome.request.as_dict()})


def _without(values: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != key}
