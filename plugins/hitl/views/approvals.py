"""The review UI: inbox ("Needs your attention"), review page, approve / reject / edit & approve, bulk.

A Flask-AppBuilder view served by the FAB provider at ``/pluginsv2/hitl/``. Every decision
goes through ``hitl.decisions.decide``; this module only renders and routes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_appbuilder import BaseView, expose
from werkzeug.wrappers import Response as BaseResponse

from hitl.decisions import AlreadyDecided, DecisionError, InvalidEdit, NotAllowed, NotFound, StaleOutput, decide
from hitl.identity import Reviewer, describe_approvers, may_decide
from hitl.outputs import EDITABLE_KINDS
from hitl.store import DECIDED, PENDING, ApprovalRequest, RequestQuery, get_store
from hitl.views import render
from hitl.views.auth import RESOURCE, as_reviewer, authorized, current_user

PAGE_SIZE = 50
AGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
TABS = ("attention", "pending", "decided", "all")
STATUS_CODES = {NotFound: 404, NotAllowed: 403, AlreadyDecided: 409, StaleOutput: 409, InvalidEdit: 400}


def _ago(when: datetime | None) -> str:
    if when is None:
        return ""
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"


def _airflow_links(req: ApprovalRequest) -> dict[str, str]:
    run = f"/dags/{quote(req.dag_id, safe='')}/runs/{quote(req.run_id, safe='')}"
    return {
        "run": run,
        "step": f"{run}/tasks/{quote(req.step_id, safe='')}",
        "gate": f"{run}/tasks/{quote(req.gate_task_id, safe='')}",
    }


class ApprovalsView(BaseView):
    route_base = "/hitl"
    default_view = "inbox"
    template_folder = str(Path(__file__).parent / "templates")
    class_permission_name = RESOURCE
    method_permission_name = {
        "inbox": "read",
        "review": "read",
        "badge": "read",
        "decide_one": "edit",
        "bulk": "edit",
        "slack_actions": "edit",
        "api_list": "read",
        "api_get": "read",
        "api_decide": "edit",
    }
    base_permissions = ["can_read", "can_edit"]

    # -- helpers ------------------------------------------------------------------------
    def _user(self) -> tuple[Any, Reviewer] | BaseResponse:
        user = current_user()
        if user is None:
            from airflow.api_fastapi.app import get_auth_manager

            login = get_auth_manager().get_url_login()
            return redirect(f"{login}{'&' if '?' in login else '?'}{urlencode({'next': request.url})}")
        if not authorized(user, "GET"):
            abort(403)
        return user, as_reviewer(user)

    def _page(self, template: str, status: int = 200, **ctx: Any) -> Response:
        body = render_template(f"hitl/{template}", ago=_ago, describe_approvers=describe_approvers, **ctx)
        resp = Response(body, status=status, mimetype="text/html")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    # -- inbox --------------------------------------------------------------------------
    @expose("/")
    def inbox(self) -> BaseResponse:
        who = self._user()
        if isinstance(who, BaseResponse):
            return who
        _, reviewer = who
        store = get_store()
        tab = request.args.get("tab", "attention")
        tab = tab if tab in TABS else "attention"
        dag_id = request.args.get("dag") or None
        search = (request.args.get("q") or "").strip() or None
        age = request.args.get("age") or ""
        older_than = datetime.now(UTC) - AGES[age] if age in AGES else None
        page = max(1, request.args.get("page", 1, type=int) or 1)
        query = RequestQuery(
            status={"attention": PENDING, "pending": PENDING, "decided": "decided", "all": "all"}[tab],
            dag_id=dag_id,
            search=search,
            decidable_by=reviewer if tab == "attention" else None,
            older_than=older_than,
        )
        rows = store.list_requests(query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        total = store.count(query)
        return self._page(
            "inbox.html",
            reviewer=reviewer,
            rows=rows,
            total=total,
            tab=tab,
            tabs=TABS,
            dag_id=dag_id or "",
            dag_ids=store.dag_ids(),
            q=search or "",
            age=age,
            ages=list(AGES),
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            attention=store.count(RequestQuery(decidable_by=reviewer)),
            can_decide={r.id: may_decide(reviewer, r.approvers) for r in rows},
            pending=PENDING,
        )

    @expose("/badge")
    def badge(self) -> Any:
        who = self._user()
        if isinstance(who, BaseResponse):
            return jsonify({"error": "not logged in"}), 401
        _, reviewer = who
        return jsonify({"attention": get_store().count(RequestQuery(decidable_by=reviewer))})

    # -- one request --------------------------------------------------------------------
    def _review_page(
        self,
        request_id: int,
        reviewer: Reviewer,
        status: int = 200,
        error: str | None = None,
        field_errors: dict[str, str] | None = None,
        edit: dict[str, Any] | None = None,
    ) -> Response:
        store = get_store()
        req = store.get(request_id)
        if req is None:
            abort(404)
        approvals = [v for v in store.votes(req.id) if v[1] == "approved"]
        return self._page(
            "review.html",
            status=status,
            req=req,
            reviewer=reviewer,
            can_decide=req.status == PENDING and may_decide(reviewer, req.approvers),
            editable=req.output_kind in EDITABLE_KINDS and req.min_approvals == 1,
            email=render.email_fields(req.output),
            edit=edit if edit is not None else (req.output if isinstance(req.output, dict) else {}),
            diff=render.diff(req.output, req.edited_output) if req.edited_output is not None else [],
            history=store.history(req.id),
            approvals=approvals,
            links=_airflow_links(req),
            error=error,
            field_errors=field_errors or {},
            action=request.args.get("action", ""),
            decided=req.status in DECIDED,
            pending=PENDING,
        )

    @expose("/request/<int:request_id>")
    def review(self, request_id: int) -> BaseResponse:
        who = self._user()
        if isinstance(who, BaseResponse):
            return who
        token = request.args.get("t")
        if token is not None:  # a signed link from an email or Slack message
            from hitl.notify.links import LinkError, check_token

            try:
                check_token(token, request_id, request.args.get("action", "review"))
            except LinkError as exc:
                return self._page(
                    "link_error.html", status=400, reviewer=who[1], message=str(exc), request_id=request_id
                )
        return self._review_page(request_id, who[1])

    @expose("/request/<int:request_id>/decide", methods=["POST"])
    def decide_one(self, request_id: int) -> BaseResponse:
        who = self._user()
        if isinstance(who, BaseResponse):
            return who
        _, reviewer = who
        form = request.form
        action = form.get("action", "")
        req = get_store().get(request_id)
        if req is None:
            abort(404)
        edited = render.edit_from_form(req.output_kind, form) if action == "edit" else None
        try:
            outcome = decide(
                get_store(),
                request_id,
                reviewer,
                "reject" if action == "reject" else "approve",
                comment=(form.get("reason") if action == "reject" else form.get("comment")) or None,
                edited_output=edited,
                seen_hash=form.get("seen_hash") or None,
                channel="ui",
            )
        except InvalidEdit as exc:
            return self._review_page(request_id, reviewer, 400, str(exc), exc.errors, edit=edited)
        except DecisionError as exc:
            return self._review_page(request_id, reviewer, STATUS_CODES.get(type(exc), 400), str(exc), edit=edited)
        flash(outcome.message, "success")
        return redirect(url_for("ApprovalsView.review", request_id=request_id))

    @expose("/bulk", methods=["POST"])
    def bulk(self) -> BaseResponse:
        who = self._user()
        if isinstance(who, BaseResponse):
            return who
        _, reviewer = who
        action = request.form.get("action")
        if action not in ("approve", "reject"):
            abort(400)
        ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()]
        if not ids:
            flash("Select at least one request.", "error")
        reason = (request.form.get("reason") or "").strip() or None
        for request_id in ids:  # each decision is checked and audited on its own
            try:
                outcome = decide(get_store(), request_id, reviewer, action, comment=reason, channel="ui-bulk")  # type: ignore[arg-type]
                flash(outcome.message, "success")
            except DecisionError as exc:
                flash(f"#{request_id}: {exc}", "error")
        return redirect(request.form.get("back") or url_for("ApprovalsView.inbox"))

    # -- JSON API for scripts and other tools (Bearer token from POST /auth/token) ---------
    def _api_user(self) -> Reviewer:
        user = current_user(bearer_only=True)
        if user is None:
            abort(
                Response(
                    '{"detail": "send Authorization: Bearer <token from /auth/token>"}',
                    401,
                    mimetype="application/json",
                )
            )
        if not authorized(user, "GET"):
            abort(Response('{"detail": "forbidden"}', 403, mimetype="application/json"))
        return as_reviewer(user)

    @expose("/api/requests")
    def api_list(self) -> Any:
        reviewer = self._api_user()
        status = request.args.get("status", PENDING)
        limit = min(max(1, request.args.get("limit", PAGE_SIZE, type=int) or PAGE_SIZE), 500)
        mine = request.args.get("mine") in ("1", "true")
        rows = get_store().list_requests(
            RequestQuery(
                status=status,
                dag_id=request.args.get("dag_id") or None,
                decidable_by=reviewer if mine else None,
            ),
            limit=limit,
            offset=max(0, request.args.get("offset", 0, type=int) or 0),
        )
        return jsonify([r.as_dict() for r in rows])

    @expose("/api/requests/<int:request_id>")
    def api_get(self, request_id: int) -> Any:
        self._api_user()
        req = get_store().get(request_id)
        if req is None:
            return jsonify({"detail": f"no approval request {request_id}"}), 404
        return jsonify(req.as_dict())

    @expose("/api/requests/<int:request_id>/decision", methods=["POST"])
    def api_decide(self, request_id: int) -> Any:
        """Body: {"action": "approve"|"reject", "comment"?, "reason"?, "edited_output"?, "seen_hash"?}."""
        reviewer = self._api_user()
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or body.get("action") not in ("approve", "reject"):
            return jsonify({"detail": 'send JSON with "action": "approve" or "reject"'}), 400
        try:
            outcome = decide(
                get_store(),
                request_id,
                reviewer,
                body["action"],
                comment=body.get("reason") if body["action"] == "reject" else body.get("comment"),
                edited_output=body.get("edited_output"),
                seen_hash=body.get("seen_hash"),
                channel="api",
            )
        except InvalidEdit as exc:
            return jsonify({"detail": str(exc), "code": exc.code, "errors": exc.errors}), 400
        except DecisionError as exc:
            return jsonify({"detail": str(exc), "code": exc.code}), STATUS_CODES.get(type(exc), 400)
        return jsonify({"detail": outcome.message, "final": outcome.final, "request": outcome.request.as_dict()})

    # -- Slack's interactive buttons ----------------------------------------------------
    @expose("/slack/actions", methods=["POST"])
    def slack_actions(self) -> Any:
        """Called by Slack, not a browser: authenticated by Slack's signature, so exempt from CSRF."""
        from hitl.notify.slack import SlackRefusal, handle_action

        try:
            answer = handle_action(request.get_data(as_text=True), request.form, request.headers)
            return jsonify(answer) if answer is not None else ("", 200)
        except SlackRefusal as exc:
            return jsonify({"response_type": "ephemeral", "text": str(exc)}), exc.status


def _exempt_from_csrf() -> None:
    try:
        from airflow.providers.fab.www.app import csrf

        csrf.exempt(f"{__name__}.slack_actions")  # authenticated by Slack's signature
        csrf.exempt(f"{__name__}.api_decide")  # Bearer token only; cookies do not count there
    except Exception:  # pragma: no cover - no FAB www app in this process
        pass


_exempt_from_csrf()
