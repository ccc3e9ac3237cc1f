"""The JSON API for scripts and other tools (Bearer token from ``POST /auth/token``).

Decisions: ``{"action": "approve" | "reject" | "request_changes", ...}``; comments: ``GET`` and
``POST /api/requests/<id>/comments`` (``{"body": "..."}``; ``@user`` notifies; comments never decide).

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
from hitl.views.common import decision_headers, decision_status, error_response, signed_in
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
ACTIONS = ("approve", "reject", "request_changes")
WHICH = '"approve", "reject" or "request_changes"'


def _json_object(what: str) -> dict[str, Any]:
    if not request.is_json:
        raise BadInput(f"send JSON (Content-Type: application/json) with {what}")
    body = loads_json(request.get_data(cache=True), what="the request body")
    if not isinstance(body, dict):
        raise BadInput(f"send a JSON object with {what}")
    return body


def _decision_body() -> dict[str, Any]:
    """The checked body of a decision: action, comment (reason or feedback), edited_output, seen_hash."""
    body = _json_object(f'"action": {WHICH}')
    action = body.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise BadInput(f'"action" must be {WHICH}, not {shown(action)!r}')
    reason = check_text(body.get("reason"), "reason")
    feedback = check_text(body.get("feedback"), "feedback")
    comment = check_text(body.get("comment"), "comment")
    edited = body.get("edited_output")
    return {
        "action": action,
        "comment": {"reject": reason, "request_changes": feedback}.get(action, comment),
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
            RequestQuery.for_reader(
                reviewer,
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
        if req is None or not reviewer.may_read(req.dag_id):  # a DAG Airflow hides from them: no such request
            return error_response(404, f"no approval request {shown(request_id)}", "not_found")
        return jsonify(req.as_dict())

    @expose("/api/requests/<request_id>/decision", methods=["POST"])
    @signed_in("api")
    def api_decide(self, reviewer: Reviewer, request_id: str) -> Any:
        """Body: {"action": "approve"|"reject"|"request_changes", "comment"?, "reason"?, "feedback"?,
        "edited_output"?, "seen_hash"?}."""
        number = parse_id(request_id)
        if number is None:
            return error_response(404, f"no approval request {shown(request_id)}", "not_found")
        body = _decision_body()
        try:
            outcome = decide(open_store(), number, reviewer, body["action"], channel="api", **_without(body, "action"))
        except InvalidEdit as exc:
            return jsonify({"detail": str(exc), "code": exc.code, "errors": exc.errors}), 400
        except DecisionError as exc:
            return jsonify({"detail": str(exc), "code": exc.code}), decision_status(exc), decision_headers(exc)
        return jsonify({"detail": outcome.message, "final": outcome.final, "request": outcome.request.as_dict()})


class AuditApiRoutes:
    """Mixed into ``ApprovalsView``: the audit trail as JSON Lines or CSV (``hitl.audit_export``); admins only.

    The trail holds every workflow's drafts and decisions, so only a user whose role may decide everything
    (Airflow's admins) may export it.
    """

    @expose("/api/audit", methods=["GET"])
    @signed_in("api")
    def api_audit(self, reviewer: Reviewer) -> Any:
        """Query: request, workflow, since, until (ISO 8601 with a zone), format (jsonl | csv)."""
        from flask import Response, stream_with_context

        from hitl.audit_export import FORMATS, AuditFilter, parse_time, render, rows

        if not reviewer.is_admin:
            return error_response(403, "only admins may export the audit trail", "forbidden")
        fmt = request.args.get("format", "jsonl")
        if fmt not in FORMATS:
            raise BadInput(f"format must be jsonl or csv, not {shown(fmt)!r}")
        number = request.args.get("request")
        try:
            which = AuditFilter(
                request_id=int_arg(number, "request", 0, 1, MAX_OFFSET) if number else None,
                workflow=request.args.get("workflow") or None,
                since=parse_time(since, "since") if (since := request.args.get("since")) else None,
                until=parse_time(until, "until") if (until := request.args.get("until")) else None,
            )
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        store = open_store()
        media = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"

        def readable(found: Any) -> Any:  # an admin role narrowed by DAG still exports only what it may read
            return (r for r in found if r["workflow"] is None or reviewer.may_read(r["workflow"]))

        return Response(
            stream_with_context(render(readable(rows(store, which)), fmt)),
            mimetype=media,
            headers={"Content-Disposition": f'attachment; filename="hitl-audit.{fmt}"'},
        )


class PolicyApiRoutes:
    """Mixed into ``ApprovalsView``: shadow agreement of gate policies (the insights page's figures, as JSON)."""

    @expose("/api/policy", methods=["GET"])
    @signed_in("api")
    def api_policy(self, reviewer: Reviewer) -> Any:
        """Query: workflow, step, last (human decisions to read, default 200)."""
        from hitl.policy_report import DEFAULT_LAST, report
        from hitl.store.policy_reads import MAX_LAST

        last = int_arg(request.args.get("last"), "last", DEFAULT_LAST, 1, MAX_LAST)
        found = report(
            open_store(),
            last=last,
            dag_id=request.args.get("workflow") or None,
            step_id=request.args.get("step") or None,
            dag_ids=reviewer.dags,
        )
        return jsonify({"last": last, "gates": [g.as_dict() for g in found]})


class CommentApiRoutes:
    """Mixed into ``ApprovalsView``: a request's comments (anyone who may read it may comment)."""

    @expose("/api/requests/<request_id>/comments", methods=["GET"])
    @signed_in("api")
    def api_comments(self, reviewer: Reviewer, request_id: str) -> Any:
        number = parse_id(request_id)
        store = open_store()
        req = store.get(number) if number is not None else None
        if req is None or not reviewer.may_read(req.dag_id):
            return error_response(404, f"no approval request {shown(request_id)}", "not_found")
        return jsonify([c.as_dict() for c in store.comments(req.id)])

    @expose("/api/requests/<request_id>/comments", methods=["POST"])
    @signed_in("api")
    def api_comment(self, reviewer: Reviewer, request_id: str) -> Any:
        """Body: {"body": "text, @user notifies them"}. Never decides."""
        from hitl.comments import add_comment

        number = parse_id(request_id)
        if number is None:
            return error_response(404, f"no approval request {shown(request_id)}", "not_found")
        body = _json_object('"body": "your comment"')
        text = check_text(body.get("body"), "comment")
        try:
            comment = add_comment(open_store(), number, reviewer, text, channel="api")
        except DecisionError as exc:
            return jsonify({"detail": str(exc), "code": exc.code}), decision_status(exc)
        detail = f"comment {comment.id} added to request {number}{comment.told()}"
        return jsonify({"detail": detail, "comment": comment.as_dict()}), 201


def _without(values: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != key}
