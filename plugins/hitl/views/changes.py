"""Request changes and comments on the review page: two form routes, and what their partial templates show.

``hitl/_review_asked.html`` (the note beside a later draft: the feedback it answers, from ``hx.rounds``),
``hitl/_review_changes.html`` (the request-changes form and the rounds history, each draft diffed
against the one before) and ``hitl/_review_comments.html`` (the thread and its form) are included by
``review.html``; their data is ``review_extras`` (``hx``), computed once by the review page.
Decisions go through ``hitl.decisions.decide``, comments through ``hitl.comments.add_comment``.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_appbuilder import expose

from hitl.access import Access, Action, Refusal
from hitl.decisions import DecisionError, decide
from hitl.identity import Reviewer
from hitl.store import CHANGES_REQUESTED, ApprovalRequest, Store
from hitl.views import render
from hitl.views.common import decision_headers, decision_status, error_response, signed_in
from hitl.views.limits import BadInput, check_hash, check_text, open_store, parse_id, shown


def _no_request(raw: object) -> Any:
    return error_response(404, f"no approval request {shown(raw)}", "not_found")


def _as_fields(output: Any) -> dict[str, Any]:
    """An output as fields to diff: a dict as it is, anything else as one ``output`` field of JSON text."""
    if isinstance(output, dict):
        return output
    import json

    return {"output": output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, indent=2)}


def rounds_history(store: Store, req: ApprovalRequest) -> list[dict[str, Any]]:
    """Every draft of this gate in this run up to ``req``, oldest first, each with its diff against the one before."""
    earlier = [r for r in store.rounds(req.dag_id, req.run_id, req.gate_task_id, req.map_index) if r.id < req.id]
    drafts = [*earlier, req]
    history = []
    previous: ApprovalRequest | None = None
    for draft in drafts:
        history.append(
            {
                "request": draft,
                "revision": draft.revision,
                "current": draft.id == req.id,
                "feedback": draft.comment if draft.status == CHANGES_REQUESTED else None,
                "by": draft.decided_by if draft.status == CHANGES_REQUESTED else None,
                "at": draft.decided_at if draft.status == CHANGES_REQUESTED else None,
                "diff": render.diff(_as_fields(previous.output), _as_fields(draft.output)) if previous else [],
            }
        )
        previous = draft
    return history


def review_extras(store: Store, req: ApprovalRequest, rights: Access) -> dict[str, Any]:
    """What the two partials show for ``req``: the rounds, the comment thread, and whether changes may be requested.

    Computed once per page by the review page (``hx``), with the page's own store and the reviewer's ``access``."""
    latest = store.current_for_gate(req.dag_id, req.run_id, req.gate_task_id, req.map_index)
    denied = rights.why_not(Action.REQUEST_CHANGES)
    return {
        "rounds": rounds_history(store, req),
        # after "request changes": the gate's newest request (the next draft), once the step has made it
        "next_request": latest if latest is not None and latest.id > req.id else None,
        "comments": store.comments(req.id),
        # what the steps after the gate read besides this output, bound to the approval (hitl.guard)
        "bound_inputs": store.bound_inputs(req.id),
        "can_request_changes": denied is None,
        "revisions_used": req.revisions_used,
        "max_revisions": req.max_revisions,
        "revisions_left": req.revisions_left,
        "no_revisions_left": denied is not None
        and denied.reason is Refusal.NO_REVISIONS_LEFT
        and req.max_revisions > 0,
    }


class ChangesRoutes:
    """Mixed into ``ApprovalsView``: the request-changes form and the comment form of the review page."""

    @expose("/request/<request_id>/request-changes", methods=["POST"])
    @signed_in("page")
    def request_changes_form(self, reviewer: Reviewer, request_id: str) -> Any:
        number = parse_id(request_id)
        if number is None:
            return _no_request(request_id)
        try:
            feedback = (check_text(request.form.get("feedback"), "feedback") or "").replace("\r\n", "\n")
            seen_hash = check_hash(request.form.get("seen_hash"))
        except BadInput as exc:
            return self._review_page(number, reviewer, exc.status, str(exc))  # type: ignore[attr-defined]
        try:
            outcome = decide(
                open_store(),
                number,
                reviewer,
                "request_changes",
                comment=feedback,
                seen_hash=seen_hash,
                channel="ui",
            )
        except DecisionError as exc:
            page = self._review_page(number, reviewer, decision_status(exc), str(exc))  # type: ignore[attr-defined]
            page.headers.update(decision_headers(exc))  # a 503 (the step cannot be re-run now): Retry-After
            return page
        flash(outcome.message, "success")
        return redirect(url_for("ApprovalsView.review", request_id=number))

    @expose("/request/<request_id>/comment", methods=["POST"])
    @signed_in("page")
    def comment_form(self, reviewer: Reviewer, request_id: str) -> Any:
        from hitl.comments import add_comment

        number = parse_id(request_id)
        if number is None:
            return _no_request(request_id)
        try:
            body = check_text(request.form.get("body"), "comment")
        except BadInput as exc:
            return self._review_page(number, reviewer, exc.status, str(exc))  # type: ignore[attr-defined]
        try:
            comment = add_comment(open_store(), number, reviewer, body, channel="ui")
        except DecisionError as exc:
            return self._review_page(number, reviewer, decision_status(exc), str(exc))  # type: ignore[attr-defined]
        flash(f"comment added{comment.told()}", "warn" if comment.unknown_mentions else "success")
        return redirect(url_for("ApprovalsView.review", request_id=number) + f"#comment-{comment.id}")
