"""The review pages: inbox ("Needs your attention"), review page, one decision form, bulk with confirmation, badge.

Every decision goes through ``hitl.decisions.decide``; input is checked here first (sizes,
ids, the action, where to go back to) so a bad form is a 400, never a 500.

The review page has one form: the draft's fields are edited in place and the primary button (the
gate's ``approveLabel``) sends exactly what is on screen: fields that differ from the stored output
make it an edit & approve, an untouched form a plain approval (with or without JavaScript).
Bulk decisions are shown on a confirmation page (how many, which) before anything is decided.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from flask import Response, flash, jsonify, redirect, render_template, request, url_for
from flask_appbuilder import expose

from hitl.access import Action, access
from hitl.decisions import DecisionError, InvalidEdit, decide
from hitl.identity import Reviewer, describe_approvers
from hitl.monitor import monitor_warning
from hitl.outputs import EDITABLE_KINDS, summarize
from hitl.store import DECIDED, PENDING, ApprovalRequest, RequestQuery
from hitl.views import render
from hitl.views.auth import current_user
from hitl.views.changes import review_extras
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
from hitl.views.run_facts import AirflowReads, run_facts

log = logging.getLogger(__name__)

PAGE_SIZE = 50
AGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
TABS = ("attention", "pending", "decided", "all")
FORM_ACTIONS = ("approve", "reject", "edit", "preview")  # "edit": older forms; the same as approve with fields


def _ago(when: datetime | None) -> str:
    if when is None:
        return ""
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"


def _airflow_root() -> str:
    """The path Airflow's UI is served under (``[api] base_url``'s path; "" at the root)."""
    try:
        from airflow.configuration import conf

        return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    except Exception:  # pragma: no cover - no Airflow configuration
        return ""


def _airflow_links(req: ApprovalRequest) -> dict[str, str]:
    """Airflow 3 UI routes (``dags/:dagId/runs/:runId/tasks/:taskId[/mapped/:mapIndex]``)."""
    dag = f"{_airflow_root()}/dags/{quote(req.dag_id, safe='')}"
    run = f"{dag}/runs/{quote(req.run_id, safe='')}"
    mapped = f"/mapped/{req.map_index}" if req.map_index >= 0 else ""
    return {
        "dag": dag,
        "run": run,
        "step": f"{run}/tasks/{quote(req.step_id, safe='')}{mapped}",
        "gate": f"{run}/tasks/{quote(req.gate_task_id, safe='')}{mapped}",
    }


def readable_workflows(store: Any, reviewer: Reviewer) -> list[str]:
    """The workflow filter's choices: the store's workflows the reviewer may read (already asked, with the login)."""
    return sorted(reviewer.dags) if reviewer.dags is not None else store.dag_ids()


def _no_request(raw: object) -> Any:
    return error_response(404, f"no approval request {shown(raw)}", "not_found")


class PageRoutes:
    """Mixed into ``ApprovalsView`` (a Flask-AppBuilder ``BaseView``).

    ``airflow_reads``: where the review page reads Airflow's database (another object may be given)."""

    airflow_reads: AirflowReads = AirflowReads()

    def _page(self, template: str, status: int = 200, **ctx: Any) -> Response:
        zone = render.ui_timezone()
        body = render_template(
            f"hitl/{template}",
            ago=_ago,
            describe_approvers=describe_approvers,
            json_tree=render.json_tree,
            summarize=summarize,
            status_words=render.status_words,
            channel_words=render.channel_words,
            when=lambda value, seconds=False: render.when(value, zone, seconds),
            zone_name=zone[0],
            **ctx,
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
        query = RequestQuery.for_reader(
            reviewer,
            status={"attention": PENDING, "pending": PENDING, "decided": "decided", "all": "all"}[tab],
            dag_id=dag_id,
            search=search,
            decidable_by=reviewer if tab == "attention" else None,
            older_than=older_than,
        )
        offset = (page - 1) * PAGE_SIZE
        rows = store.list_requests(query, limit=PAGE_SIZE, offset=offset)
        # A page that is neither empty nor full is the last one: its total needs no second pass over the index.
        total = offset + len(rows) if 0 < len(rows) < PAGE_SIZE else store.count(query)
        unfiltered_attention = tab == "attention" and not (dag_id or search or older_than)
        can_decide = {r.id: access(r, reviewer).may_decide for r in rows}
        return self._page(
            "inbox.html",
            reviewer=reviewer,
            rows=rows,
            total=total,
            tab=tab,
            tabs=TABS,
            dag_id=dag_id or "",
            dag_ids=readable_workflows(store, reviewer),
            q=search or "",
            age=age,
            ages=list(AGES),
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            attention=total
            if unfiltered_attention
            else store.count(RequestQuery.for_reader(reviewer, decidable_by=reviewer)),
            can_decide=can_decide,
            can_bulk=tab in ("attention", "pending") and any(can_decide.values()),
            pending=PENDING,
        )

    @expose("/badge")
    @signed_in("badge")
    def badge(self, reviewer: Reviewer) -> Any:
        return jsonify({"attention": open_store().count(RequestQuery.for_reader(reviewer, decidable_by=reviewer))})

    # -- one request --------------------------------------------------------------------
    def _review_page(
        self,
        request_id: int,
        reviewer: Reviewer,
        status: int = 200,
        error: str | None = None,
        field_errors: dict[str, str] | None = None,
        form: Any | None = None,
        preview: bool = False,
    ) -> Any:
        store = open_store()
        req = store.get(request_id)
        if req is None or not reviewer.may_read(req.dag_id):  # a DAG Airflow hides from them: no such request
            return _no_request(request_id)
        votes = store.votes(req.id)
        approvals = [v for v in votes if v[1] == "approved"]
        rights = access(req, reviewer)
        can_decide = rights.may_decide
        editable = req.output_kind in EDITABLE_KINDS and rights.may(Action.EDIT)
        values = render.form_values(req.output_kind, req.output, form)
        if req.edited_output is not None:
            diff = render.diff(req.output, req.edited_output)
        elif form is not None and editable:  # a preview, or a refused edit: what the form holds
            diff = render.diff(req.output, render.edited_output(req.output_kind, req.output, form) or req.output)
        else:
            diff = []
        now = datetime.now(UTC)
        deadline = req.deadline()
        return self._page(
            "review.html",
            status=status,
            req=req,
            reviewer=reviewer,
            can_decide=can_decide,
            editable=editable,
            email=render.email_fields(req.output),
            final_email=render.email_fields(req.final_output),
            values=values,
            diff=diff,
            preview=preview,
            history=store.history(req.id),
            verdict=store.verdict(req.id),
            approvals=approvals,
            voted=any(v[0] == reviewer.name for v in votes),
            deadline=deadline,
            left=render.span((deadline[0] - now).total_seconds()) if deadline else "",
            overdue=bool(deadline and deadline[0] <= now),
            facts=run_facts(req, self.airflow_reads, current_user()),
            links=_airflow_links(req),
            hx=review_extras(store, req, rights),
            rights=rights,
            error=error,
            field_errors=field_errors or {},
            action=request.args.get("action", ""),
            comment=(form.get("comment") or "") if form is not None else "",
            decided=req.status in DECIDED,
            pending=PENDING,
            monitor_warning=monitor_warning(store, req) if req.status == PENDING else None,
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
            if action != "reject":  # what is on screen: the fields that differ from the output are the edit
                edited = _edit_from_form(open_store().get(number), form)
        except BadInput as exc:
            return self._review_page(number, reviewer, exc.status, str(exc), form=form)
        if action == "preview":  # the diff before it goes, without JavaScript; nothing is decided
            return self._review_page(number, reviewer, form=form, preview=True)
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
            return self._review_page(number, reviewer, 400, str(exc), exc.errors, form=form)
        except DecisionError as exc:
            return self._review_page(number, reviewer, decision_status(exc), str(exc), form=form)
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
            return redirect(back)
        store = open_store()
        if form.get("confirmed") != "1":  # nothing is decided before the reviewer saw what will be
            return self._bulk_confirmation(store, reviewer, action, ids, reason, back)
        for number in ids:  # each decision is checked and audited on its own
            try:
                outcome = decide(store, number, reviewer, action, comment=reason, channel="ui-bulk")  # type: ignore[arg-type]
                flash(outcome.message, "success")
            except DecisionError as exc:
                flash(f"#{number}: {exc}", "error")
        return redirect(back)

    def _bulk_confirmation(
        self, store: Any, reviewer: Reviewer, action: str, ids: list[int], reason: str | None, back: str
    ) -> Any:
        items = []
        for number in ids:
            req = store.get(number)
            why = None
            if req is None or not reviewer.may_read(req.dag_id):
                req, why = None, "no such request"
            else:
                denied = access(req, reviewer).why_not(action)
                why = denied.message if denied is not None else None
            items.append({"id": number, "req": req, "skip": why})
        ready = [i for i in items if i["skip"] is None]
        return self._page(
            "bulk_confirm.html",
            reviewer=reviewer,
            action=action,
            items=items,
            ready=ready,
            reason=reason or "",
            back=back,
            needs_reason=action == "reject" and not reason,
        )


def _edit_from_form(req: ApprovalRequest | None, form: Any) -> dict[str, Any] | None:
    """The edit the form carries (its fields that differ from the output), bounded in size; None when unchanged.

    None too when there is no such request (decide says so).
    """
    if req is None:
        return None
    fields = [k for k in form if k.startswith("edit_")]
    if fields and (req.output_kind not in EDITABLE_KINDS or req.min_approvals > 1):
        if req.min_approvals > 1:
            raise BadInput(f"this request needs {req.min_approvals} approvals: its output cannot be edited")
        raise BadInput(f"a {req.output_kind} output cannot be edited here; approve or reject it as it is")
    if form.get("action") == "edit" and req.output_kind not in EDITABLE_KINDS:
        raise BadInput(f"a {req.output_kind} output cannot be edited here; approve or reject it as it is")
    edited = render.edited_output(req.output_kind, req.output, form)
    if edited is None:
        return None
    size = len(json.dumps(edited, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MAX_EDIT_BYTES:
        raise BadInput(f"the edit is too large ({size} bytes; at most {MAX_EDIT_BYTES})", 413, "too_large")
    return edited
