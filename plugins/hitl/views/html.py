"""The review pages: inbox ("Needs your attention"), review page, approve / reject / edit & approve, bulk, badge.

Every decision goes through ``hitl.decisions.decide``; input is checked here first (sizes,
ids, the action, where to go back to) so a bad form is a 400, never a 500.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from flask import Response, flash, jsonify, redirect, render_template, request, url_for
from flask_appbuilder import expose

from hitl.decisions import DecisionError, InvalidEdit, decide
from hitl.identity import Reviewer, describe_approvers, may_decide
from hitl.outputs import EDITABLE_KINDS
from hitl.store import DECIDED, PENDING, ApprovalRequest, RequestQuery
from hitl.views import render
from hitl.views.common import decision_status, error_response, signed_in
from hitl.views.limits import (
    MAX_BULK_IDS,
    MAX_EDIT_BYTES,
    MAX_PAGE,
    BadInput,
    check_hash,
    check_text,
    int_arg,
    open_store,
    parse_id,
    safe_back,
    shown,
)

PAGE_SIZE = 50
AGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
TABS = ("attention", "pending", "decided", "all")
FORM_ACTIONS = ("approve", "reject", "edit")


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


def _no_request(raw: object) -> Any:
    return error_response(404, f"no approval request {shown(raw)}", "not_found")


class PageRoutes:
    """Mixed into ``ApprovalsView`` (a Flask-AppBuilder ``BaseView``)."""

    def _page(self, template: str, status: int = 200, **ctx: Any) -> Response:
        body = render_template(
            f"hitl/{template}", ago=_ago, describe_approvers=describe_approvers, json_tree=render.json_tree, **ctx
        )
        resp = Response(body, status=status, mimetype="text/html")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    # -- inbox --------------------------------------------------------------------------
    @expose("/")
    @signed_in("page")
    def inbox(self, reviewer: Reviewer) -> Any:
        page = int_arg(request.args.get("page"), "page", 1, 1, MAX_PAGE)
        store = open_store()
        tab = request.args.get("tab", "attention")
        tab = tab if tab in TABS else "attention"
        dag_id = request.args.get("dag") or None
        search = (request.args.get("q") or "").strip() or None
        age = request.args.get("age") or ""
        older_than = datetime.now(UTC) - AGES[age] if age in AGES else None
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
    @signed_in("badge")
    def badge(self, reviewer: Reviewer) -> Any:
        return jsonify({"attention": open_store().count(RequestQuery(decidable_by=reviewer))})

    # -- one request --------------------------------------------------------------------
    def _review_page(
        self,
        request_id: int,
        reviewer: Reviewer,
        status: int = 200,
        error: str | None = None,
        field_errors: dict[str, str] | None = None,
        edit: dict[str, Any] | None = None,
    ) -> Any:
        store = open_store()
        req = store.get(request_id)
        if req is None:
            return _no_request(request_id)
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

    @expose("/request/<request_id>")
    @signed_in("page")
    def review(self, reviewer: Reviewer, request_id: str) -> Any:
        number = parse_id(request_id)
        if number is None:
            return _no_request(request_id)
        token = request.args.get("t")
        if token is not None:  # a signed link from an email or Slack message
            from hitl.notify.links import LinkError, check_token

            try:
                check_token(token, number, request.args.get("action", "review"))
            except LinkError as exc:
                return self._page("link_error.html", status=400, reviewer=reviewer, message=str(exc), request_id=number)
        return self._review_page(number, reviewer)

    @expose("/request/<request_id>/decide", methods=["POST"])
    @signed_in("page")
    def decide_one(self, reviewer: Reviewer, request_id: str) -> Any:
        number = parse_id(request_id)
        if number is None:
            return _no_request(request_id)
        form = request.form
        action = form.get("action", "")
        edited: dict[str, Any] | None = None
        try:
            if action not in FORM_ACTIONS:
                raise BadInput(
                    f"unknown action {shown(action)!r}: approve, reject or edit" if action else "choose an action"
                )
            if action == "reject":
                comment = check_text(form.get("reason"), "reason")
            else:
                comment = check_text(form.get("comment"), "comment")
            seen_hash = check_hash(form.get("seen_hash"))
            if action == "edit":
                edited = _edit_from_form(open_store().get(number), form)
        except BadInput as exc:
            return self._review_page(number, reviewer, exc.status, str(exc), edit=edited)
        try:
            outcome = decide(
                open_store(),
                number,
                reviewer,
                "reject" if action == "reject" else "approve",
                comment=comment or None,
                edited_output=edited,
                seen_hash=seen_hash,
                channel="ui",
            )
        except InvalidEdit as exc:
            return self._review_page(number, reviewer, 400, str(exc), exc.errors, edit=edited)
        except DecisionError as exc:
            return self._review_page(number, reviewer, decision_status(exc), str(exc), edit=edited)
        flash(outcome.message, "success")
        return redirect(url_for("ApprovalsView.review", request_id=number))

    @expose("/bulk", methods=["POST"])
    @signed_in("page")
    def bulk(self, reviewer: Reviewer) -> Any:
        form = request.form
        action = form.get("action")
        if action not in ("approve", "reject"):
            raise BadInput(f"unknown bulk action {shown(action or '')!r}: approve or reject")
        raw_back = form.get("back")
        back = safe_back(raw_back) if raw_back else url_for("ApprovalsView.inbox")
        if back is None:
            raise BadInput("refused: 'back' must be a path on this site (like /pluginsv2/hitl/)")
        raw_ids = form.getlist("ids")
        if len(raw_ids) > MAX_BULK_IDS:
            raise BadInput(f"too many requests selected ({len(raw_ids)}; at most {MAX_BULK_IDS} at once)")
        ids: list[int] = []
        for raw in raw_ids:
            number = parse_id(raw)
            if number is None:
                raise BadInput(f"not a request id: {shown(raw)!r} (nothing was decided)")
            if number not in ids:
                ids.append(number)
        reason = (check_text(form.get("reason"), "reason") or "").strip() or None
        if not ids:
            flash("Select at least one request.", "error")
        store = open_store() if ids else None
        for number in ids:  # each decision is checked and audited on its own
            try:
                outcome = decide(store, number, reviewer, action, comment=reason, channel="ui-bulk")  # type: ignore[arg-type]
                flash(outcome.message, "success")
            except DecisionError as exc:
                flash(f"#{number}: {exc}", "error")
        return redirect(back)


def _edit_from_form(req: ApprovalRequest | None, form: Any) -> dict[str, Any] | None:
    """The edited output from the form, bounded in size (None when there is no such request: decide says so)."""
    if req is None:
        return None
    edited = render.edit_from_form(req.output_kind, form)
    size = len(json.dumps(edited, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MAX_EDIT_BYTES:
        raise BadInput(f"the edit is too large ({size} bytes; at most {MAX_EDIT_BYTES})", 413, "too_large")
    return edited
